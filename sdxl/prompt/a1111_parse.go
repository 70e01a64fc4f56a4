package prompt

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// BreakWeight marks a BREAK entry in ParseA1111's output (A1111 stores it as
// the text "BREAK" with weight -1).
const BreakWeight = -1

// ParseA1111 parses AUTOMATIC1111's emphasis syntax the way
// modules/prompt_parser.py's parse_prompt_attention does: "(x)" multiplies
// by 1.1, "[x]" divides by 1.1, "(x:1.3)" multiplies by 1.3, nesting
// multiplies, unclosed brackets run to the end, "\(" "\)" "\[" "\]" "\\"
// are literal, and "BREAK" (a whole word) becomes the entry {"BREAK", -1}.
// Runs of equal weight are merged. A weight that is not a number, such as
// "(x:..)", is an error (A1111 raises there too).
func ParseA1111(text string) ([]Fragment, error) {
	text = strings.ToValidUTF8(text, "\uFFFD")
	var res []Fragment
	var round, square []int
	const roundMult = 1.1
	squareMult := 1 / 1.1
	multiplyRange := func(start int, m float64) {
		for p := start; p < len(res); p++ {
			res[p].Weight *= m
		}
	}
	plain := func(s string) {
		for i, part := range splitBreak(s) {
			if i > 0 {
				res = append(res, Fragment{"BREAK", BreakWeight})
			}
			res = append(res, Fragment{part, 1})
		}
	}
	for i := 0; i < len(text); {
		c := text[i]
		switch {
		case c == '\\':
			// \( \) \[ \] \\ keep the second character; a lone \ vanishes.
			if i+1 < len(text) && strings.IndexByte(`()[]\`, text[i+1]) >= 0 {
				res = append(res, Fragment{text[i+1 : i+2], 1})
				i += 2
			} else {
				res = append(res, Fragment{"", 1})
				i++
			}
		case c == '(':
			round = append(round, len(res))
			i++
		case c == '[':
			square = append(square, len(res))
			i++
		case c == ':':
			// :<number>) closes a round bracket with that weight.
			if n, w := weightClose(text[i:]); n > 0 {
				if len(round) > 0 {
					v, err := pyFloat(w)
					if err != nil {
						return nil, fmt.Errorf("a1111 prompt: weight %q in %q is not a number", w, text[i:i+n])
					}
					multiplyRange(round[len(round)-1], v)
					round = round[:len(round)-1]
				} else {
					plain(text[i : i+n])
				}
				i += n
				continue
			}
			plain(":")
			i++
		case c == ')':
			if len(round) > 0 {
				multiplyRange(round[len(round)-1], roundMult)
				round = round[:len(round)-1]
			} else {
				plain(")")
			}
			i++
		case c == ']':
			if len(square) > 0 {
				multiplyRange(square[len(square)-1], squareMult)
				square = square[:len(square)-1]
			} else {
				plain("]")
			}
			i++
		default:
			j := i
			for j < len(text) && strings.IndexByte(`\()[]:`, text[j]) < 0 {
				j++
			}
			plain(text[i:j])
			i = j
		}
	}
	for _, p := range round {
		multiplyRange(p, roundMult)
	}
	for _, p := range square {
		multiplyRange(p, squareMult)
	}
	if len(res) == 0 {
		res = []Fragment{{"", 1}}
	}
	// merge runs of identical weights
	out := res[:1]
	for _, f := range res[1:] {
		if last := &out[len(out)-1]; last.Weight == f.Weight {
			last.Text += f.Text
			continue
		}
		out = append(out, f)
	}
	return out, nil
}

// weightClose matches :([+-]?[.\d]+)\) at the start of s (\d: any Unicode
// decimal digit) and returns its length and the number text (digits made
// ASCII for float()).
func weightClose(s string) (int, string) {
	i := 1
	var b strings.Builder
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		b.WriteByte(s[i])
		i++
	}
	n := 0
	for i < len(s) {
		if s[i] == '.' {
			b.WriteByte('.')
			i++
			n++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		d, ok := digitValue(r)
		if !ok {
			break
		}
		b.WriteString(strconv.Itoa(d))
		i += size
		n++
	}
	if n == 0 || i >= len(s) || s[i] != ')' {
		return 0, ""
	}
	return i + 1, b.String()
}

// pyWord is Python's \w for str: letters, numbers and underscore.
func pyWord(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r)
}

// splitBreak is re.split(r"\s*\bBREAK\b\s*", s) (Python's \s and \b).
func splitBreak(s string) []string {
	if !strings.Contains(s, "BREAK") {
		return []string{s}
	}
	var parts []string
	last := 0 // start of the current part
	for i := 0; i < len(s); {
		j := strings.Index(s[i:], "BREAK")
		if j < 0 {
			break
		}
		k := i + j // candidate BREAK position
		before, _ := utf8.DecodeLastRuneInString(s[:k])
		after, _ := utf8.DecodeRuneInString(s[k+5:])
		okBefore := k == 0 || !pyWord(before)
		okAfter := k+5 == len(s) || !pyWord(after)
		if !okBefore || !okAfter {
			i = k + 1
			continue
		}
		// the match starts at the first of the spaces before BREAK (but
		// not before the end of the previous match)
		start := k
		for start > last {
			r, n := utf8.DecodeLastRuneInString(s[last:start])
			if !pyIsSpace(r) {
				break
			}
			start -= n
		}
		end := k + 5
		for end < len(s) {
			r, n := utf8.DecodeRuneInString(s[end:])
			if !pyIsSpace(r) {
				break
			}
			end += n
		}
		parts = append(parts, s[last:start])
		last = end
		i = end
	}
	return append(parts, s[last:])
}
