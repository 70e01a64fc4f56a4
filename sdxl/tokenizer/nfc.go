package tokenizer

//go:generate python3 gen_nfc.py

import (
	"sort"
	"strings"
	"unicode/utf8"
)

// NFC (Unicode canonical composition, UAX #15) implemented on tables
// generated from Python's unicodedata (gen_nfc.py), because the project may
// not depend on golang.org/x/text. The Hugging Face normalizer runs NFC first,
// so precomposed and decomposed spellings of the same letter ("é" vs
// "e\u0301") must give the same ids. Characters assigned after the table's
// Unicode version (unicodeVersion) are treated as starters that never
// decompose or compose; the Rust tokenizers library has the same kind of
// version limit with its own tables.

type cccRange struct {
	lo, hi rune
	class  uint8
}

type decompEntry struct {
	r, a, b rune // b == 0: singleton decomposition
}

type compEntry struct {
	a, b, c rune
}

// Hangul syllable arithmetic (Unicode §3.12).
const (
	hangulSBase  = 0xAC00
	hangulLBase  = 0x1100
	hangulVBase  = 0x1161
	hangulTBase  = 0x11A7
	hangulLCount = 19
	hangulVCount = 21
	hangulTCount = 28
	hangulNCount = hangulVCount * hangulTCount
	hangulSCount = hangulLCount * hangulNCount
)

// nfcFastLimit: no code point below U+0300 decomposes to something else
// under NFC, has a non-zero combining class, or is the second half of a
// composition (checked by TestNFCFastPathLimit), so text made only of such
// code points is already NFC.
const nfcFastLimit = 0x300

func combiningClass(r rune) uint8 {
	if r < nfcFastLimit {
		return 0
	}
	i := sort.Search(len(cccRanges), func(i int) bool { return cccRanges[i].hi >= r })
	if i < len(cccRanges) && cccRanges[i].lo <= r {
		return cccRanges[i].class
	}
	return 0
}

func lookupDecomposition(r rune) (a, b rune, ok bool) {
	i := sort.Search(len(decompositions), func(i int) bool { return decompositions[i].r >= r })
	if i < len(decompositions) && decompositions[i].r == r {
		return decompositions[i].a, decompositions[i].b, true
	}
	return 0, 0, false
}

func lookupComposition(a, b rune) (rune, bool) {
	// Hangul LV and LVT syllables.
	if a >= hangulLBase && a < hangulLBase+hangulLCount && b >= hangulVBase && b < hangulVBase+hangulVCount {
		return hangulSBase + ((a-hangulLBase)*hangulVCount+(b-hangulVBase))*hangulTCount, true
	}
	if a >= hangulSBase && a < hangulSBase+hangulSCount && (a-hangulSBase)%hangulTCount == 0 &&
		b > hangulTBase && b < hangulTBase+hangulTCount {
		return a + (b - hangulTBase), true
	}
	i := sort.Search(len(compositions), func(i int) bool {
		e := compositions[i]
		return e.a > a || (e.a == a && e.b >= b)
	})
	if i < len(compositions) && compositions[i].a == a && compositions[i].b == b {
		return compositions[i].c, true
	}
	return 0, false
}

// decomposeInto appends the full canonical decomposition of r to dst.
func decomposeInto(dst []rune, r rune) []rune {
	if r < 0xC0 { // nothing below 'À' decomposes
		return append(dst, r)
	}
	if r >= hangulSBase && r < hangulSBase+hangulSCount {
		s := r - hangulSBase
		dst = append(dst, hangulLBase+s/hangulNCount, hangulVBase+(s%hangulNCount)/hangulTCount)
		if t := s % hangulTCount; t != 0 {
			dst = append(dst, hangulTBase+t)
		}
		return dst
	}
	a, b, ok := lookupDecomposition(r)
	if !ok {
		return append(dst, r)
	}
	dst = decomposeInto(dst, a)
	if b != 0 {
		dst = decomposeInto(dst, b)
	}
	return dst
}

// NFC returns s in Unicode Normalization Form C. Invalid UTF-8 bytes are
// replaced by U+FFFD, as Rust strings (and so the tokenizers library) never
// hold them.
func NFC(s string) string {
	fast := true
	for _, r := range s {
		if r >= nfcFastLimit {
			fast = false
			break
		}
	}
	if fast && utf8.ValidString(s) {
		return s
	}
	// 1. Full canonical decomposition.
	rs := make([]rune, 0, len(s))
	for _, r := range s {
		rs = decomposeInto(rs, r)
	}
	// 2. Canonical ordering: stable sort of each run of non-starters by
	// combining class.
	for i := 1; i < len(rs); i++ {
		c := combiningClass(rs[i])
		if c == 0 {
			continue
		}
		for j := i; j > 0; j-- {
			p := combiningClass(rs[j-1])
			if p == 0 || p <= c {
				break
			}
			rs[j-1], rs[j] = rs[j], rs[j-1]
		}
	}
	// 3. Canonical composition.
	out := rs[:0]
	starter := -1     // index in out of the last starter, -1 if none
	var lastClass int // combining class of the last character kept after the starter; -1 right after it
	for _, r := range rs {
		c := int(combiningClass(r))
		if starter >= 0 {
			// r is not blocked from the starter if nothing sits between them
			// (lastClass == -1) or the last kept character has a lower,
			// non-zero class.
			notBlocked := lastClass == -1 || (lastClass != 0 && lastClass < c)
			if notBlocked {
				if comp, ok := lookupComposition(out[starter], r); ok {
					out[starter] = comp
					continue
				}
			}
		}
		if c == 0 {
			starter = len(out)
			lastClass = -1
		} else {
			lastClass = c
		}
		out = append(out, r)
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range out {
		b.WriteRune(r)
	}
	return b.String()
}
