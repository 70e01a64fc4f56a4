package prompt

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file mirrors compel 2.4's pyparsing grammar (prompt_parser.py) as a
// packrat PEG parser: the same ordered choices, the same whitespace skipping
// (pyparsing skips " \t\n\r" before most elements; free words, White and
// the inside of a word do not), the same parse actions (escapes, fusing of
// equal weights, re-parsing of quoted text). Memoising (rule, position)
// keeps it linear-ish where pyparsing backtracks exponentially, and a
// nesting limit replaces Python's recursion limit. The differential test
// (testdata/compel_parse_cases.json, produced by running compel's parser)
// checks that both give the same fragments and weights.

// Fragment is a run of prompt text with its weight.
type Fragment struct {
	Text   string
	Weight float64
}

// Lora is a withLora(name, weight) / useLora(...) term. Compel returns these
// beside the conditioning and they do not change it.
type Lora struct {
	Name   string
	Weight float64
}

// CompelPrompt is one flattened prompt (compel's FlattenedPrompt) or a blend
// of several.
type CompelPrompt struct {
	// Fragments are the weighted texts of a flattened prompt, equal
	// weights fused. With a .swap() these are the "original" side, which is
	// what Compel's conditioning encodes.
	Fragments []Fragment
	// Edited is the ".swap()" replacement side (nil without a swap). Only
	// its length matters for the conditioning (the original is padded to
	// it).
	Edited []Fragment
	// Blend is set for ("a", "b").blend(w1, w2).
	Blend *Blend
}

// Blend is a weighted sum of the conditionings of several prompts.
type Blend struct {
	Prompts   [][]Fragment
	Weights   []float64
	Normalize bool // divide the weights by their sum (unless no_normalize)
}

// CompelParse is a parsed Compel prompt (compel's flattened Conjunction).
type CompelParse struct {
	// Prompts are concatenated along the token axis (.and()); usually one.
	Prompts []CompelPrompt
	// Weights holds one weight per prompt (.and(w1, w2)).
	Weights []float64
	Loras   []Lora
}

// maxNesting bounds bracket nesting; deeper input is an error, as Python
// would hit its recursion limit.
const maxNesting = 64

// ErrEmptyPrompt reports a Compel prompt that parses to no text at all
// (e.g. "()" or only withLora terms): Compel itself fails on it.
var ErrEmptyPrompt = errors.New("compel prompt holds no text")

// ParseCompel parses a prompt in Compel syntax. Weights beyond ±MaxWeight
// (or not finite) are an error, where Compel passes them on.
func ParseCompel(prompt string) (*CompelParse, error) {
	prompt = strings.ToValidUTF8(prompt, "\uFFFD")
	// Compel enforces a space after every comma that lacks one.
	prompt = commaSpace(prompt)
	if strings.TrimFunc(prompt, pyIsSpace) == "" {
		return &CompelParse{Prompts: []CompelPrompt{{Fragments: []Fragment{{"", 1}}}}, Weights: []float64{1}}, nil
	}
	p := newParser(prompt)
	root, ok := p.conjunction()
	if p.err != nil {
		return nil, p.err
	}
	if !ok {
		return nil, fmt.Errorf("compel prompt %q: syntax error near position %d", prompt, p.farthest)
	}
	out, err := flattenConjunction(root)
	if err != nil {
		return nil, err
	}
	if len(out.Prompts) == 0 {
		return nil, fmt.Errorf("%w: %q", ErrEmptyPrompt, prompt)
	}
	if err := out.checkWeights(); err != nil {
		return nil, err
	}
	return out, nil
}

