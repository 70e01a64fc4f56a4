package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Normalize applies the normaliser of the CLIP tokenizer.json that
// transformers 5 uses for SDXL: NFC, every run of whitespace replaced by one
// space, then lowercase. (Leading and trailing spaces are left in place: the
// pre-tokeniser drops all whitespace, so stripping changes no id.)
//
// Whitespace is what Oniguruma's \s matches on Unicode text (U+0009..U+000D,
// U+0085 and the Zs/Zl/Zp categories), which is exactly unicode.IsSpace.
// Lowercasing is per character, like Rust's char::to_lowercase that the
// tokenizers library calls: the simple Unicode mapping, plus the one
// unconditional multi-character mapping U+0130 → "i\u0307"; there is no
// context-dependent final-sigma rule in that code path.
func Normalize(s string) string {
	s = NFC(s)
	var b strings.Builder
	b.Grow(len(s))
	inSpace := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			if !inSpace {
				b.WriteByte(' ')
			}
			inSpace = true
			continue
		}
		inSpace = false
		switch {
		case r < utf8.RuneSelf:
			if 'A' <= r && r <= 'Z' {
				r += 'a' - 'A'
			}
			b.WriteByte(byte(r))
		case r == 0x130:
			b.WriteString("i\u0307")
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// preTokenize splits normalised text the way the CLIP pre-tokeniser does:
// the Split pattern
//
//	<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//
// keeps its matches and drops the rest (whitespace), then the ByteLevel step
// splits each piece again with the GPT-2 pattern. That second split changes
// only the two special-token spellings, which it cuts into "<|", the letters
// and "|>"; every other piece is already one GPT-2 match. Alternatives are
// tried in order at each position, as in a backtracking regex engine.
func preTokenize(s string, emit func(piece string)) {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case unicode.IsSpace(r):
			i += size
		case r == '<' && (strings.HasPrefix(s[i:], "<|startoftext|>") || strings.HasPrefix(s[i:], "<|endoftext|>")):
			n := len("<|startoftext|>")
			if s[i+2] == 'e' {
				n = len("<|endoftext|>")
			}
			emit(s[i : i+2])
			emit(s[i+2 : i+n-2])
			emit(s[i+n-2 : i+n])
			i += n
		case r == '\'' && contractionLen(s[i:]) > 0:
			n := contractionLen(s[i:])
			emit(s[i : i+n])
			i += n
		case unicode.IsLetter(r):
			j := i + size
			for j < len(s) {
				r2, n := utf8.DecodeRuneInString(s[j:])
				if !unicode.IsLetter(r2) {
					break
				}
				j += n
			}
			emit(s[i:j])
			i = j
		case unicode.IsNumber(r):
			emit(s[i : i+size])
			i += size
		default:
			j := i + size
			for j < len(s) {
				r2, n := utf8.DecodeRuneInString(s[j:])
				if unicode.IsSpace(r2) || unicode.IsLetter(r2) || unicode.IsNumber(r2) {
					break
				}
				j += n
			}
			emit(s[i:j])
			i = j
		}
	}
}

// contractionLen returns the length of the contraction ('s 't 're 've 'm 'll
// 'd) at the start of s, or 0.
func contractionLen(s string) int {
	if len(s) < 2 || s[0] != '\'' {
		return 0
	}
	switch s[1] {
	case 's', 't', 'm', 'd':
		return 2
	case 'r', 'v':
		if len(s) >= 3 && s[2] == 'e' {
			return 3
		}
	case 'l':
		if len(s) >= 3 && s[2] == 'l' {
			return 3
		}
	}
	return 0
}
