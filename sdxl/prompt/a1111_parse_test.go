package prompt

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestA1111ParseMatchesWebui compares ParseA1111 with the output of
// AUTOMATIC1111's parse_prompt_attention on its doctest examples, BREAK
// cases and 1,360 random prompts (testdata/a1111_parse_cases.json).
func TestA1111ParseMatchesWebui(t *testing.T) {
	raw, err := os.ReadFile("testdata/a1111_parse_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var data struct {
		Cases []struct {
			Text   string  `json:"text"`
			Result [][]any `json:"result"`
			Error  string  `json:"error"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatal(err)
	}
	bad := 0
	for _, c := range data.Cases {
		got, err := ParseA1111(c.Text)
		if c.Error != "" {
			if err == nil {
				bad++
				t.Errorf("%q: webui fails (%s), we give %v", c.Text, c.Error, got)
			}
			continue
		}
		if err != nil {
			bad++
			t.Errorf("%q: %v", c.Text, err)
			continue
		}
		var want []Fragment
		for _, r := range c.Result {
			want = append(want, Fragment{r[0].(string), r[1].(float64)})
		}
		if d := cmp.Diff(want, got); d != "" {
			bad++
			t.Errorf("%q (-webui +ours):\n%s", c.Text, d)
		}
		if bad > 15 {
			t.Fatal("too many differences")
		}
	}
	t.Logf("%d prompts parse as AUTOMATIC1111 parses them", len(data.Cases))
}

func FuzzParseA1111(f *testing.F) {
	for _, s := range []string{"", "a (b:1.2) [c] BREAK d", "((a", "\\(x\\)", "(x:..)", "a BREAK"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fr, err := ParseA1111(s)
		if err == nil && len(fr) == 0 {
			t.Fatalf("%q: no fragments", s)
		}
	})
}
