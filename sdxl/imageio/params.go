package imageio

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// Field is one "Key: value" entry of the parameters' last line.
type Field struct {
	Key, Value string
}

// Parameters is a generation summary in AUTOMATIC1111's infotext layout
// (modules/processing.py create_infotext):
//
//	<prompt>
//	Negative prompt: <negative prompt>        (omitted when empty)
//	Steps: 30, Sampler: Euler, Schedule type: Karras, CFG scale: 5, Seed: 42, Size: 1024x1024, Model: ...
//
// Values containing ',', ':' or a newline are written as JSON strings.
type Parameters struct {
	Prompt, NegativePrompt string
	Fields                 []Field
}

// Generation holds the usual fields of the last line. Empty strings and a
// zero Steps are left out.
type Generation struct {
	Prompt, NegativePrompt string
	Steps                  int
	Sampler                string // e.g. "Euler", "DPM++ 2M"
	ScheduleType           string // e.g. "Karras"; empty for the sampler's default
	CFGScale               float64
	Seed                   uint64
	Width, Height          int
	ModelHash              string // AUTOMATIC1111's short hash, if known
	Model                  string // model name
	// Extra fields follow in order (e.g. "Denoising strength", "Refiner",
	// "Refiner switch at", "Version").
	Extra []Field
}

// Parameters lays the generation out in AUTOMATIC1111's field order.
func (g Generation) Parameters() Parameters {
	var f []Field
	add := func(k, v string) {
		if v != "" {
			f = append(f, Field{k, v})
		}
	}
	if g.Steps != 0 {
		add("Steps", strconv.Itoa(g.Steps))
	}
	add("Sampler", g.Sampler)
	add("Schedule type", g.ScheduleType)
	add("CFG scale", FormatFloat(g.CFGScale))
	add("Seed", strconv.FormatUint(g.Seed, 10))
	if g.Width > 0 && g.Height > 0 {
		add("Size", fmt.Sprintf("%dx%d", g.Width, g.Height))
	}
	add("Model hash", g.ModelHash)
	add("Model", g.Model)
	for _, e := range g.Extra {
		add(e.Key, e.Value)
	}
	return Parameters{Prompt: g.Prompt, NegativePrompt: g.NegativePrompt, Fields: f}
}

// FormatFloat writes a number the short way AUTOMATIC1111's infotexts show
// it: 5 for 5.0, 7.5 for 7.5, never an exponent.
func FormatFloat(v float64) string {
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// String formats the parameters text.
func (p Parameters) String() string {
	var sb strings.Builder
	sb.WriteString(p.Prompt)
	if p.NegativePrompt != "" {
		sb.WriteString("\nNegative prompt: ")
		sb.WriteString(p.NegativePrompt)
	}
	sb.WriteString("\n")
	for i, f := range p.Fields {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(f.Key)
		sb.WriteString(": ")
		sb.WriteString(Quote(f.Value))
	}
	return pyStrip(sb.String())
}

// Chunk returns the parameters as the ParametersKey text chunk.
func (p Parameters) Chunk() TextChunk {
	return TextChunk{Key: ParametersKey, Value: p.String()}
}

// Quote is AUTOMATIC1111's infotext_utils.quote: the value unchanged unless it
// contains ',', ':' or '\n', else json.dumps(value, ensure_ascii=False).
func Quote(v string) string {
	if !strings.ContainsAny(v, ",:\n") {
		return v
	}
	return pyJSONString(v)
}

// pyJSONString is Python's json.dumps of a str with ensure_ascii=False:
// quotes, backslashes and control characters below 0x20 are escaped, all
// other characters (non-ASCII included) are written as they are. Go's
// encoding/json differs (it escapes <, >, &, U+2028 and U+2029).
func pyJSONString(s string) string {
	var sb strings.Builder
	sb.Grow(len(s) + 2)
	sb.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			sb.WriteString(`\"`)
		case '\\':
			sb.WriteString(`\\`)
		case '\n':
			sb.WriteString(`\n`)
		case '\r':
			sb.WriteString(`\r`)
		case '\t':
			sb.WriteString(`\t`)
		case '\b':
			sb.WriteString(`\b`)
		case '\f':
			sb.WriteString(`\f`)
		default:
			if r < 0x20 {
				fmt.Fprintf(&sb, `\u%04x`, r)
			} else {
				sb.WriteRune(r)
			}
		}
	}
	sb.WriteByte('"')
	return sb.String()
}

// pyIsSpace is Python's str.isspace for one character: Go's unicode.IsSpace
// plus the information separators U+001C..U+001F.
func pyIsSpace(r rune) bool {
	return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f
}

// pyStrip is Python's str.strip() with no arguments.
func pyStrip(s string) string {
	return strings.TrimFunc(s, pyIsSpace)
}

// reParam is AUTOMATIC1111's re_param_code (infotext_utils.py).
var reParam = regexp.MustCompile(`\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)`)

// ParseParameters reads a parameters text the way AUTOMATIC1111's
// parse_generation_parameters does: the last line is the field line when it
// holds at least three "Key: value" pairs; earlier lines are the prompt until
// one starts with "Negative prompt:"; every line is stripped of surrounding
// spaces; JSON-quoted values are unquoted.
func ParseParameters(text string) (Parameters, error) {
	lines := strings.Split(pyStrip(text), "\n")
	last := lines[len(lines)-1]
	lines = lines[:len(lines)-1]
	if len(reParam.FindAllStringSubmatch(last, -1)) < 3 {
		lines = append(lines, last)
		last = ""
	}
	var p Parameters
	var prompt, neg []string
	inNeg := false
	for _, l := range lines {
		l = pyStrip(l)
		if rest, ok := strings.CutPrefix(l, "Negative prompt:"); ok {
			inNeg = true
			l = pyStrip(rest)
		}
		if inNeg {
			neg = append(neg, l)
		} else {
			prompt = append(prompt, l)
		}
	}
	p.Prompt = strings.Join(prompt, "\n")
	p.NegativePrompt = strings.Join(neg, "\n")
	for _, m := range reParam.FindAllStringSubmatch(last, -1) {
		k, v := m[1], m[2]
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			var s string
			if err := json.Unmarshal([]byte(v), &s); err != nil {
				return Parameters{}, fmt.Errorf("parameters: field %q: bad quoted value %s: %v", k, v, err)
			}
			v = s
		}
		p.Fields = append(p.Fields, Field{k, v})
	}
	return p, nil
}

// Get returns the value of the first field named key.
func (p Parameters) Get(key string) (string, bool) {
	for _, f := range p.Fields {
		if f.Key == key {
			return f.Value, true
		}
	}
	return "", false
}