// commaSpace is re.sub(r',(\S)', r', \1', s).
func commaSpace(s string) string {
	if !strings.Contains(s, ",") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] == ',' && i+1 < len(s) {
			r, n := utf8.DecodeRuneInString(s[i+1:])
			if !pyIsSpace(r) {
				b.WriteString(", ")
				b.WriteString(s[i+1 : i+1+n])
				i += 1 + n
				continue
			}
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

// pyIsSpace is Python's str.isspace for one character (what \s and strip()
// use): Unicode whitespace plus the separators U+001C..U+001F.
func pyIsSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

// Whitespace classes of the grammar.
func isPPWhite(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' } // pyparsing's default
func isStringWhitespace(r rune) bool { // Python's string.whitespace
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f'
}

const syntacticChars = "()\",.+-="

func isSyntactic(r rune) bool {
	return r < utf8.RuneSelf && strings.IndexByte(syntacticChars, byte(r)) >= 0
}

// Parse-tree tokens, as produced by the grammar's parse actions.
type tok interface{}

type tFrag struct{ text string }
type tAttn struct {
	weight   float64
	children []tok
}
type tLora struct{ l Lora }
type tSwap struct {
	orig, edit []tok
}
type tBlend struct {
	prompts   [][]tok
	weights   []float64
	normalize bool
}
type tConj struct {
	prompts [][]tok // each a Prompt's tokens
	blends  []*tBlend
	weights []float64
}

// newFragment is compel's Fragment(text): it turns \( \) \" into ( ) ".
func newFragment(text string) string {
	if strings.Contains(text, `\"`) || strings.Contains(text, `\(`) || strings.Contains(text, `\)`) {
		text = strings.ReplaceAll(text, `\(`, "(")
		text = strings.ReplaceAll(text, `\)`, ")")
		text = strings.ReplaceAll(text, `\"`, `"`)
	}
	return text
}

type memoKey struct {
	rule int
	pos  int
}

type memoVal struct {
	end  int
	toks []tok
	ok   bool
}

type parser struct {
	s        string
	memo     map[memoKey]memoVal
	depth    int
	err      error
	farthest int
	// subparses counts nested parsers (quoted text is parsed again).
	level int
}

func newParser(s string) *parser {
	return &parser{s: s, memo: make(map[memoKey]memoVal)}
}

const (
	ruleNonSyntaxWord = iota
	ruleQuoted
	ruleQuotedPrompt
	ruleParen
	ruleFragIncl
	ruleFragExcl
	ruleAttention
	ruleSwap
	ruleLora
	ruleTarget
)

func (p *parser) fail(pos int) (int, []tok, bool) {
	if pos > p.farthest {
		p.farthest = pos
	}
	return pos, nil, false
}

// memoized runs f once per (rule, pos).
func (p *parser) memoized(rule, pos int, f func(int) (int, []tok, bool)) (int, []tok, bool) {
	k := memoKey{rule, pos}
	if v, ok := p.memo[k]; ok {
		return v.end, v.toks, v.ok
	}
	if p.err != nil {
		return pos, nil, false
	}
	p.depth++
	if p.depth > 8*maxNesting {
		p.depth--
		if p.err == nil {
			p.err = fmt.Errorf("compel prompt: brackets or quotes nested deeper than %d", maxNesting)
		}
		return pos, nil, false
	}
	end, toks, ok := f(pos)
	p.depth--
	p.memo[k] = memoVal{end, toks, ok}
	return end, toks, ok
}

func (p *parser) skipWS(pos int) int {
	for pos < len(p.s) && isPPWhite(p.s[pos]) {
		pos++
	}
	return pos
}

// literal skips whitespace and matches lit.
func (p *parser) literal(pos int, lit string) (int, bool) {
	pos = p.skipWS(pos)
	if strings.HasPrefix(p.s[pos:], lit) {
		return pos + len(lit), true
	}
	if pos > p.farthest {
		p.farthest = pos
	}
	return pos, false
}

// nonSyntaxWord: a word with no syntax in it; escapes \( \) \" \, \. \+ \-
// \= are kept, + and - only when followed by more word.
func (p *parser) nonSyntaxWord(pos int) (int, []tok, bool) {
	return p.memoized(ruleNonSyntaxWord, pos, func(pos int) (int, []tok, bool) {
		start := p.skipWS(pos)
		i := start
		for i < len(p.s) {
			c := p.s[i]
			if c == '\\' && i+1 < len(p.s) && strings.IndexByte(syntacticChars, p.s[i+1]) >= 0 {
				i += 2
				continue
			}
			if c == '+' || c == '-' {
				if i+1 < len(p.s) {
					r, _ := utf8.DecodeRuneInString(p.s[i+1:])
					if !isPPWhite(p.s[i+1]) && !isSyntactic(r) {
						i++
						continue
					}
				}
				break
			}
			r, n := utf8.DecodeRuneInString(p.s[i:])
			if isStringWhitespace(r) || isSyntactic(r) {
				break
			}
			i += n
		}
		if i == start {
			return p.fail(start)
		}
		return i, []tok{tFrag{newFragment(p.s[start:i])}}, true
	})
}

// freeWord: any run of non-whitespace (no whitespace skipping).
func (p *parser) freeWord(pos int) (int, []tok, bool) {
	i := pos
	for i < len(p.s) {
		r, n := utf8.DecodeRuneInString(p.s[i:])
		if isStringWhitespace(r) {
			break
		}
		i += n
	}
	if i == pos {
		return p.fail(pos)
	}
	return i, []tok{tFrag{newFragment(p.s[pos:i])}}, true
}

// quotedString matches pyparsing's QuotedString('"', esc_quote='\\"') at
// pos (after whitespace) and returns the end and the unquoted content.
func (p *parser) quotedString(pos int) (int, string, bool) {
	pos = p.skipWS(pos)
	if pos >= len(p.s) || p.s[pos] != '"' {
		return pos, "", false
	}
	// The regex "(?:\\"|[^"\n\r])*" backtracks to the last \" when the
	// greedy scan does not stop on a closing quote.
	i := pos + 1
	lastEsc := -1
	for i < len(p.s) {
		c := p.s[i]
		if c == '\\' && i+1 < len(p.s) && p.s[i+1] == '"' {
			lastEsc = i
			i += 2
			continue
		}
		if c == '"' || c == '\n' || c == '\r' {
			break
		}
		i++
	}
	var end int
	switch {
	case i < len(p.s) && p.s[i] == '"':
		end = i + 1
	case lastEsc >= 0:
		end = lastEsc + 2
	default:
		return pos, "", false
	}
	return end, unquote(p.s[pos+1 : end-1]), true
}

// unquote applies QuotedString's unquoting: \t \n \f \r and numeric escapes
// (\ooo, \0, \xhh, \uhhhh) become characters, then \" becomes ".
func unquote(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] == '\\' && i+1 < len(s) {
			switch c := s[i+1]; {
			case c == 't':
				b.WriteByte('\t')
				i += 2
				continue
			case c == 'n':
				b.WriteByte('\n')
				i += 2
				continue
			case c == 'f':
				b.WriteByte('\f')
				i += 2
				continue
			case c == 'r':
				b.WriteByte('\r')
				i += 2
				continue
			case i+4 <= len(s) && isOct(s[i+1]) && isOct(s[i+2]) && isOct(s[i+3]):
				v, _ := strconv.ParseUint(s[i+1:i+4], 8, 32)
				b.WriteRune(rune(v))
				i += 4
				continue
			case c == '0':
				b.WriteByte(0)
				i += 2
				continue
			case c == 'x' && i+4 <= len(s) && isHex(s[i+2:i+4]):
				v, _ := strconv.ParseUint(s[i+2:i+4], 16, 32)
				b.WriteRune(rune(v))
				i += 4
				continue
			case c == 'u' && i+6 <= len(s) && isHex(s[i+2:i+6]):
				v, _ := strconv.ParseUint(s[i+2:i+6], 16, 32)
				r := rune(v)
				if r >= 0xD800 && r <= 0xDFFF {
					r = utf8.RuneError // a lone surrogate cannot be UTF-8
				}
				b.WriteRune(r)
				i += 6
				continue
			}
		}
		b.WriteByte(s[i])
		i++
	}
	return strings.ReplaceAll(b.String(), `\"`, `"`)
}

