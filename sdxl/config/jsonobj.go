package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
)

// object reads the keys of one JSON config object the way diffusers'
// from_config and transformers' from_pretrained do: an absent key takes the
// constructor default, a key present with null passes None. It records the
// first error (naming the file and key) and which keys were consumed, so
// the rest can be reported as unused.
type object struct {
	file string
	raw  map[string]json.RawMessage
	used map[string]bool
	err  error
}

// parseObject splits data into its top-level keys; file names the source
// in errors.
func parseObject(file string, data []byte) (*object, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("%s: not a JSON object (found a JSON %s)", file, te.Value)
		}
		return nil, fmt.Errorf("%s: not valid JSON: %v", file, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("%s: not a JSON object", file)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: trailing data after the JSON object", file)
	}
	return &object{file: file, raw: raw, used: map[string]bool{}}, nil
}

func (o *object) fail(key, format string, args ...any) {
	if o.err == nil {
		o.err = fmt.Errorf("%s: %s: %s", o.file, key, fmt.Sprintf(format, args...))
	}
}

// get returns the raw value of key; present is false when the key is
// absent, null is true when its value is JSON null.
func (o *object) get(key string) (v json.RawMessage, present, null bool) {
	v, present = o.raw[key]
	o.used[key] = true
	return v, present, present && isNull(v)
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

func isList(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) > 0 && v[0] == '['
}

// describe shortens a raw value for error messages.
func describe(v json.RawMessage) string {
	s := string(bytes.TrimSpace(v))
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// decodeInt reads a JSON integer (no fraction, no exponent, within int32:
// every size in these configs is far below that).
func decodeInt(v json.RawMessage) (int, bool) {
	if t := bytes.TrimSpace(v); len(t) == 0 || t[0] == '"' {
		return 0, false // json.Number would accept a quoted number
	}
	var n json.Number
	if err := json.Unmarshal(v, &n); err != nil {
		return 0, false
	}
	i, err := n.Int64()
	if err != nil || i < math.MinInt32 || i > math.MaxInt32 {
		return 0, false
	}
	return int(i), true
}

// int reads an integer key; null is an error (None would crash the Python
// constructor for these keys).
func (o *object) int(key string, def int) int {
	v, present, null := o.get(key)
	switch {
	case !present:
		return def
	case null:
		o.fail(key, "must be an integer, not null")
		return def
	}
	i, ok := decodeInt(v)
	if !ok {
		o.fail(key, "must be an integer, got %s", describe(v))
		return def
	}
	return i
}

// optInt reads an integer key where None is meaningful; absent gives def
// (nil for a None default).
func (o *object) optInt(key string, def *int) *int {
	v, present, null := o.get(key)
	switch {
	case !present:
		return def
	case null:
		return nil
	}
	i, ok := decodeInt(v)
	if !ok {
		o.fail(key, "must be an integer or null, got %s", describe(v))
		return def
	}
	return &i
}

func (o *object) float(key string, def float64) float64 {
	v, present, null := o.get(key)
	switch {
	case !present:
		return def
	case null:
		o.fail(key, "must be a number, not null")
		return def
	}
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		o.fail(key, "must be a number, got %s", describe(v))
		return def
	}
	return f
}

func (o *object) optFloat(key string, def *float64) *float64 {
	v, present, null := o.get(key)
	switch {
	case !present:
		return def
	case null:
		return nil
	}
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		o.fail(key, "must be a number or null, got %s", describe(v))
		return def
	}
	return &f
}

func (o *object) floats(key string) []float64 {
	v, present, null := o.get(key)
	if !present || null {
		return nil
	}
	var f []float64
	if err := json.Unmarshal(v, &f); err != nil {
		o.fail(key, "must be a list of numbers or null, got %s", describe(v))
		return nil
	}
	return f
}

