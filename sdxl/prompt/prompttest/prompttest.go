// Package prompttest checks a real text encoder, plugged into
// prompt.Encoder, against the golden Compel conditionings of the small
// SDXL model (golden/small/e2e_compel_*.safetensors).
package prompttest

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sdxl/prompt"
	"github.com/sdxl-go/sdxl/sdxl/tokenizer"
)

// Tolerance is DESIGN.md's bound for Compel conditionings (relative error).
const Tolerance = 1e-5

// SmallTokenizers loads the small golden model's tokenizer/ and
// tokenizer_2/ (vocab.json + merges.txt).
func SmallTokenizers(t testing.TB) (*tokenizer.Tokenizer, *tokenizer.Tokenizer) {
	t.Helper()
	base := filepath.Dir(golden.Path(t, "small/models/sdxl-small-base/model_index.json"))
	t1, err := tokenizer.Load(filepath.Join(base, "tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	t2, err := tokenizer.Load(filepath.Join(base, "tokenizer_2"))
	if err != nil {
		t.Fatal(err)
	}
	return t1, t2
}

func check(t testing.TB, f *golden.File, name string, c *prompt.Conditioning, pooled bool) {
	t.Helper()
	want, shape := f.Get(name)
	if pooled {
		if len(shape) != 2 || shape[1] != len(c.Pooled) {
			t.Errorf("%s: shape %v, got %d values", name, shape, len(c.Pooled))
			return
		}
		golden.Check(t, name, c.Pooled, want, Tolerance)
		return
	}
	if len(shape) != 3 || shape[1] != c.Tokens || shape[2] != c.Dim {
		t.Errorf("%s: golden shape %v, got [1 %d %d]", name, shape, c.Tokens, c.Dim)
		return
	}
	golden.Check(t, name, c.Embeds, want, Tolerance)
}

// CheckCompelLion checks the "compel_lion_weighted" scenario: Compel with
// both tokenizers and encoders in lists (truncate_long_prompts=True,
// pooled from encoder 2), positive and negative built separately.
func CheckCompelLion(t testing.TB, enc1, enc2 prompt.Encoder) {
	t.Helper()
	t1, t2 := SmallTokenizers(t)
	f := golden.Open(t, "small/e2e_compel_lion_weighted.safetensors")
	c, err := prompt.NewCompel(true, prompt.Pair{Tokenizer: t1, Encoder: enc1}, prompt.Pair{Tokenizer: t2, Encoder: enc2, Pooled: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, side := range []struct{ name, text string }{
		{"", "Colorful Roaring Lion sitting on a (victorian)1.2 couch, (flat icon)+, vector+"},
		{"negative_", "realistic, realism, photograph"},
	} {
		cond, err := c.Build(side.text)
		if err != nil {
			t.Fatal(err)
		}
		check(t, f, fmt.Sprintf("compel.%sprompt_embeds", side.name), cond, false)
		check(t, f, fmt.Sprintf("compel.%spooled_prompt_embeds", side.name), cond, true)
	}
}

// CheckCompelAnimeLong checks "compel_anime_long": CompelForSDXL with a
// 2-chunk positive prompt with up- and down-weighted fragments (masked
// re-encodings) and a 1-chunk negative padded to 154 tokens.
func CheckCompelAnimeLong(t testing.TB, enc1, enc2 prompt.Encoder) {
	t.Helper()
	t1, t2 := SmallTokenizers(t)
	f := golden.Open(t, "small/e2e_compel_anime_long.safetensors")
	s, err := prompt.NewCompelForSDXL(t1, enc1, t2, enc2)
	if err != nil {
		t.Fatal(err)
	}
	pos, neg, err := s.Encode(
		"(Anime Portrait)1.2 of a young woman, pretty+ stunning+ blue eyes, soft face, long pink hair, bow hairclip, pink school uniform, high quality, hq, 4k, 8k, award-winning, happy white cat in her arms, dawn+, close-up+, (cherry blossoms)---, (wearing golden blossom earrings)+, (bokeh effect)-, cute, lake with (white cranes)++ in the background, butterflies--, reflections--",
		"Bad quality, artifacts, low quality, lowres, deformed+, malformed+, extra hands, extra limbs, bad eyes, ugly, lowres, washed out, poor quality")
	if err != nil {
		t.Fatal(err)
	}
	check(t, f, "compel.prompt_embeds", pos, false)
	check(t, f, "compel.pooled_prompt_embeds", pos, true)
	check(t, f, "compel.negative_prompt_embeds", neg, false)
	check(t, f, "compel.negative_pooled_prompt_embeds", neg, true)
}