func isOct(c byte) bool { return c >= '0' && c <= '7' }
func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// quoted is quoted_fragment (asPrompt false: the content is parsed as
// fragments) or quoted_prompt (asPrompt true: parsed as a whole prompt).
func (p *parser) quoted(pos int, asPrompt bool) (int, []tok, bool) {
	rule := ruleQuoted
	if asPrompt {
		rule = ruleQuotedPrompt
	}
	return p.memoized(rule, pos, func(pos int) (int, []tok, bool) {
		end, content, ok := p.quotedString(pos)
		if !ok {
			return p.fail(pos)
		}
		if strings.TrimFunc(content, pyIsSpace) == "" {
			return end, []tok{tFrag{""}}, true
		}
		// Unescaped quotes inside are escaped again before re-parsing.
		content = strings.ReplaceAll(content, `"`, `\"`)
		if p.level >= maxNesting {
			p.err = fmt.Errorf("compel prompt: quotes nested deeper than %d", maxNesting)
			return p.fail(pos)
		}
		sub := newParser(content)
		sub.level = p.level + 1
		sub.depth = p.depth
		var subEnd int
		var toks []tok
		if asPrompt {
			subEnd, toks, ok = sub.prompt(0)
		} else {
			subEnd, toks, ok = sub.fragments(0, true)
		}
		if sub.err != nil {
			p.err = sub.err
			return p.fail(pos)
		}
		if !ok || sub.skipWS(subEnd) != len(content) {
			return p.fail(pos)
		}
		return end, toks, true
	})
}

func (p *parser) paren(pos int) (int, []tok, bool) {
	return p.memoized(ruleParen, pos, func(pos int) (int, []tok, bool) {
		q, ok := p.literal(pos, "(")
		if !ok {
			return p.fail(q)
		}
		q, toks, _ := p.fragments(q, true)
		q, ok = p.literal(q, ")")
		if !ok {
			return p.fail(q)
		}
		return q, toks, true
	})
}

