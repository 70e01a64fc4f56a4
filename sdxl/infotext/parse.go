package infotext

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Python's re module, on str patterns, makes \w and \s Unicode-aware; Go's
// are ASCII. These classes are Python's (str.isalnum() or '_', and
// str.isspace()), so keys and spaces in any script split as in A1111.
const (
	pyWord  = `[\p{L}\p{N}_]`
	pySpace = `[\t\n\v\f\r \x1c-\x1f\x85\p{Z}]`
)

// reParam is infotext_utils.re_param_code with Python's character classes:
// a key (a word character, then word characters, spaces, '-' or '/'), a
// colon, and a JSON-quoted value or everything up to the next comma.
var reParam = regexp.MustCompile(pySpace + `*(` + pyWord + `(?:` + pyWord + `|[ \-/])+):` + pySpace + `*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)`)

// reImageSize is infotext_utils.re_imagesize.
var reImageSize = regexp.MustCompile(`^(\d+)x(\d+)$`)

// Split is the text part of parse_generation_parameters: the prompt, the
// negative prompt and the pairs of the last line, values unquoted (a value
// whose JSON does not parse stays as written, as unquote does). The last
// line counts as parameters only when the pair pattern matches at least 3
// times; otherwise it is part of the prompt. Every line is stripped; lines
// from the first one starting with "Negative prompt:" on are the negative
// prompt.
//
// Beyond A1111, an unquoted JSON object or array value ("Hashes: {...}"
// from the Civitai extension, "Civitai resources: [...]") is kept whole;
// A1111's pattern would cut it at its first comma.
func Split(text string) (prompt, negative string, fields []Field) {
	lines := strings.Split(pyStrip(text), "\n")
	last := lines[len(lines)-1]
	lines = lines[:len(lines)-1]
	if len(reParam.FindAllStringIndex(last, -1)) < 3 {
		lines = append(lines, last)
		last = ""
	}
	var pos, neg []string
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
			pos = append(pos, l)
		}
	}
	return strings.Join(pos, "\n"), strings.Join(neg, "\n"), splitFields(last)
}

// splitFields is re_param.findall over the parameters line, one match at a
// time so that JSON object and array values can be taken whole.
func splitFields(line string) []Field {
	var out []Field
	for len(line) > 0 {
		m := reParam.FindStringSubmatchIndex(line)
		if m == nil {
			break
		}
		key, vStart, end := line[m[2]:m[3]], m[4], m[1]
		value := line[vStart:m[5]]
		if raw, n, ok := jsonValueAt(line[vStart:]); ok {
			value, end = raw, vStart+n
		} else if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = unquote(value)
		}
		out = append(out, Field{key, value})
		line = line[end:]
	}
	return out
}

// jsonValueAt reads one JSON object or array at the start of s followed by
// a comma or the end of s, and returns its text and the length consumed
// (comma included).
func jsonValueAt(s string) (string, int, bool) {
	if s == "" || s[0] != '{' && s[0] != '[' {
		return "", 0, false
	}
	dec := json.NewDecoder(strings.NewReader(s))
	var raw json.RawMessage
	if dec.Decode(&raw) != nil {
		return "", 0, false
	}
	n := int(dec.InputOffset())
	rest := strings.TrimLeft(s[n:], " ")
	switch {
	case rest == "":
		return string(raw), len(s), true
	case rest[0] == ',':
		return string(raw), len(s) - len(rest) + 1, true
	}
	return "", 0, false
}

// unquote is infotext_utils.unquote: json.loads of a quoted value, or the
// text unchanged when that fails.
func unquote(v string) string {
	var s string
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return v
	}
	return s
}

