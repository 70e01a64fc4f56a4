package prompt

import (
	"strings"
	"testing"
)

// TestWeightBound: weights that overflow the embeddings (Compel's 1000
// "+", huge explicit numbers, inf) are errors naming the fragment; the
// largest allowed ones still parse.
func TestWeightBound(t *testing.T) {
	for _, c := range []struct {
		compel bool
		text   string
		want   string
	}{
		{true, "cat" + strings.Repeat("+", 1000), `fragment "cat" has weight 2.4`},
		{true, "(cat)1000000 dog", `fragment "cat" has weight 1e+06, beyond ±100`},
		{true, `("a", "b").blend(1000000000, 1)`, "blend entry 0 has weight 1e+09"},
		{true, `("a", "b").and(1, 200)`, ".and() entry 1 has weight 200"},
		{false, "(cat:1000000)", `fragment "cat" has weight 1e+06`},
		{false, "(cat:-500)", `fragment "cat" has weight -500`},
		{false, strings.Repeat("(", 60) + "cat" + strings.Repeat(")", 60), `fragment "cat" has weight 30`},
	} {
		var err error
		if c.compel {
			_, err = ParseCompel(c.text)
		} else {
			_, err = ParseA1111(c.text)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "all-black image") {
			t.Errorf("%.40q: %v, want %q", c.text, err, c.want)
		}
	}
	p, err := ParseCompel("cat" + strings.Repeat("+", 48))
	if err != nil || p.Prompts[0].Fragments[0].Weight > MaxWeight {
		t.Errorf("48 '+': %v", err)
	}
	if _, err := ParseA1111("(cat:100) dog BREAK bird [x]"); err != nil {
		t.Errorf("weight 100 and BREAK: %v", err)
	}
}
