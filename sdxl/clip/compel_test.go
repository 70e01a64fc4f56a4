package clip_test

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sdxl/clip"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/sdxl/prompt"
	"github.com/sdxl-go/sdxl/sdxl/tokenizer"
)

// HostEncoder is what sdxl/prompt weights against.
var _ prompt.Encoder = (*clip.HostEncoder)(nil)

// tolCompel is the acceptance tolerance for the Compel conditionings.
const tolCompel = 1e-4

// TestCompelGoldens runs sdxl/prompt's Compel math on the real small
// encoders (through clip.HostEncoder) and compares with the conditionings
// Compel 2.4 produced: compel_lion_weighted (Compel over both tokenizers
// and encoders, 77 tokens) and compel_anime_long (CompelForSDXL with long
// prompts, 154 tokens, down-weighted fragments masked out).
func TestCompelGoldens(t *testing.T) {
	data, err := os.ReadFile(golden.Path(t, "small/index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Scenarios map[string]struct {
			Prompt, Negative string
			Long             bool
		}
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatal(err)
	}
	b := cpu.New()
	d, err := config.OpenModelDir(golden.Path(t, "small/models/sdxl-small-base"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := clip.LoadTextEncoders(b, d, clip.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tok1, tok2 := s.Tokenizer.(*tokenizer.Tokenizer), s.Tokenizer2.(*tokenizer.Tokenizer)
	enc1 := &clip.HostEncoder{Backend: b, Model: s.TextEncoder}
	enc2 := &clip.HostEncoder{Backend: b, Model: s.TextEncoder2}

	for _, name := range []string{"compel_lion_weighted", "compel_anime_long"} {
		t.Run(name, func(t *testing.T) {
			sc := idx.Scenarios[name]
			f := golden.Open(t, "small/e2e_"+name+".safetensors")
			var pos, neg *prompt.Conditioning
			if sc.Long {
				c, err := prompt.NewCompelForSDXL(tok1, enc1, tok2, enc2)
				if err != nil {
					t.Fatal(err)
				}
				if pos, neg, err = c.Encode(sc.Prompt, sc.Negative); err != nil {
					t.Fatal(err)
				}
			} else {
				c, err := prompt.NewCompel(true, prompt.Pair{Tokenizer: tok1, Encoder: enc1}, prompt.Pair{Tokenizer: tok2, Encoder: enc2, Pooled: true})
				if err != nil {
					t.Fatal(err)
				}
				if pos, err = c.Build(sc.Prompt); err != nil {
					t.Fatal(err)
				}
				if neg, err = c.Build(sc.Negative); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range []struct {
				name string
				got  []float32
				rows int
			}{
				{"compel.prompt_embeds", pos.Embeds, pos.Tokens},
				{"compel.negative_prompt_embeds", neg.Embeds, neg.Tokens},
				{"compel.pooled_prompt_embeds", pos.Pooled, 1},
				{"compel.negative_pooled_prompt_embeds", neg.Pooled, 1},
			} {
				want, shape := f.Get(c.name)
				if shape[0] != 1 || (len(shape) == 3 && shape[1] != c.rows) {
					t.Errorf("%s: golden shape %v, got %d token rows", c.name, shape, c.rows)
				}
				golden.Check(t, c.name, c.got, want, tolCompel)
			}
		})
	}
}
