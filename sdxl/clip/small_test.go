package clip

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/tensor"
)

type smallScenario struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Prompt   string `json:"prompt"`
	Negative string `json:"negative"`
	Compel   bool   `json:"compel"`
	Long     bool   `json:"long"`
}

func smallScenarios(t *testing.T) map[string]smallScenario {
	t.Helper()
	data, err := os.ReadFile(golden.Path(t, "small/index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Scenarios map[string]smallScenario `json:"scenarios"`
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatal(err)
	}
	return idx.Scenarios
}

// loadSmall loads a small model folder's text side the way a pipeline
// does (model_index.json decides the components and
// force_zeros_for_empty_prompt).
func loadSmall(t *testing.T, b tensor.Backend, model string, forceZeros bool) *TextEncoders {
	t.Helper()
	d, err := config.OpenModelDir(golden.Path(t, "small/models/"+model))
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadTextEncoders(b, d, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.ForceZerosForEmptyPrompt != forceZeros {
		t.Fatalf("%s: force_zeros_for_empty_prompt = %v, want %v", model, s.ForceZerosForEmptyPrompt, forceZeros)
	}
	if s.Tokenizer2 == nil || (s.TextEncoder != nil) != (s.Tokenizer != nil) {
		t.Fatalf("%s: tokenizers not loaded", model)
	}
	return s
}

// negatives maps a scenario's negative prompt to encode_prompt's argument
// the way the goldens' script called the pipeline: "" means None.
func negatives(neg string) []string {
	if neg == "" {
		return nil
	}
	return []string{neg}
}

// TestSmallPromptEmbeds reproduces the prompt embeddings of every plain
// (non-Compel) small scenario from its prompt strings with the real
// tokenizers.
func TestSmallPromptEmbeds(t *testing.T) {
	b := cpu.New()
	base := loadSmall(t, b, "sdxl-small-base", true)
	n := 0
	for name, sc := range smallScenarios(t) {
		if sc.Compel {
			continue
		}
		rel := "small/e2e_" + name + ".safetensors"
		if golden.Find(rel) == "" {
			continue
		}
		f := golden.Open(t, rel)
		if !f.Has("prompt_embeds") {
			continue // refiner-only scenarios store no embeddings
		}
		n++
		t.Run(name, func(t *testing.T) {
			p, err := base.EncodePrompt(context.Background(), b, PromptOptions{Prompt: []string{sc.Prompt}, NegativePrompt: negatives(sc.Negative), ClassifierFreeGuidance: true})
			if err != nil {
				t.Fatal(err)
			}
			check(t, b, f, "prompt_embeds", p.PromptEmbeds, tolText)
			check(t, b, f, "pooled_prompt_embeds", p.PooledPromptEmbeds, tolText)
			check(t, b, f, "negative_prompt_embeds", p.NegativePromptEmbeds, tolText)
			check(t, b, f, "negative_pooled_prompt_embeds", p.NegativePooledPromptEmbeds, tolText)
		})
	}
	if n < 5 {
		t.Errorf("checked %d scenarios with prompt embeddings, want at least 5", n)
	}
}

// TestSmallRefinerEmbeds encodes with the small refiner's text_encoder_2 and
// tokenizer_2 (tokenizer.json layout). Its weights are byte-identical to the
// base's text_encoder_2 (as in real SDXL), so the refiner's 1280-wide (here
// 32-wide) embeddings must equal the encoder-2 channels of the base goldens
// and its pooled embeddings the base's; with force_zeros_for_empty_prompt
// false, a None negative prompt is encoded as "".
func TestSmallRefinerEmbeds(t *testing.T) {
	b := cpu.New()
	ref := loadSmall(t, b, "sdxl-small-refiner", false)
	if ref.TextEncoder != nil {
		t.Fatal("the refiner has no text_encoder")
	}
	sc := smallScenarios(t)["lion_euler_a"]
	f := golden.Open(t, "small/e2e_lion_euler_a.safetensors")
	p, err := ref.EncodePrompt(context.Background(), b, PromptOptions{Prompt: []string{sc.Prompt}, NegativePrompt: []string{sc.Negative}, ClassifierFreeGuidance: true})
	if err != nil {
		t.Fatal(err)
	}
	te2Channels := func(name string) []float32 {
		d, s := f.Get(name)
		C, W := s[2], ref.TextEncoder2.Config.HiddenSize
		var out []float32
		for r := 0; r < s[0]*s[1]; r++ {
			out = append(out, d[r*C+C-W:(r+1)*C]...)
		}
		return out
	}
	if got := p.PromptEmbeds.Shape(); !got.Equal(tensor.Shape{1, 77, 32}) {
		t.Fatalf("refiner prompt_embeds shape %v", got)
	}
	golden.Check(t, "refiner prompt_embeds vs base encoder-2 channels", b.ToFloat32(p.PromptEmbeds), te2Channels("prompt_embeds"), tolText)
	golden.Check(t, "refiner negative_prompt_embeds vs base encoder-2 channels", b.ToFloat32(p.NegativePromptEmbeds), te2Channels("negative_prompt_embeds"), tolText)
	check(t, b, f, "pooled_prompt_embeds", p.PooledPromptEmbeds, tolText)
	check(t, b, f, "negative_pooled_prompt_embeds", p.NegativePooledPromptEmbeds, tolText)

	// None negative: encoded as "", not zeros.
	q, err := ref.EncodePrompt(context.Background(), b, PromptOptions{Prompt: []string{sc.Prompt}, ClassifierFreeGuidance: true})
	if err != nil {
		t.Fatal(err)
	}
	r, err := ref.EncodePrompt(context.Background(), b, PromptOptions{Prompt: []string{sc.Prompt}, NegativePrompt: []string{""}, ClassifierFreeGuidance: true})
	if err != nil {
		t.Fatal(err)
	}
	nz := b.ToFloat32(q.NegativePooledPromptEmbeds)
	golden.Check(t, "refiner None negative = \"\" negative", nz, b.ToFloat32(r.NegativePooledPromptEmbeds), 0)
	zero := true
	for _, v := range nz {
		zero = zero && v == 0
	}
	if zero {
		t.Errorf("refiner zeroed the None negative prompt")
	}
}
