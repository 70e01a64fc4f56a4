// Package jsonobj reads the keys of one JSON configuration object the way
// diffusers' from_config and transformers' from_pretrained do: an absent
// key takes the default, a key present with null passes None, and unknown
// keys are ignored (but can be listed). A reader records the first error,
// naming the object and the key, so a loader reads every key in sequence
// and checks once at the end.
//
// It serves both the model configs (package sdxl/config) and the scheduler
// configs (package sched).
package jsonobj

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strings"
)

// Decode parses data as one JSON object. Numbers are kept as json.Number
// (integers stay exact). Like Python's json module, which writes these
// files, it accepts the bare literals NaN, Infinity and -Infinity (e.g.
// "lambda_min_clipped": -Infinity); they decode to float64 values.
func Decode(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(quoteNonFinite(data)))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("not a JSON object (found a JSON %s)", te.Value)
		}
		return nil, fmt.Errorf("not valid JSON: %v", err)
	}
	if raw == nil {
		return nil, fmt.Errorf("not a JSON object")
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the JSON object")
	}
	for k, v := range raw {
		raw[k] = unmark(v)
	}
	return raw, nil
}

// Unmarshal is json.Unmarshal for documents that may hold the bare
// literals NaN, Infinity and -Infinity: numbers in interface values become
// json.Number, the non-finite literals float64 values (in any map, list or
// struct field of interface type; typed float fields do not accept them).
func Unmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(quoteNonFinite(data)))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	unmarkValue(reflect.ValueOf(v))
	return nil
}

// unmarkValue applies unmark to every interface value reachable from v.
func unmarkValue(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			unmarkValue(v.Elem())
		}
	case reflect.Interface:
		if !v.IsNil() && v.CanSet() {
			v.Set(reflect.ValueOf(unmark(v.Elem().Interface())))
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				unmarkValue(v.Field(i))
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			unmarkValue(v.Index(i))
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(it.Value())
			unmarkValue(e)
			v.SetMapIndex(it.Key(), e)
		}
	}
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

// unmark replaces the marked strings by their float64 values, in nested
// lists and objects too.
func unmark(v any) any {
	switch x := v.(type) {
	case string:
		if tok, ok := strings.CutPrefix(x, nonFinite); ok {
			switch tok {
			case "-Infinity":
				return math.Inf(-1)
			case "Infinity":
				return math.Inf(1)
			default:
				return math.NaN()
			}
		}
	case []any:
		for i := range x {
			x[i] = unmark(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = unmark(x[k])
		}
	}
	return v
}

// Object reads typed values from a decoded JSON object.
type Object struct {
	// NullIsAbsent makes a null read as an absent key (the default) in
	// every getter; otherwise each getter documents what null means.
	NullIsAbsent bool

	name string
	m    map[string]any
	read []string
	seen map[string]bool
	err  error
}

// New reads m; name identifies the object in errors (a file path, a
// scheduler class).
func New(name string, m map[string]any) *Object {
	return &Object{name: name, m: m, seen: map[string]bool{}}
}

// Parse decodes data (see Decode) and returns a reader of it; errors name
// the object.
func Parse(name string, data []byte) (*Object, error) {
	m, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	return New(name, m), nil
}

// Name is the name given to New.
func (o *Object) Name() string { return o.name }

// Err is the first error recorded.
func (o *Object) Err() error { return o.err }

// Fail records an error about key unless one is recorded already.
func (o *Object) Fail(key, format string, args ...any) {
	if o.err == nil {
		o.err = fmt.Errorf("%s: %s: %s", o.name, key, fmt.Sprintf(format, args...))
	}
}

// Get returns the value of key and marks it read; present is false when
// the key is absent, null is true when its value is JSON null.
func (o *Object) Get(key string) (v any, present, null bool) {
	if !o.seen[key] {
		o.seen[key] = true
		o.read = append(o.read, key)
	}
	v, present = o.m[key]
	return v, present, present && v == nil
}

// Peek returns the value of key without marking it read.
func (o *Object) Peek(key string) (v any, present bool) {
	v, present = o.m[key]
	return v, present
}

// get is Get with NullIsAbsent applied.
func (o *Object) get(key string) (v any, present, null bool) {
	v, present, null = o.Get(key)
	if null && o.NullIsAbsent {
		return nil, false, false
	}
	return v, present, null
}

// Keys lists every key of the object, sorted.
func (o *Object) Keys() []string {
	out := make([]string, 0, len(o.m))
	for k := range o.m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Read lists the keys read so far, in the order first read.
func (o *Object) Read() []string { return slices.Clone(o.read) }

// Unused lists the keys nobody read, sorted, skipping "_"-prefixed
// bookkeeping (_class_name, _diffusers_version, _name_or_path, ...).
func (o *Object) Unused() []string {
	var out []string
	for _, k := range o.Keys() {
		if !o.seen[k] && !strings.HasPrefix(k, "_") {
			out = append(out, k)
		}
	}
	return out
}

// Describe shortens a value for error messages, as JSON text.
func Describe(v any) string {
	var s string
	if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
		s = fmt.Sprint(f)
	} else if b, err := json.Marshal(v); err == nil {
		s = string(b)
	} else {
		s = fmt.Sprint(v)
	}
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// AsList returns v as a JSON list.
func AsList(v any) ([]any, bool) {
	l, ok := v.([]any)
	return l, ok
}

// IsList reports whether v is a JSON list.
func IsList(v any) bool {
	_, ok := v.([]any)
	return ok
}

// AsFloat returns v as a number: a decoded JSON number (NaN and the
// infinities included) or a Go number set by a program.
func AsFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	}
	return 0, false
}