// fragments is fragment_including_commas_or_periods (withPunct) or
// fragment_excluding_commas: zero or more parts.
func (p *parser) fragments(pos int, withPunct bool) (int, []tok, bool) {
	rule := ruleFragExcl
	if withPunct {
		rule = ruleFragIncl
	}
	return p.memoized(rule, pos, func(pos int) (int, []tok, bool) {
		var out []tok
		for {
			q, toks, ok := p.fragmentPart(pos)
			if !ok && withPunct {
				if q2, ok2 := p.literal(pos, ","); ok2 {
					q, toks, ok = q2, []tok{tFrag{","}}, true
				} else if q2, ok2 := p.literal(pos, "."); ok2 {
					q, toks, ok = q2, []tok{tFrag{"."}}, true
				}
			}
			if !ok || p.err != nil {
				return pos, out, true
			}
			out = append(out, toks...)
			pos = q
		}
	})
}

// fragmentPart: lora, attention, swap, parenthesized, quoted, word.
func (p *parser) fragmentPart(pos int) (int, []tok, bool) {
	for _, f := range []func(int) (int, []tok, bool){
		p.lora, p.attention, p.swap, p.paren,
		func(q int) (int, []tok, bool) { return p.quoted(q, false) },
		p.nonSyntaxWord,
	} {
		if q, toks, ok := f(pos); ok {
			return q, toks, true
		}
		if p.err != nil {
			break
		}
	}
	return p.fail(pos)
}

// target is potential_operator_target: quoted, parenthesized or a word.
func (p *parser) target(pos int) (int, []tok, bool) {
	return p.memoized(ruleTarget, pos, func(pos int) (int, []tok, bool) {
		if q, toks, ok := p.quoted(pos, false); ok {
			return q, toks, true
		}
		if q, toks, ok := p.paren(pos); ok {
			return q, toks, true
		}
		return p.nonSyntaxWord(pos)
	})
}

// wordRun matches Word(c): a run of c after whitespace.
func (p *parser) wordRun(pos int, c byte) (int, int) {
	pos = p.skipWS(pos)
	i := pos
	for i < len(p.s) && p.s[i] == c {
		i++
	}
	return i, i - pos
}

// number is pyparsing_common.real | Combine(Optional("-") + Word(nums)).
func (p *parser) number(pos int) (int, float64, bool) {
	pos = p.skipWS(pos)
	if end, v, ok := matchReal(p.s, pos); ok {
		return end, v, true
	}
	i := pos
	if i < len(p.s) && p.s[i] == '-' {
		i++
	}
	j := i
	for j < len(p.s) && p.s[j] >= '0' && p.s[j] <= '9' {
		j++
	}
	if j == i {
		return pos, 0, false
	}
	v, err := strconv.ParseFloat(p.s[pos:j], 64)
	if err != nil {
		v = math.Inf(1)
		if p.s[pos] == '-' {
			v = math.Inf(-1)
		}
	}
	return j, v, true
}

// matchReal matches [+-]?(?:\d+\.\d*|\.\d+) where \d is any Unicode
// decimal digit (Python's re), converted like Python's float().
func matchReal(s string, pos int) (int, float64, bool) {
	i := pos
	var b strings.Builder
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		b.WriteByte(s[i])
		i++
	}
	digits := func() int {
		n := 0
		for i < len(s) {
			r, size := utf8.DecodeRuneInString(s[i:])
			d, ok := digitValue(r)
			if !ok {
				break
			}
			b.WriteByte(byte('0' + d))
			i += size
			n++
		}
		return n
	}
	intDigits := digits()
	if i >= len(s) || s[i] != '.' {
		return pos, 0, false
	}
	b.WriteByte('.')
	i++
	frac := digits()
	if intDigits == 0 && frac == 0 {
		return pos, 0, false
	}
	v, err := strconv.ParseFloat(b.String(), 64)
	if err != nil { // overflow: Python gives inf
		v = math.Inf(1)
		if b.String()[0] == '-' {
			v = math.Inf(-1)
		}
	}
	return i, v, true
}

// digitValue returns the value of a Unicode decimal digit (category Nd).
// Nd digits come in runs of ten starting at zero.
func digitValue(r rune) (int, bool) {
	if r >= '0' && r <= '9' {
		return int(r - '0'), true
	}
	if r < 0x80 || !unicode.IsDigit(r) {
		return 0, false
	}
	start := r
	for unicode.IsDigit(start - 1) {
		start--
	}
	return int(r-start) % 10, true
}

// weightOp is attention_weight_operator: Word('+') | Word('-') | number,
// turned into a weight as make_operator_object does.
func (p *parser) weightOp(pos int) (int, float64, bool) {
	if q, n := p.wordRun(pos, '+'); n > 0 {
		return q, powInt(1.1, n), true
	}
	if q, n := p.wordRun(pos, '-'); n > 0 {
		return q, powInt(0.9, n), true
	}
	return p.number(pos)
}