// bool reads a flag. null counts as false, as Python's truth test of None
// does wherever these flags are used (SDXL's own config has
// "upcast_attention": null).
func (o *object) bool(key string, def bool) bool {
	v, present, null := o.get(key)
	switch {
	case !present:
		return def
	case null:
		return false
	}
	var b bool
	if err := json.Unmarshal(v, &b); err != nil {
		o.fail(key, "must be true, false or null, got %s", describe(v))
		return def
	}
	return b
}

func (o *object) optBool(key string, def *bool) *bool {
	v, present, null := o.get(key)
	switch {
	case !present:
		return def
	case null:
		return nil
	}
	var b bool
	if err := json.Unmarshal(v, &b); err != nil {
		o.fail(key, "must be true, false or null, got %s", describe(v))
		return def
	}
	return &b
}

// str reads a string where null means None ("").
func (o *object) str(key, def string) string {
	v, present, null := o.get(key)
	switch {
	case !present:
		return def
	case null:
		return ""
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		o.fail(key, "must be a string or null, got %s", describe(v))
		return def
	}
	return s
}

// reqStr reads a string that may not be null.
func (o *object) reqStr(key, def string) string {
	if _, present, null := o.get(key); present && null {
		o.fail(key, "must be a string, not null")
		return def
	}
	return o.str(key, def)
}

func (o *object) strs(key string, def []string) []string {
	v, present, null := o.get(key)
	switch {
	case !present:
		return append([]string(nil), def...)
	case null:
		o.fail(key, "must be a list of strings, not null")
		return nil
	}
	var s []string
	if err := json.Unmarshal(v, &s); err != nil {
		o.fail(key, "must be a list of strings, got %s", describe(v))
		return nil
	}
	return s
}

// perBlock reads an int-or-list key and normalises it to n values: an int
// is repeated, a list must have exactly n entries.
func (o *object) perBlock(key string, def, n int) []int {
	v, present, null := o.get(key)
	if !present {
		return repeat(def, n)
	}
	if null {
		o.fail(key, "must be an integer or a list of %d integers, not null", n)
		return repeat(def, n)
	}
	if !isList(v) {
		i, ok := decodeInt(v)
		if !ok {
			o.fail(key, "must be an integer or a list of %d integers, got %s", n, describe(v))
			return repeat(def, n)
		}
		return repeat(i, n)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(v, &items); err != nil {
		o.fail(key, "must be an integer or a list of %d integers, got %s", n, describe(v))
		return repeat(def, n)
	}
	if len(items) != n {
		o.fail(key, "has %d entries, want one per block (%d)", len(items), n)
		return repeat(def, n)
	}
	out := make([]int, n)
	for i, it := range items {
		x, ok := decodeInt(it)
		if !ok {
			o.fail(key, "entry %d must be an integer, got %s", i, describe(it))
			return repeat(def, n)
		}
		out[i] = x
	}
	return out
}

// perBlockBool is perBlock for flags.
func (o *object) perBlockBool(key string, def bool, n int) []bool {
	v, present, null := o.get(key)
	out := make([]bool, n)
	if !present {
		for i := range out {
			out[i] = def
		}
		return out
	}
	if null {
		o.fail(key, "must be true, false or a list of %d of them, not null", n)
		return out
	}
	if !isList(v) {
		var b bool
		if err := json.Unmarshal(v, &b); err != nil {
			o.fail(key, "must be true, false or a list of %d of them, got %s", n, describe(v))
		}
		for i := range out {
			out[i] = b
		}
		return out
	}
	var bs []bool
	if err := json.Unmarshal(v, &bs); err != nil {
		o.fail(key, "must be true, false or a list of %d of them, got %s", n, describe(v))
		return out
	}
	if len(bs) != n {
		o.fail(key, "has %d entries, want one per block (%d)", len(bs), n)
		return out
	}
	return bs
}

// unused lists the keys nobody read, skipping "_"-prefixed bookkeeping
// (_class_name, _diffusers_version, _name_or_path, ...).
func (o *object) unused() []string {
	var out []string
	for k := range o.raw {
		if !o.used[k] && !strings.HasPrefix(k, "_") {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func repeat(v, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}
