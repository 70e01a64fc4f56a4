package jsonobj

import (
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	m, err := Decode([]byte(`{"a": -Infinity, "b": [NaN, 1], "s": "NaN", "n": 3, "o": {"x": Infinity}}`))
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := m["a"].(float64); !math.IsInf(f, -1) {
		t.Errorf("a = %v", m["a"])
	}
	if l := m["b"].([]any); !math.IsNaN(l[0].(float64)) {
		t.Errorf("b = %v", l)
	}
	if s, _ := m["s"].(string); s != "NaN" {
		t.Errorf("string changed: %q", m["s"])
	}
	if f, _ := m["o"].(map[string]any)["x"].(float64); !math.IsInf(f, 1) {
		t.Errorf("nested: %v", m["o"])
	}
	for in, want := range map[string]string{`[1]`: "not a JSON object", `{"a":1} {}`: "trailing data", `{"a":`: "not valid JSON", `null`: "not a JSON object"} {
		if _, err := Decode([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Decode(%s) = %v, want %q", in, err, want)
		}
	}
	var v struct{ C map[string]any }
	if err := Unmarshal([]byte(`{"C": {"k": -Infinity, "l": [NaN]}}`), &v); err != nil || !math.IsInf(v.C["k"].(float64), -1) || !math.IsNaN(v.C["l"].([]any)[0].(float64)) {
		t.Errorf("Unmarshal: %v %v", v, err)
	}
}

func TestGetters(t *testing.T) {
	o, err := Parse("f.json", []byte(`{"i": 3, "big": 3000000000, "frac": 2.5, "q": "4", "nul": null, "f": 1e-5, "b": true,
		"s": "x", "l": [1, 2], "fl": [0.5, Infinity], "ss": ["a"], "_private": 1, "extra": 0}`))
	if err != nil {
		t.Fatal(err)
	}
	if o.Int("i", 0) != 3 || o.Float("f", 0) != 1e-5 || !o.Bool("b", false) || o.Str("s", "") != "x" ||
		!reflect.DeepEqual(o.Ints("l", nil), []int{1, 2}) || !reflect.DeepEqual(o.Strs("ss", nil), []string{"a"}) ||
		o.Int("absent", 7) != 7 || o.OptInt("nul", new(int)) != nil || o.Bool("nul", true) || o.Str("nul", "d") != "" {
		t.Error("wrong values")
	}
	if fl := o.Floats("fl"); len(fl) != 2 || !math.IsInf(fl[1], 1) {
		t.Errorf("floats %v", fl)
	}
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	if got := o.Unused(); !reflect.DeepEqual(got, []string{"big", "extra", "frac", "q"}) {
		t.Errorf("unused %v", got)
	}
	for key, want := range map[string]string{"big": "f.json: big: must be an integer, got 3000000000", "frac": "got 2.5",
		"q": `got "4"`, "nul": "must be an integer, not null"} {
		o := New("f.json", o.m)
		o.Int(key, 0)
		if o.Err() == nil || !strings.Contains(o.Err().Error(), want) {
			t.Errorf("%s: %v, want %q", key, o.Err(), want)
		}
	}
	// The first error sticks.
	o = New("c", map[string]any{"a": "x", "b": "y"})
	o.Float("a", 0)
	o.Bool("b", false)
	if o.Err() == nil || !strings.Contains(o.Err().Error(), "c: a: must be a number") {
		t.Errorf("sticky error: %v", o.Err())
	}
	// NullIsAbsent: null takes the default everywhere.
	o = New("c", map[string]any{"a": nil})
	o.NullIsAbsent = true
	if o.Int("a", 5) != 5 || o.Float("a", 2) != 2 || !o.Bool("a", true) || o.Str("a", "d") != "d" || o.Err() != nil {
		t.Errorf("NullIsAbsent: %v", o.Err())
	}
	if o.Str("a", "d", "d", "e") != "d" || !reflect.DeepEqual(o.Read(), []string{"a"}) {
		t.Errorf("read %v", o.Read())
	}
	o = New("c", map[string]any{"k": "z"})
	if o.Str("k", "d", "d", "e"); o.Err() == nil || !strings.Contains(o.Err().Error(), `"z" is not one of d, e`) {
		t.Errorf("enum: %v", o.Err())
	}
}

func TestAsInt(t *testing.T) {
	for _, c := range []struct {
		v  any
		ok bool
	}{{1.0, true}, {1.5, false}, {math.NaN(), false}, {math.Inf(1), false}, {float64(1 << 40), false}, {int64(1 << 40), false}, {7, true}, {"7", false}} {
		if _, ok := AsInt(c.v); ok != c.ok {
			t.Errorf("AsInt(%v) ok = %v", c.v, ok)
		}
	}
}