// powInt is Python's float.__pow__ for a small integer exponent, which
// calls C pow(): computed here exactly and rounded once (pow in glibc is
// correctly rounded for these).
func powInt(x float64, n int) float64 {
	if n > 2000 {
		return math.Pow(x, float64(n)) // over/underflows anyway
	}
	acc := new(big.Float).SetPrec(0).SetFloat64(1)
	bx := new(big.Float).SetFloat64(x)
	for i := 0; i < n; i++ {
		acc.SetPrec(acc.MinPrec() + bx.MinPrec() + 64)
		acc.Mul(acc, bx)
	}
	v, _ := acc.Float64()
	return v
}

func (p *parser) attention(pos int) (int, []tok, bool) {
	return p.memoized(ruleAttention, pos, func(pos int) (int, []tok, bool) {
		// explicit: target.attend(op)
		if q, children, ok := p.target(pos); ok {
			if q2, ok := p.literal(q, ".attend"); ok {
				if q3, ok := p.literal(q2, "("); ok {
					if q4, w, ok := p.weightOp(q3); ok {
						if q5, ok := p.literal(q4, ")"); ok {
							return q5, []tok{tAttn{w, children}}, true
						}
					}
				}
			}
		}
		if p.err != nil {
			return p.fail(pos)
		}
		// implicit: (quoted | paren) op, with no whitespace before op ...
		q, children, ok := p.quoted(pos, false)
		if !ok {
			q, children, ok = p.paren(pos)
		}
		if ok && !(q < len(p.s) && isPPWhite(p.s[q])) {
			if q2, w, ok := p.weightOp(q); ok {
				return q2, []tok{tAttn{w, children}}, true
			}
		}
		if p.err != nil {
			return p.fail(pos)
		}
		// ... or a word followed directly by +++ or ---
		if q, children, ok := p.nonSyntaxWord(pos); ok && !(q < len(p.s) && isPPWhite(p.s[q])) {
			if q2, n := p.wordRun(q, '+'); n > 0 {
				return q2, []tok{tAttn{powInt(1.1, n), children}}, true
			}
			if q2, n := p.wordRun(q, '-'); n > 0 {
				return q2, []tok{tAttn{powInt(0.9, n), children}}, true
			}
		}
		return p.fail(pos)
	})
}

// keyword is Word(alphanums + "_-").
func (p *parser) keyword(pos int) (int, string, bool) {
	pos = p.skipWS(pos)
	i := pos
	for i < len(p.s) {
		c := p.s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			break
		}
		i++
	}
	return i, p.s[pos:i], i > pos
}

// option is keyword=value | number | keyword; it returns the group's
// first element as the text Python would see.
type option struct {
	first   string
	value   string
	isValue bool
}

func (p *parser) option(pos int) (int, option, bool) {
	if q, k, ok := p.keyword(pos); ok {
		if q2, ok := p.literal(q, "="); ok {
			if q3, v, ok := p.number(q2); ok {
				return q3, option{first: k, value: pyStr(v), isValue: true}, true
			}
			if q3, v, ok := p.keyword(q2); ok {
				return q3, option{first: k, value: v, isValue: true}, true
			}
		}
	}
	if q, v, ok := p.number(pos); ok {
		return q, option{first: pyStr(v)}, true
	}
	if q, k, ok := p.keyword(pos); ok {
		return q, option{first: k}, true
	}
	return pos, option{}, false
}

// options is Optional(DelimitedList(option)).
func (p *parser) options(pos int) (int, []option) {
	q, o, ok := p.option(pos)
	if !ok {
		return pos, nil
	}
	opts := []option{o}
	for {
		q2, ok := p.literal(q, ",")
		if !ok {
			return q, opts
		}
		q3, o, ok := p.option(q2)
		if !ok {
			return q, opts
		}
		opts = append(opts, o)
		q = q3
	}
}

