package lora_test

import (
	"context"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/sdxl/lora"
)

// scenario is one entry of golden/lora/index.json.
type scenario struct{ golden.LoRAScenario }

func scenarios(t *testing.T) map[string]scenario {
	out := map[string]scenario{}
	for k, v := range golden.LoRAScenarios(t) {
		out[k] = scenario{v}
	}
	return out
}

func (sc scenario) request() sdxl.Request {
	neg := sc.Negative
	return sdxl.Request{Prompt: sc.Prompt, NegativePrompt: &neg, Width: sc.Width, Height: sc.Height,
		Steps: sc.Steps, Guidance: sc.Guidance, Scheduler: sc.Scheduler, Seed: sc.Seed, KeepStepLatents: true}
}

// uses loads the scenario's LoRAs.
func (sc scenario) uses(t *testing.T) []lora.Use {
	var out []lora.Use
	for _, l := range sc.Loras {
		out = append(out, lora.Scaled(loadGolden(t, "lora/"+l.File), l.Scale))
	}
	return out
}

// checkScenario compares a run with its golden: every step's and the final
// latents within tol relative error, the 8-bit image within maxLevels.
func checkScenario(t *testing.T, sc scenario, res *sdxl.Result, tol, maxLevels float64) {
	t.Helper()
	f := golden.Open(t, "lora/"+sc.File)
	steps, sshape := f.Get("step_latents")
	per := len(steps) / sshape[0]
	if len(res.StepLatents) != sshape[0] {
		t.Fatalf("%d steps, golden has %d", len(res.StepLatents), sshape[0])
	}
	worst := 0.0
	for i, got := range res.StepLatents {
		worst = max(worst, golden.RelErr(got, steps[i*per:(i+1)*per]))
	}
	t.Logf("step latents: worst relative error %.3g", worst)
	want, _ := f.Get("final_latents")
	golden.Check(t, "final_latents", res.Latents, want, tol)
	imgs, err := imageio.FromNCHW(res.Images, res.ImageShape[:])
	if err != nil {
		t.Fatal(err)
	}
	u8, _ := f.Get("image_uint8")
	maxd := golden.MaxLevelDiff(imgs[0], u8)
	if maxd > maxLevels {
		t.Errorf("image differs from image_uint8 by up to %v levels (limit %v)", maxd, maxLevels)
	}
	t.Logf("image max abs diff %v levels", maxd)
}

// TestGoldenScenarios runs every scenario of golden/lora (the LoRA in each
// of its three spellings, the UNet and both text encoders changed) through
// sdxl.Pipeline and checks diffusers' results: final latents within 1e-5,
// the PNG within 1 level.
func TestGoldenScenarios(t *testing.T) {
	m := loadBase(t)
	ap, err := lora.NewApplier(targetOf(m))
	if err != nil {
		t.Fatal(err)
	}
	defer ap.Clear()
	p := &sdxl.Pipeline{Backend: cpu.New(), Base: m}
	for _, name := range []string{"lora_none", "lora_a_diffusers_s1p0", "lora_a_kohya_s0p6", "lora_a_kohya_sgm_s1p0"} {
		sc, ok := scenarios(t)[name]
		if !ok {
			t.Errorf("scenario %s missing from lora/index.json", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			if err := ap.Set(context.Background(), sc.uses(t)); err != nil {
				t.Fatal(err)
			}
			res, err := p.Generate(context.Background(), sc.request())
			if err != nil {
				t.Fatal(err)
			}
			checkScenario(t, sc, res, 1e-5, 1)
		})
	}
}