// AsInt returns v as an integer within int32 (every size and count in
// these configs is far below that, so larger values are refused here
// rather than overflowing later): a JSON number without fraction or
// exponent, or an integral Go number set by a program.
func AsInt(v any) (int, bool) {
	var i int64
	switch x := v.(type) {
	case json.Number:
		n, err := x.Int64()
		if err != nil {
			return 0, false
		}
		i = n
	case int:
		i = int64(x)
	case int64:
		i = x
	case float64, float32:
		f, _ := AsFloat(x)
		if f != math.Trunc(f) || math.Abs(f) > math.MaxInt32 {
			return 0, false
		}
		i = int64(f)
	default:
		return 0, false
	}
	if i < math.MinInt32 || i > math.MaxInt32 {
		return 0, false
	}
	return int(i), true
}

// scalar is the common path of the getters: an absent key gives def; null
// gives *onNull, or is an error when onNull is nil; any other value goes
// through conv, and what it refuses is an error saying the value must be
// what.
func scalar[T any](o *Object, key string, def T, onNull *T, what string, conv func(any) (T, bool)) T {
	v, present, null := o.get(key)
	switch {
	case !present:
		return def
	case null && onNull != nil:
		return *onNull
	case null:
		o.Fail(key, "must be %s, not null", what)
		return def
	}
	x, ok := conv(v)
	if !ok {
		o.Fail(key, "must be %s, got %s", what, Describe(v))
		return def
	}
	return x
}

// list is scalar for lists whose entries go through conv.
func list[T any](o *Object, key string, def []T, onNull *[]T, what, entry string, conv func(any) (T, bool)) []T {
	var bad string
	out := scalar(o, key, slices.Clone(def), onNull, what, func(v any) ([]T, bool) {
		items, ok := AsList(v)
		if !ok {
			return nil, false
		}
		out := make([]T, len(items))
		for i, e := range items {
			x, ok := conv(e)
			if !ok {
				bad = fmt.Sprintf("entry %d must be %s, got %s", i, entry, Describe(e))
				return nil, true
			}
			out[i] = x
		}
		return out, true
	})
	if bad != "" {
		o.Fail(key, "%s", bad)
	}
	return out
}

// Int reads an integer; null is an error (None would crash the Python
// constructor for these keys).
func (o *Object) Int(key string, def int) int {
	return scalar(o, key, def, nil, "an integer", AsInt)
}

// OptInt reads an integer where None is meaningful: null gives nil, absent
// gives def.
func (o *Object) OptInt(key string, def *int) *int {
	return scalar(o, key, def, new(*int), "an integer or null", func(v any) (*int, bool) {
		i, ok := AsInt(v)
		return &i, ok
	})
}

// Float reads a number; null is an error. Non-finite values are returned
// as they are: whether they make sense is the caller's to validate.
func (o *Object) Float(key string, def float64) float64 {
	return scalar(o, key, def, nil, "a number", AsFloat)
}

// OptFloat reads a number where None is meaningful: null gives nil,
// absent gives def.
func (o *Object) OptFloat(key string, def *float64) *float64 {
	return scalar(o, key, def, new(*float64), "a number or null", func(v any) (*float64, bool) {
		f, ok := AsFloat(v)
		return &f, ok
	})
}

// Floats reads an optional list of numbers: absent and null give nil.
func (o *Object) Floats(key string) []float64 {
	return list(o, key, nil, new([]float64), "a list of numbers or null", "a number", AsFloat)
}

// Ints reads a list of integers; absent gives a copy of def, null is an
// error.
func (o *Object) Ints(key string, def []int) []int {
	return list(o, key, def, nil, "a list of integers", "an integer", AsInt)
}

// Strs reads a list of strings; absent gives a copy of def, null is an
// error.
func (o *Object) Strs(key string, def []string) []string {
	return list(o, key, def, nil, "a list of strings", "a string", asString)
}

func asBool(v any) (bool, bool) {
	b, ok := v.(bool)
	return b, ok
}

func asString(v any) (string, bool) {
	s, ok := v.(string)
	return s, ok
}

// Bool reads a flag. null counts as false, as Python's truth test of None
// does wherever these flags are used (SDXL's own config has
// "upcast_attention": null).
func (o *Object) Bool(key string, def bool) bool {
	return scalar(o, key, def, new(bool), "true, false or null", asBool)
}

// OptBool reads a flag where None is meaningful: null gives nil.
func (o *Object) OptBool(key string, def *bool) *bool {
	return scalar(o, key, def, new(*bool), "true, false or null", func(v any) (*bool, bool) {
		b, ok := v.(bool)
		return &b, ok
	})
}

// Str reads a string where null means None (""). When allowed values are
// given, any other value is an error.
func (o *Object) Str(key, def string, allowed ...string) string {
	s := scalar(o, key, def, new(string), "a string or null", asString)
	if len(allowed) > 0 && s != def && !slices.Contains(allowed, s) {
		o.Fail(key, "%q is not one of %s", s, strings.Join(allowed, ", "))
		return def
	}
	return s
}

// ReqStr reads a string that may not be null.
func (o *Object) ReqStr(key, def string) string {
	return scalar(o, key, def, nil, "a string", asString)
}