// pyStr is str(float) in Python, enough for float() to read it back.
func pyStr(v float64) string {
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func (p *parser) swap(pos int) (int, []tok, bool) {
	return p.memoized(ruleSwap, pos, func(pos int) (int, []tok, bool) {
		q, orig, ok := p.target(pos)
		if !ok {
			return p.fail(pos)
		}
		if q, ok = p.literal(q, ".swap"); !ok {
			return p.fail(q)
		}
		if q, ok = p.literal(q, "("); !ok {
			return p.fail(q)
		}
		q, edit, _ := p.fragments(q, false)
		if containsSwap(orig) || containsSwap(edit) {
			// Compel builds such a prompt but fails to encode it.
			p.err = errors.New("compel prompt: .swap() inside a .swap()")
			return p.fail(pos)
		}
		if q2, ok := p.literal(q, ","); ok {
			q3, opts := p.options(q2)
			for _, o := range opts {
				if o.first == "shape_freedom" && o.isValue {
					if _, err := pyFloat(o.value); err != nil {
						p.err = fmt.Errorf("compel prompt: .swap() shape_freedom=%s is not a number", o.value)
						return p.fail(pos)
					}
				}
			}
			q = q3
		}
		if q, ok = p.literal(q, ")"); !ok {
			return p.fail(q)
		}
		return q, []tok{tSwap{orig, edit}}, true
	})
}

func (p *parser) lora(pos int) (int, []tok, bool) {
	return p.memoized(ruleLora, pos, func(pos int) (int, []tok, bool) {
		q, ok := p.literal(pos, "useLora")
		if !ok {
			q, ok = p.literal(pos, "withLora")
		}
		if !ok {
			return p.fail(q)
		}
		if q, ok = p.literal(q, "("); !ok {
			return p.fail(q)
		}
		q, name, ok := p.keyword(q)
		if !ok {
			return p.fail(q)
		}
		w := 1.0
		if q2, ok := p.literal(q, ","); ok {
			if q3, v, ok := p.number(q2); ok {
				q, w = q3, v
			}
		}
		if q, ok = p.literal(q, ")"); !ok {
			return p.fail(q)
		}
		return q, []tok{tLora{Lora{name, w}}}, true
	})
}

// prompt is a whole prompt: swaps, loras, attention, quoted, parenthesized,
// free words and whitespace.
func (p *parser) prompt(pos int) (int, []tok, bool) {
	var out []tok
	for p.err == nil && pos < len(p.s) {
		var q int
		var toks []tok
		ok := false
		for _, f := range []func(int) (int, []tok, bool){
			p.swap, p.lora, p.attention,
			func(q int) (int, []tok, bool) { return p.quoted(q, false) },
			p.paren, p.freeWord,
		} {
			if q, toks, ok = f(pos); ok || p.err != nil {
				break
			}
		}
		if !ok && p.err == nil && isPPWhite(p.s[pos]) {
			q = pos
			for q < len(p.s) && isPPWhite(p.s[q]) {
				q++
			}
			ok = true
		}
		if !ok {
			break
		}
		out = append(out, toks...)
		pos = q
	}
	return pos, out, true
}

// operatorList parses "(" target, target, ... ")" op "(" options ")" for
// .blend and .and/.add; it returns the targets and options.
func (p *parser) operatorList(pos int, ops ...string) (int, [][]tok, []option, string, bool) {
	q, ok := p.literal(pos, "(")
	if !ok {
		return pos, nil, nil, "", false
	}
	var targets [][]tok
	for {
		q2, toks, ok := p.target(q)
		if !ok {
			q2, toks, ok = p.quoted(q, true)
		}
		if !ok || p.err != nil {
			if len(targets) == 0 {
				return pos, nil, nil, "", false
			}
			break
		}
		targets = append(targets, toks)
		q = q2
		q3, ok := p.literal(q, ",")
		if !ok {
			break
		}
		// the delimiter is only consumed if another target follows
		if _, _, ok := p.target(q3); !ok {
			if _, _, ok := p.quoted(q3, true); !ok {
				break
			}
		}
		q = q3
	}
	if q, ok = p.literal(q, ")"); !ok {
		return pos, nil, nil, "", false
	}
	op := ""
	for _, o := range ops {
		if q2, ok := p.literal(q, o); ok {
			q, op = q2, o
			break
		}
	}
	if op == "" {
		return pos, nil, nil, "", false
	}
	if q, ok = p.literal(q, "("); !ok {
		return pos, nil, nil, "", false
	}
	q, opts := p.options(q)
	if q, ok = p.literal(q, ")"); !ok {
		return pos, nil, nil, "", false
	}
	return q, targets, opts, op, true
}

// optionFloats is [float(w[0]) for w in options].
func optionFloats(opts []option) ([]float64, error) {
	out := make([]float64, len(opts))
	for i, o := range opts {
		v, err := pyFloat(o.first)
		if err != nil {
			return nil, fmt.Errorf("compel prompt: weight %q is not a number", o.first)
		}
		out[i] = v
	}
	return out, nil
}

func (p *parser) blend(pos int) (int, *tBlend, bool) {
	q, targets, opts, _, ok := p.operatorList(pos, ".blend")
	if !ok || p.err != nil {
		return pos, nil, false
	}
	normalize := true
	if len(opts) > 0 && opts[len(opts)-1].first == "no_normalize" {
		normalize = false
		opts = opts[:len(opts)-1]
	}
	w, err := optionFloats(opts)
	if err != nil {
		p.err = err
		return pos, nil, false
	}
	if len(w) == 0 {
		w = make([]float64, len(targets))
		for i := range w {
			w[i] = 1
		}
	}
	if len(w) != len(targets) {
		p.err = fmt.Errorf("compel prompt: .blend() of %d prompts has %d weights", len(targets), len(w))
		return pos, nil, false
	}
	for _, t := range targets {
		for _, x := range t {
			if _, isSwap := x.(tSwap); isSwap {
				p.err = errors.New("compel prompt: .swap() cannot be part of a .blend()")
				return pos, nil, false
			}
		}
	}
	return q, &tBlend{targets, w, normalize}, true
}

// conjunction is explicit_conjunction | implicit_conjunction.
func (p *parser) conjunction() (*tConj, bool) {
	if q, targets, opts, _, ok := p.operatorList(0, ".and", ".add"); ok && p.err == nil {
		_ = q // pyparsing's parse_string ignores what follows
		w, err := optionFloats(opts)
		if err != nil {
			p.err = err
			return nil, false
		}
		if len(w) == 0 {
			w = make([]float64, len(targets))
			for i := range w {
				w[i] = 1
			}
		}
		if len(w) != len(targets) {
			p.err = fmt.Errorf("compel prompt: .and() of %d prompts has %d weights", len(targets), len(w))
			return nil, false
		}
		return &tConj{prompts: targets, blends: make([]*tBlend, len(targets)), weights: w}, true
	}
	if p.err != nil {
		return nil, false
	}
	c := &tConj{}
	add := func(toks []tok, b *tBlend) {
		c.prompts = append(c.prompts, toks)
		c.blends = append(c.blends, b)
		c.weights = append(c.weights, 1)
	}
	loras := func(pos int) int {
		var toks []tok
		for {
			q, t, ok := p.lora(pos)
			if !ok {
				break
			}
			toks = append(toks, t...)
			pos = q
		}
		if len(toks) > 0 {
			add(toks, nil)
		}
		return pos
	}
	pos := loras(0)
	if q, b, ok := p.blend(pos); ok {
		add(nil, b)
		pos = q
	} else {
		if p.err != nil {
			return nil, false
		}
		q, toks, _ := p.prompt(pos)
		add(toks, nil)
		pos = q
	}
	if p.err != nil {
		return nil, false
	}
	pos = loras(pos)
	if p.skipWS(pos) != len(p.s) {
		if pos > p.farthest {
			p.farthest = pos
		}
		return nil, false
	}
	return c, true
}

// pyFloat is Python's float() on a str: optional sign, digits with single
// underscores between them, optional fraction and exponent, or
// inf/infinity/nan; surrounding whitespace allowed.
func pyFloat(s string) (float64, error) {
	t := strings.TrimFunc(s, pyIsSpace)
	body := strings.TrimLeft(t, "+-")
	if len(t)-len(body) > 1 {
		return 0, fmt.Errorf("invalid float %q", s)
	}
	switch strings.ToLower(body) {
	case "inf", "infinity":
		if strings.HasPrefix(t, "-") {
			return math.Inf(-1), nil
		}
		return math.Inf(1), nil
	case "nan":
		return math.NaN(), nil
	}
	// validate: digits with underscores only between digits
	var b strings.Builder
	seenDigit, inExp := false, false
	prev := byte(0)
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c >= '0' && c <= '9':
			seenDigit = true
		case c == '_':
			if !(prev >= '0' && prev <= '9') || i+1 >= len(body) || !(body[i+1] >= '0' && body[i+1] <= '9') {
				return 0, fmt.Errorf("invalid float %q", s)
			}
			prev = c
			continue
		case c == '.' && !inExp:
		case (c == 'e' || c == 'E') && seenDigit && !inExp:
			inExp = true
		case (c == '+' || c == '-') && (prev == 'e' || prev == 'E'):
		default:
			return 0, fmt.Errorf("invalid float %q", s)
		}
		b.WriteByte(c)
		prev = c
	}
	if !seenDigit {
		return 0, fmt.Errorf("invalid float %q", s)
	}
	sign := t[:len(t)-len(body)]
	v, err := strconv.ParseFloat(sign+b.String(), 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && ne.Err == strconv.ErrRange {
			return v, nil // Python gives inf or 0.0
		}
		return 0, fmt.Errorf("invalid float %q", s)
	}
	return v, nil
}

