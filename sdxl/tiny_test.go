package sdxl

import (
	"context"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
)

func givenEmbeds(f *golden.File, prefix string, withNeg bool) *PromptEmbeds {
	pe, shape := f.Get(prefix + "in.prompt_embeds")
	pooled, _ := f.Get(prefix + "in.pooled_prompt_embeds")
	g := &PromptEmbeds{Prompt: pe, Pooled: pooled, Tokens: shape[1], Dim: shape[2]}
	if withNeg {
		g.Negative, _ = f.Get(prefix + "in.negative_prompt_embeds")
		g.NegativePooled, _ = f.Get(prefix + "in.negative_pooled_prompt_embeds")
	}
	return g
}

func checkTinyOutputs(t *testing.T, f *golden.File, prefix string, res *Result, images bool) {
	t.Helper()
	steps, sshape := f.Get(prefix + "steps.latents")
	per := len(steps) / sshape[0]
	var got [][]float32
	for _, s := range res.StepLatents {
		if len(s) == per {
			got = append(got, s)
		}
	}
	if len(got) < sshape[0] {
		t.Fatalf("%d steps, golden has %d", len(got), sshape[0])
	}
	got = got[len(got)-sshape[0]:]
	for i := range got {
		golden.Check(t, prefix+"steps.latents["+string(rune('0'+i))+"]", got[i], steps[i*per:(i+1)*per], 1e-4)
	}
	want, _ := f.Get(prefix + "out.latents")
	golden.Check(t, prefix+"out.latents", res.Latents, want, 1e-4)
	if !images {
		return
	}
	img, _ := f.Get(prefix + "out.image_np") // NHWC [0,1]
	h, w := res.ImageShape[2], res.ImageShape[3]
	nhwc := make([]float32, len(res.Images))
	for c := 0; c < 3; c++ {
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				v := res.Images[(c*h+y)*w+x]/2 + 0.5
				nhwc[(y*w+x)*3+c] = min(max(v, 0), 1)
			}
		}
	}
	golden.Check(t, prefix+"out.image_np", nhwc, img, 1e-4)
}

func TestTinyPipelines(t *testing.T) {
	b := cpu.New()
	base, err := LoadModel(b, golden.Path(t, "tiny/models/sdxl-tiny-base"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	refiner, err := LoadModel(b, golden.Path(t, "tiny/models/sdxl-tiny-refiner"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	t.Run("txt2img", func(t *testing.T) {
		f := golden.Open(t, "tiny/goldens/pipe_txt2img.safetensors")
		lat, _ := f.Get("in.latents")
		p := &Pipeline{Backend: b, Base: base}
		res, err := p.Generate(ctx, Request{Width: 64, Height: 64, Steps: 4, Guidance: 5, Seed: 302,
			InitNoise: lat, Embeds: givenEmbeds(f, "", true), KeepStepLatents: true})
		if err != nil {
			t.Fatal(err)
		}
		checkTinyOutputs(t, f, "", res, true)
	})
	t.Run("txt2img_rescale_nonsquare", func(t *testing.T) {
		f := golden.Open(t, "tiny/goldens/pipe_txt2img_rescale_nonsquare.safetensors")
		lat, _ := f.Get("in.latents")
		p := &Pipeline{Backend: b, Base: base}
		res, err := p.Generate(ctx, Request{Width: 80, Height: 48, Steps: 4, Guidance: 5, GuidanceRescale: 0.7,
			CropsTopLeft: [2]int{4, 8}, NegativeOriginalSize: &[2]int{32, 32}, NegativeTargetSize: &[2]int{48, 80},
			Seed: 312, InitNoise: lat, Embeds: givenEmbeds(f, "", true), KeepStepLatents: true})
		if err != nil {
			t.Fatal(err)
		}
		checkTinyOutputs(t, f, "", res, true)
	})
	for _, c := range []struct {
		name  string
		model *Model
		seed  uint64
	}{{"img2img", base, 321}, {"img2img_refiner", refiner, 331}} {
		t.Run(c.name, func(t *testing.T) {
			f := golden.Open(t, "tiny/goldens/pipe_"+c.name+".safetensors")
			img, shape := f.Get("in.image")
			for i := range img {
				img[i] = 2*img[i] - 1
			}
			p := &Pipeline{Backend: b}
			if c.model == base {
				p.Base = base
			} else {
				p.Refiner = refiner
			}
			res, err := p.Generate(ctx, Request{Steps: 4, Guidance: 5, Strength: 0.5, Seed: c.seed,
				Image: img, ImageShape: shape, Embeds: givenEmbeds(f, "", true), KeepStepLatents: true})
			if err != nil {
				t.Fatal(err)
			}
			checkTinyOutputs(t, f, "", res, true)
		})
	}
	t.Run("ensemble", func(t *testing.T) {
		f := golden.Open(t, "tiny/goldens/pipe_ensemble.safetensors")
		lat, _ := f.Get("base.in.latents")
		p := &Pipeline{Backend: b, Base: base, Refiner: refiner}
		res, err := p.Generate(ctx, Request{Width: 64, Height: 64, Steps: 8, Guidance: 5, HighNoiseFrac: 0.8, Seed: 342,
			InitNoise: lat, Embeds: givenEmbeds(f, "base.", false), RefinerEmbeds: givenEmbeds(f, "refiner.", true),
			KeepStepLatents: true})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := f.Get("base.out.latents")
		golden.Check(t, "base.out.latents", res.BaseLatents, want, 1e-4)
		bsteps, _ := f.Get("base.steps.latents")
		if len(res.StepLatents) != 8 {
			t.Fatalf("%d steps, want 6 + 2", len(res.StepLatents))
		}
		per := len(bsteps) / 6
		for i := 0; i < 6; i++ {
			golden.Check(t, "base.steps.latents", res.StepLatents[i], bsteps[i*per:(i+1)*per], 1e-4)
		}
		checkTinyOutputs(t, f, "refiner.", res, true)
	})
}
