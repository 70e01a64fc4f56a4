package sched

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
)

// Config is a scheduler configuration as diffusers writes it to
// scheduler_config.json: option names mapped to JSON values (float64,
// bool, string, nil, []any). Keys a scheduler does not know are ignored
// when it is built, as diffusers' from_config ignores them, and keys that
// are absent take the defaults of the scheduler class being built, not
// those of the class that wrote the file.
type Config map[string]any

// LoadConfig reads a scheduler_config.json.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("scheduler config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("scheduler config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses the JSON text of a scheduler configuration. Like
// Python's json module (which diffusers uses to write these files) it
// accepts the bare literals NaN, Infinity and -Infinity, which appear for
// instance as "lambda_min_clipped": -Infinity.
func ParseConfig(data []byte) (Config, error) {
	dec := json.NewDecoder(bytes.NewReader(quoteNonFinite(data)))
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("parse scheduler config: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("parse scheduler config: trailing data after the JSON object")
	}
	if raw == nil {
		return nil, fmt.Errorf("parse scheduler config: not a JSON object")
	}
	return Config(raw), nil
}

// nonFinite marks the bare literals quoteNonFinite turned into strings, so
// that a genuine string "Infinity" stays a string.
const nonFinite = "\x00nonfinite:"

// quoteNonFinite rewrites the bare tokens NaN, Infinity and -Infinity that
// appear outside JSON strings into marked strings.
func quoteNonFinite(data []byte) []byte {
	var out []byte
	inString, escaped := false, false
	for i := 0; i < len(data); i++ {
		ch := data[i]
		if inString {
			out = append(out, ch)
			switch {
			case escaped:
				escaped = false
			case ch == '\\':
				escaped = true
			case ch == '"':
				inString = false
			}
			continue
		}
		if ch == '"' {
			inString = true
			out = append(out, ch)
			continue
		}
		matched := false
		for _, tok := range []string{"-Infinity", "Infinity", "NaN"} {
			if bytes.HasPrefix(data[i:], []byte(tok)) {
				// The marker's NUL byte must be escaped inside JSON text.
				out = append(out, `"\u0000nonfinite:`+tok+`"`...)
				i += len(tok) - 1
				matched = true
				break
			}
		}
		if !matched {
			out = append(out, ch)
		}
	}
	return out
}

// Clone returns a copy of c that can be modified independently (list
// values are shared; they are never modified in place).
func (c Config) Clone() Config {
	if c == nil {
		return Config{}
	}
	return maps.Clone(c)
}

// With returns a copy of c with key set to value, the way diffusers'
// from_config(config, key=value) overrides a loaded configuration.
func (c Config) With(key string, value any) Config {
	out := c.Clone()
	out[key] = value
	return out
}

// ClassName is the "_class_name" entry, or "" if absent.
func (c Config) ClassName() string {
	s, _ := c["_class_name"].(string)
	return s
}

// effective drops the keys listed in "_use_default_values" (diffusers
// records there which values were defaults when the file was saved, and
// from_config lets the new class use its own defaults for them) and the
// private "_..." keys.
func (c Config) effective() Config {
	out := Config{}
	var dropped []string
	if list, ok := c["_use_default_values"].([]any); ok {
		for _, v := range list {
			if s, ok := v.(string); ok {
				dropped = append(dropped, s)
			}
		}
	}
	for k, v := range c {
		if strings.HasPrefix(k, "_") || slices.Contains(dropped, k) {
			continue
		}
		out[k] = v
	}
	return out
}

// reader resolves typed options from a Config with class defaults,
// remembering the first type error.
type reader struct {
	c     Config
	class string
	err   error
	keys  []string // option names read, in order
}

// note records that the class reads key.
func (r *reader) note(key string) {
	if !slices.Contains(r.keys, key) {
		r.keys = append(r.keys, key)
	}
}

func (r *reader) fail(key string, v any, want string) {
	if r.err == nil {
		r.err = fmt.Errorf("%s: config key %q = %v (%T): want %s", r.class, key, v, v, want)
	}
}

func (r *reader) float(key string, def float64) float64 {
	r.note(key)
	v, ok := r.c[key]
	if !ok || v == nil {
		return def
	}
	f, ok := toFloat(v)
	if !ok {
		r.fail(key, v, "a number")
		return def
	}
	return f
}

// optFloat returns nil when the key is absent or null.
func (r *reader) optFloat(key string) *float64 {
	r.note(key)
	v, ok := r.c[key]
	if !ok || v == nil {
		return nil
	}
	f, ok := toFloat(v)
	if !ok {
		r.fail(key, v, "a number or null")
		return nil
	}
	return &f
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case float32:
		return float64(x), true
	case string:
		if tok, ok := strings.CutPrefix(x, nonFinite); ok {
			switch tok {
			case "-Infinity":
				return math.Inf(-1), true
			case "Infinity":
				return math.Inf(1), true
			case "NaN":
				return math.NaN(), true
			}
		}
	}
	return 0, false
}

func (r *reader) int(key string, def int) int {
	r.note(key)
	v, ok := r.c[key]
	if !ok || v == nil {
		return def
	}
	f, ok := toFloat(v)
	if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<31 {
		r.fail(key, v, "an integer")
		return def
	}
	return int(f)
}

func (r *reader) bool(key string, def bool) bool {
	r.note(key)
	v, ok := r.c[key]
	if !ok || v == nil {
		return def
	}
	b, ok := v.(bool)
	if !ok {
		r.fail(key, v, "true or false")
		return def
	}
	return b
}

// str reads a string option; a null value means def (diffusers' Optional
// string options use None for their default behaviour).
func (r *reader) str(key, def string, allowed ...string) string {
	r.note(key)
	v, ok := r.c[key]
	if !ok || v == nil {
		return def
	}
	s, ok := v.(string)
	if !ok {
		r.fail(key, v, "a string")
		return def
	}
	if len(allowed) > 0 && !slices.Contains(allowed, s) {
		r.fail(key, v, "one of "+strings.Join(allowed, ", "))
		return def
	}
	return s
}

func (r *reader) floats(key string) []float64 {
	r.note(key)
	v, ok := r.c[key]
	if !ok || v == nil {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		r.fail(key, v, "a list of numbers or null")
		return nil
	}
	out := make([]float64, len(list))
	for i, e := range list {
		f, ok := toFloat(e)
		if !ok {
			r.fail(key, v, "a list of numbers or null")
			return nil
		}
		out[i] = f
	}
	return out
}

func (r *reader) ints(key string) []int {
	fs := r.floats(key)
	out := make([]int, len(fs))
	for i, f := range fs {
		if f != math.Trunc(f) {
			r.fail(key, r.c[key], "a list of integers")
			return nil
		}
		out[i] = int(f)
	}
	return out
}