// flatItem is one child of a flattened prompt: a fragment or a swap.
type flatItem struct {
	frag       Fragment
	swap       bool
	orig, edit []Fragment
}

// flattenToks is compel's flatten_internal over a token list: weights
// multiply down the attention tree (scale * weight, in that order).
func flattenToks(toks []tok, scale float64, loras *[]Lora) []flatItem {
	var out []flatItem
	for _, t := range toks {
		switch t := t.(type) {
		case tFrag:
			out = append(out, flatItem{frag: Fragment{newFragment(t.text), 1.0 * scale}})
		case tAttn:
			out = append(out, flattenToks(t.children, scale*t.weight, loras)...)
		case tLora:
			*loras = append(*loras, t.l)
		case tSwap:
			orig := itemsToFragments(flattenToks(t.orig, scale, loras))
			edit := itemsToFragments(flattenToks(t.edit, scale, loras))
			out = append(out, newSwap(orig, edit))
		}
	}
	return out
}

// newSwap is CrossAttentionControlSubstitute's constructor: an empty side
// becomes one empty fragment.
func newSwap(orig, edit []Fragment) flatItem {
	if len(orig) == 0 {
		orig = []Fragment{{"", 1}}
	}
	if len(edit) == 0 {
		edit = []Fragment{{"", 1}}
	}
	return flatItem{swap: true, orig: orig, edit: edit}
}

