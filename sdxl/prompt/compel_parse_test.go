package prompt

import (
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// serialized mirrors the JSON that testdata/compel_parse_cases.json holds
// for each prompt compel's own parser accepted.
type serialized struct {
	Prompts []map[string]any `json:"prompts"`
	Weights []float64        `json:"weights"`
	Loras   [][]any          `json:"loras"`
}

func fragsJSON(fs []Fragment) []any {
	out := make([]any, len(fs))
	for i, f := range fs {
		out[i] = []any{f.Text, f.Weight}
	}
	return out
}

func serialize(p *CompelParse) serialized {
	s := serialized{Weights: p.Weights, Loras: [][]any{}}
	for _, l := range p.Loras {
		s.Loras = append(s.Loras, []any{l.Name, l.Weight})
	}
	for _, pr := range p.Prompts {
		if pr.Blend != nil {
			var subs []any
			for _, fs := range pr.Blend.Prompts {
				subs = append(subs, fragsJSON(fs))
			}
			s.Prompts = append(s.Prompts, map[string]any{"blend": subs, "weights": pr.Blend.Weights, "normalize": pr.Blend.Normalize})
			continue
		}
		m := map[string]any{"fragments": fragsJSON(pr.Fragments), "edited": nil}
		if pr.Edited != nil {
			m["edited"] = fragsJSON(pr.Edited)
		}
		s.Prompts = append(s.Prompts, m)
	}
	return s
}

// roundTrip makes both sides plain JSON values so that cmp compares them
// alike (numbers as float64).
func roundTrip(t *testing.T, v any) any {
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCompelParseMatchesCompel runs every prompt of
// testdata/compel_parse_cases.json, which holds what compel 2.4's
// PromptParser (pyparsing 3.3) returned for the golden prompts, syntax
// examples and 2,300 random prompts built from syntax pieces.
func TestCompelParseMatchesCompel(t *testing.T) {
	raw, err := os.ReadFile("testdata/compel_parse_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var data struct {
		Cases []struct {
			Text   string          `json:"text"`
			Result json.RawMessage `json:"result"`
			Error  string          `json:"error"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatal(err)
	}
	bad, errs := 0, 0
	for _, c := range data.Cases {
		got, err := ParseCompel(c.Text)
		if c.Error != "" {
			errs++
			if err == nil {
				bad++
				t.Errorf("%q: compel fails (%s), we parse %+v", c.Text, c.Error, serialize(got))
			}
			continue
		}
		if err != nil {
			bad++
			t.Errorf("%q: %v; compel gives %s", c.Text, err, c.Result)
			continue
		}
		var want any
		if err := json.Unmarshal(c.Result, &want); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, roundTrip(t, serialize(got))); d != "" {
			bad++
			t.Errorf("%q (-compel +ours):\n%s", c.Text, d)
		}
		if bad > 15 {
			t.Fatal("too many differences")
		}
	}
	t.Logf("%d prompts (%d that compel rejects) parse as compel parses them", len(data.Cases), errs)
}

func TestCompelParseGoldenPrompts(t *testing.T) {
	p, err := ParseCompel("Colorful Roaring Lion sitting on a (victorian)1.2 couch, (flat icon)+, vector+")
	if err != nil {
		t.Fatal(err)
	}
	want := []Fragment{
		{"Colorful Roaring Lion sitting on a", 1}, {"victorian", 1.2}, {"couch,", 1},
		{"flat icon", 1.1}, {",", 1}, {"vector", 1.1},
	}
	if d := cmp.Diff(want, p.Prompts[0].Fragments); d != "" {
		t.Errorf("lion (-want +got):\n%s", d)
	}
}

func TestPowIntMatchesPython(t *testing.T) {
	// Python: 1.1**2, 0.9**3, 1.1**5, 0.9**10
	for _, c := range []struct {
		x    float64
		n    int
		want float64
	}{{1.1, 2, 1.2100000000000002}, {0.9, 3, 0.7290000000000001}, {1.1, 5, 1.6105100000000006}, {0.9, 10, 0.3486784401000001}, {1.1, 0, 1}} {
		if got := powInt(c.x, c.n); got != c.want {
			t.Errorf("powInt(%v, %d) = %v, want %v", c.x, c.n, got, c.want)
		}
	}
}

func TestPyFloat(t *testing.T) {
	for s, want := range map[string]float64{"1": 1, "-0.5": -0.5, "1_0": 10, " 2 ": 2, "1e3": 1000, "inf": math.Inf(1), "-Infinity": math.Inf(-1), "1.": 1, ".5": 0.5} {
		if got, err := pyFloat(s); err != nil || got != want {
			t.Errorf("pyFloat(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "abc", "1__0", "_1", "1_", "--1", "0x10", "1e", "e5", "no_normalize"} {
		if _, err := pyFloat(s); err == nil {
			t.Errorf("pyFloat(%q) accepted", s)
		}
	}
}

// TestCompelParseNoHang feeds inputs that make pyparsing backtrack
// exponentially; the packrat parser must answer quickly.
func TestCompelParseNoHang(t *testing.T) {
	for _, s := range []string{
		strings.Repeat("(", 40) + "a",
		strings.Repeat("(a ", 200),
		strings.Repeat(`"`, 301),
		strings.Repeat("(", 5000),
		strings.Repeat("a+", 20000),
		strings.Repeat(`("a", `, 60),
	} {
		start := time.Now()
		_, _ = ParseCompel(s)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("ParseCompel(%.20q...) took %v", s, d)
		}
	}
}

func FuzzParseCompel(f *testing.F) {
	for _, s := range []string{"", "a (b)1.2 c", `("a", "b").blend(1, 2)`, `("a", "b").and()`, "a.swap(b)", "withLora(x, 1) y",
		`"a \"b\" c"++`, "((((a", "a\\(b", "(x)١.٢", "x--,y++"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseCompel(s)
		if err != nil {
			return
		}
		if len(p.Prompts) == 0 || len(p.Prompts) != len(p.Weights) {
			t.Fatalf("%q: %d prompts, %d weights", s, len(p.Prompts), len(p.Weights))
		}
	})
}