// Parse reads an infotext into Params. Known keys fill their fields and
// must hold valid numbers (an error names the key and the value); every
// other pair lands in Extra in order. Missing keys take A1111's defaults:
// Clip skip 1, Schedule type "Automatic", RNG "GPU". A sampler name that
// carries its schedule ("DPM++ 2M Karras", "euler_a karras") is split as
// A1111's sd_samplers.get_sampler_and_scheduler does, the suffix winning
// over a Schedule type field.
func Parse(text string) (Params, error) {
	prompt, neg, fields := Split(text)
	p := Params{Prompt: prompt, NegativePrompt: neg, ClipSkip: 1}
	for _, f := range fields {
		if err := p.set(f); err != nil {
			return Params{}, err
		}
	}
	if base, sched := splitSampler(p.Sampler); sched != "" {
		p.Sampler, p.ScheduleType = base, sched
	}
	if p.ScheduleType == "" {
		p.ScheduleType = "Automatic"
	}
	if p.RNG == "" {
		p.RNG = "GPU"
	}
	return p, nil
}

// set stores one pair into p.
func (p *Params) set(f Field) error {
	var err error
	switch f.Key {
	case "Steps":
		p.Steps, err = parseInt(f)
	case "Sampler":
		p.Sampler = f.Value
	case "Schedule type":
		p.ScheduleType = f.Value
	case "CFG scale":
		p.CFGScale, err = parseFloat(f)
	case "Seed":
		p.Seed, err = strconv.ParseUint(strings.TrimSpace(f.Value), 10, 64)
		if err != nil {
			err = fieldErr(f, "a non-negative integer")
		}
	case "Size":
		p.Width, p.Height, err = parseSize(f)
	case "Model hash":
		p.ModelHash = f.Value
	case "Model":
		p.Model = f.Value
	case "VAE hash":
		p.VAEHash = f.Value
	case "VAE":
		p.VAE = f.Value
	case "Denoising strength":
		p.DenoisingStrength, err = parseFloat(f)
	case "Clip skip":
		p.ClipSkip, err = parseInt(f)
	case "RNG":
		p.RNG = f.Value
	case "Lora hashes":
		p.LoraHashes = parseLoraHashes(f.Value)
	case "Refiner":
		p.Refiner = f.Value
	case "Refiner switch at":
		p.RefinerSwitchAt, err = parseFloat(f)
	case "Version":
		p.Version = f.Value
	case "Hashes":
		p.Hashes, err = parseHashes(f)
	default:
		p.Extra = append(p.Extra, f)
	}
	return err
}

func fieldErr(f Field, want string) error {
	return fmt.Errorf("infotext: %q: %q is not %s", f.Key, f.Value, want)
}

func parseInt(f Field) (int, error) {
	v, err := strconv.Atoi(strings.TrimSpace(f.Value))
	if err != nil {
		return 0, fieldErr(f, "an integer")
	}
	return v, nil
}

func parseFloat(f Field) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(f.Value), 64)
	if err != nil {
		return 0, fieldErr(f, "a number")
	}
	return v, nil
}

func parseSize(f Field) (w, h int, err error) {
	m := reImageSize.FindStringSubmatch(f.Value)
	if m == nil {
		return 0, 0, fieldErr(f, "WIDTHxHEIGHT")
	}
	w, err1 := strconv.Atoi(m[1])
	h, err2 := strconv.Atoi(m[2])
	if err1 != nil || err2 != nil {
		return 0, 0, fieldErr(f, "WIDTHxHEIGHT")
	}
	return w, h, nil
}

// parseLoraHashes reads "NAME: HASH, NAME2: HASH2".
func parseLoraHashes(v string) []LoraHash {
	var out []LoraHash
	for _, part := range strings.Split(v, ",") {
		name, hash, ok := strings.Cut(part, ":")
		if !ok {
			continue
		}
		out = append(out, LoraHash{strings.TrimSpace(name), strings.TrimSpace(hash)})
	}
	return out
}

// parseHashes reads the Civitai extension's JSON object of hashes in file
// order.
func parseHashes(f Field) ([]Field, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(f.Value)))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fieldErr(f, "a JSON object")
	}
	var out []Field
	for dec.More() {
		k, err1 := dec.Token()
		var v any
		err2 := dec.Decode(&v)
		key, ok := k.(string)
		if err1 != nil || err2 != nil || !ok {
			return nil, fieldErr(f, "a JSON object")
		}
		out = append(out, Field{key, fmt.Sprint(v)})
	}
	return out, nil
}