func itemsToFragments(items []flatItem) []Fragment {
	out := make([]Fragment, 0, len(items))
	for _, it := range items {
		if it.swap { // a swap nested in a swap keeps its original side
			out = append(out, it.orig...)
			continue
		}
		out = append(out, it.frag)
	}
	return out
}

// fuse is compel's fuse_fragments: neighbours of equal weight join with a
// space (a swap breaks the run).
func fuse(items []flatItem) []flatItem {
	var out []flatItem
	for _, it := range items {
		if it.swap {
			out = append(out, newSwap(fuseFragments(it.orig), fuseFragments(it.edit)))
			continue
		}
		if n := len(out); n > 0 && !out[n-1].swap && out[n-1].frag.Weight == it.frag.Weight {
			out[n-1].frag = Fragment{newFragment(out[n-1].frag.Text + " " + it.frag.Text), out[n-1].frag.Weight}
			continue
		}
		out = append(out, it)
	}
	return out
}

func fuseFragments(fs []Fragment) []Fragment {
	items := make([]flatItem, len(fs))
	for i, f := range fs {
		items[i] = flatItem{frag: f}
	}
	return itemsToFragments(fuse(items))
}

// flattenPrompt flattens one Prompt's tokens into the conditioning's
// fragments; with swaps, also the edited side.
func flattenPrompt(toks []tok, loras *[]Lora) (frags, edited []Fragment, hasSwap bool) {
	items := fuse(flattenToks(toks, 1.0, loras))
	for _, it := range items {
		if it.swap {
			hasSwap = true
			frags = append(frags, it.orig...)
			edited = append(edited, it.edit...)
			continue
		}
		frags = append(frags, it.frag)
		edited = append(edited, it.frag)
	}
	if !hasSwap {
		edited = nil
	}
	return frags, edited, hasSwap
}

// flattenConjunction is PromptParser.flatten.
func flattenConjunction(c *tConj) (*CompelParse, error) {
	out := &CompelParse{}
	for i, toks := range c.prompts {
		if b := c.blends[i]; b != nil {
			var subs [][]Fragment
			for _, pt := range b.prompts {
				frags, _, hasSwap := flattenPrompt(pt, &out.Loras)
				if hasSwap {
					return nil, errors.New("compel prompt: .swap() cannot be part of a .blend()")
				}
				if len(frags) > 0 {
					subs = append(subs, frags)
				}
			}
			if len(subs) != len(b.weights) {
				return nil, fmt.Errorf("compel prompt: .blend() has %d non-empty prompts but %d weights", len(subs), len(b.weights))
			}
			if len(subs) == 0 {
				return nil, fmt.Errorf("%w: empty .blend()", ErrEmptyPrompt)
			}
			out.Prompts = append(out.Prompts, CompelPrompt{Blend: &Blend{Prompts: subs, Weights: b.weights, Normalize: b.normalize}})
			out.Weights = append(out.Weights, c.weights[i])
			continue
		}
		frags, edited, _ := flattenPrompt(toks, &out.Loras)
		if len(frags) > 0 {
			out.Prompts = append(out.Prompts, CompelPrompt{Fragments: frags, Edited: edited})
			out.Weights = append(out.Weights, c.weights[i])
		}
	}
	return out, nil
}

func containsSwap(toks []tok) bool {
	for _, t := range toks {
		switch t := t.(type) {
		case tSwap:
			return true
		case tAttn:
			if containsSwap(t.children) {
				return true
			}
		}
	}
	return false
}
