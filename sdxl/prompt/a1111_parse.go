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
// "(x:..)", is an error (A1111 raises there too); so is a weight beyond
// ±MaxWeight or not finite, which A1111 passes on.
func ParseA1111(text string) ([]Fragment, error) {
	p := &a1111Parser{text: strings.ToValidUTF8(text, "\uFFFD")}
	for i := 0; i < len(p.text); {
		n, err := p.next(i)
		if err != nil {
			return nil, err
		}
		i += n
	}
	for _, start := range p.round {
		p.multiply(start, roundMult)
	}
	for _, start := range p.square {
		p.multiply(start, squareMult)
	}
	if len(p.res) == 0 {
		p.res = []Fragment{{"", 1}}
	}
	// Merge runs of identical weights.
	out := p.res[:1]
	for _, f := range p.res[1:] {
		if last := &out[len(out)-1]; last.Weight == f.Weight {
			last.Text += f.Text
			continue
		}
		out = append(out, f)
	}
	if err := checkFragments("a1111", out); err != nil {
		return nil, err
	}
	return out, nil
}

const (
	roundMult  = 1.1
	squareMult = 1 / 1.1
)

// a1111Parser holds parse_prompt_attention's state: the fragments so far
// and the open brackets' first fragments.
type a1111Parser struct {
	text          string
	res           []Fragment
	round, square []int
}

// multiply scales the weights of the fragments from start on.
func (p *a1111Parser) multiply(start int, m float64) {
	for k := start; k < len(p.res); k++ {
		p.res[k].Weight *= m
	}
}

// plain adds text of weight 1, with BREAK words as break entries.
func (p *a1111Parser) plain(s string) {
	for i, part := range splitBreak(s) {
		if i > 0 {
			p.res = append(p.res, Fragment{"BREAK", BreakWeight})
		}
		p.res = append(p.res, Fragment{part, 1})
	}
}

// close ends the innermost bracket of stack with weight m, or adds its
// character as text when none is open.
func (p *a1111Parser) close(stack *[]int, m float64, char string) {
	if len(*stack) == 0 {
		p.plain(char)
		return
	}
	p.multiply((*stack)[len(*stack)-1], m)
	*stack = (*stack)[:len(*stack)-1]
}

// next consumes the token at text[i:] and returns its length.
func (p *a1111Parser) next(i int) (int, error) {
	t := p.text
	switch c := t[i]; c {
	case '\\':
		// \( \) \[ \] \\ keep the second character; a lone \ vanishes.
		if i+1 < len(t) && strings.IndexByte(`()[]\`, t[i+1]) >= 0 {
			p.res = append(p.res, Fragment{t[i+1 : i+2], 1})
			return 2, nil
		}
		p.res = append(p.res, Fragment{"", 1})
	case '(':
		p.round = append(p.round, len(p.res))
	case '[':
		p.square = append(p.square, len(p.res))
	case ':':
		return p.colon(i)
	case ')':
		p.close(&p.round, roundMult, ")")
	case ']':
		p.close(&p.square, squareMult, "]")
	default:
		j := i
		for j < len(t) && strings.IndexByte(`\()[]:`, t[j]) < 0 {
			j++
		}
		p.plain(t[i:j])
		return j - i, nil
	}
	return 1, nil
}

// colon handles ":<number>)", which closes a round bracket with that
// weight; any other colon is text.
func (p *a1111Parser) colon(i int) (int, error) {
	n, w := weightClose(p.text[i:])
	if n == 0 {
		p.plain(":")
		return 1, nil
	}
	if len(p.round) == 0 {
		p.plain(p.text[i : i+n])
		return n, nil
	}
	v, err := pyFloat(w)
	if err != nil {
		return 0, fmt.Errorf("a1111 prompt: weight %q in %q is not a number", w, p.text[i:i+n])
	}
	p.multiply(p.round[len(p.round)-1], v)
	p.round = p.round[:len(p.round)-1]
	return n, nil
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
