package sdxl

import (
	"context"
	"sync"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/tensor"
)

// scenario is one entry of golden/small/index.json.

var smallModels struct {
	base, refiner struct {
		once sync.Once
		m    *Model
		err  error
	}
}

// loadSmall loads the small base (and, when refiner is set, the small
// refiner) once per test binary.
func loadSmall(t *testing.T, b tensor.Backend, refiner bool) (*Model, *Model) {
	t.Helper()
	load := func(rel string, slot *struct {
		once sync.Once
		m    *Model
		err  error
	}) *Model {
		p := golden.Path(t, rel)
		slot.once.Do(func() { slot.m, slot.err = LoadModel(b, p, LoadOptions{}) })
		if slot.err != nil {
			t.Fatal(slot.err)
		}
		return slot.m
	}
	base := load("small/models/sdxl-small-base", &smallModels.base)
	if !refiner {
		return base, nil
	}
	return base, load("small/models/sdxl-small-refiner", &smallModels.refiner)
}

// RequestFor builds the library request of a golden scenario.
func requestFor(t *testing.T, sc golden.Scenario) Request {
	req := Request{
		Prompt: sc.Prompt, Width: sc.Width, Height: sc.Height, Steps: sc.Steps,
		Guidance: sc.Guidance, Scheduler: sc.Scheduler, Seed: sc.Seed, KeepStepLatents: true,
	}
	if sc.Negative != "" { // the goldens' script passed "" as None
		neg := sc.Negative
		req.NegativePrompt = &neg
	}
	if sc.Compel {
		req.Weighting = WeightingCompel
	}
	if sc.DenoiseFrac != 0 {
		req.HighNoiseFrac = sc.DenoiseFrac
	}
	if sc.Kind == "img2img_refiner" {
		req.Strength = sc.Strength
		f := golden.Open(t, "small/e2e_"+sc.Name+".safetensors")
		src, shape := f.Get("source_image") // NHWC in [0,1]
		h, w := shape[1], shape[2]
		img := make([]float32, 3*h*w)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				for c := 0; c < 3; c++ {
					img[(c*h+y)*w+x] = 2*src[(y*w+x)*3+c] - 1
				}
			}
		}
		req.Image, req.ImageShape = img, []int{1, 3, h, w}
	}
	return req
}

func TestSmallPipelines(t *testing.T) {
	b := cpu.New()
	scs := golden.SmallScenarios(t)
	for _, name := range []string{"astro_euler", "astro_dpmpp_karras_wide", "lion_euler_a", "lion_heun_tall",
		"ensemble_lion", "refine_astro", "compel_lion_weighted", "compel_anime_long"} {
		sc, ok := scs[name]
		if !ok {
			t.Errorf("scenario %s missing from index.json", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			p := &Pipeline{Backend: b}
			switch sc.Kind {
			case "txt2img":
				p.Base, _ = loadSmall(t, b, false)
			case "ensemble":
				p.Base, p.Refiner = loadSmall(t, b, true)
			case "img2img_refiner":
				_, p.Refiner = loadSmall(t, b, true)
			default:
				t.Fatalf("unknown kind %q", sc.Kind)
			}
			res, err := p.Generate(context.Background(), requestFor(t, sc))
			if err != nil {
				t.Fatal(err)
			}
			f := golden.Open(t, "small/e2e_"+name+".safetensors")
			steps, sshape := f.Get("step_latents")
			per := len(steps) / sshape[0]
			if len(res.StepLatents) != sshape[0] {
				t.Fatalf("%d steps, golden has %d", len(res.StepLatents), sshape[0])
			}
			for i, got := range res.StepLatents {
				if e := golden.RelErr(got, steps[i*per:(i+1)*per]); e > 1e-3 {
					t.Errorf("step %d latents: relative error %.3g", i, e)
				}
			}
			want, _ := f.Get("final_latents")
			golden.Check(t, "final_latents", res.Latents, want, 1e-3)
			if f.Has("base_latents") {
				bl, _ := f.Get("base_latents")
				golden.Check(t, "base_latents", res.BaseLatents, bl, 1e-3)
			}
			imgs, err := imageio.FromNCHW(res.Images, res.ImageShape[:])
			if err != nil {
				t.Fatal(err)
			}
			u8, _ := f.Get("image_uint8")
			maxd := golden.MaxLevelDiff(imgs[0], u8)
			if maxd > 2 {
				t.Errorf("image differs from image_uint8 by up to %v levels (limit 2)", maxd)
			}
			t.Logf("image max abs diff %v levels", maxd)
		})
	}
}
