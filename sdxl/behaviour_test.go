package sdxl

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sched"
	"github.com/sdxl-go/sdxl/sched/torchrand"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/tensor"
)

// Behaviour the goldens do not cover, checked against what diffusers'
// StableDiffusionXLPipeline / StableDiffusionXLImg2ImgPipeline do, with the
// small models (64x64 by default: latents [n, 4, 8, 8]) and a few steps.

const smallPer = 4 * 8 * 8 // one image's latents at the small model's default size

func strp(s string) *string { return &s }

// recGen records every draw a pipeline makes from its generator.
type recGen struct {
	g     sched.Generator
	draws []string
}

func (r *recGen) Randn(n int) []float32 {
	r.draws = append(r.draws, fmt.Sprintf("f32:%d", n))
	return r.g.Randn(n)
}

func (r *recGen) RandnHalf(n int) []float32 {
	r.draws = append(r.draws, fmt.Sprintf("f16:%d", n))
	return r.g.RandnHalf(n)
}

// recording makes p record its draws into the returned recorder.
func recording(p *Pipeline) *recGen {
	r := &recGen{}
	p.newGen = func(kind string, seed uint64) sched.Generator {
		r.g = newGenerator(kind, seed)
		return r
	}
	return r
}

func generate(t *testing.T, p *Pipeline, req Request) *Result {
	t.Helper()
	res, err := p.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// sameFloats fails unless got and want are equal to within tol relative
// error (0: bit-identical), logging the measured error.
func sameFloats(t *testing.T, name string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	e := golden.RelErr(got, want)
	if tol == 0 && !slices.Equal(got, want) || e > tol {
		t.Errorf("%s: relative error %.3g (limit %.3g)", name, e, tol)
		return
	}
	t.Logf("%s: relative error %.3g", name, e)
}

// differ fails when a and b are closer than min relative error (the test
// would not notice the behaviour it checks).
func differ(t *testing.T, name string, a, b []float32, min float64) {
	t.Helper()
	if e := golden.RelErr(a, b); !(e > min) {
		t.Errorf("%s: relative difference %.3g, expected > %.3g", name, e, min)
	}
}

// testImage is a deterministic 64x64 picture in [-1, 1].
func testImage() ([]float32, []int) {
	const h, w = 64, 64
	img := make([]float32, 3*h*w)
	for c := 0; c < 3; c++ {
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				img[(c*h+y)*w+x] = float32(math.Sin(float64(x*(c+1))/9+float64(y)/13)) * 0.8
			}
		}
	}
	return img, []int{1, 3, h, w}
}

// TestNoiseDraws checks the order and size of every draw from the
// generator: one [n, 4, h, w] tensor for the batch's initial noise; for
// img2img one posterior sample of the single input image ([1, 4, h, w],
// before the batch repetition) and then one [n, 4, h, w] noise tensor; the
// ensemble's refiner draws nothing to start (denoising_start: no
// add_noise); stochastic schedulers keep drawing [n, 4, h, w] per step
// from the same generator; a float16 pipeline draws latent-space noise in
// float16 (diffusers' dtype=prompt_embeds.dtype) but the posterior in
// float32 (the VAE runs upcast).
func TestNoiseDraws(t *testing.T) {
	b := cpu.New()
	base, refiner := loadSmall(t, b, true)
	img, ishape := testImage()
	lat := make([]float32, smallPer)
	for i := range lat {
		lat[i] = float32(math.Cos(float64(i) / 7))
	}
	n2 := fmt.Sprintf("f32:%d", 2*smallPer)
	h2 := fmt.Sprintf("f16:%d", 2*smallPer)
	one := fmt.Sprintf("f32:%d", smallPer)
	for _, c := range []struct {
		name          string
		base, refiner *Model
		dt            tensor.DType
		req           Request
		want          []string
	}{
		{"txt2img euler", base, nil, tensor.F32, Request{Steps: 2}, []string{n2}},
		{"txt2img euler_a", base, nil, tensor.F32, Request{Steps: 2, Scheduler: "euler_a"}, []string{n2, n2, n2}},
		{"txt2img f16", base, nil, tensor.F16, Request{Steps: 1}, []string{h2}},
		{"refiner img2img", nil, refiner, tensor.F32, Request{Steps: 4, Strength: 0.5, Image: img, ImageShape: ishape}, []string{one, n2}},
		{"refiner img2img euler_a", nil, refiner, tensor.F32, Request{Steps: 4, Strength: 0.5, Scheduler: "euler_a", Image: img, ImageShape: ishape}, []string{one, n2, n2, n2}},
		{"refiner img2img f16", nil, refiner, tensor.F16, Request{Steps: 2, Strength: 0.5, Image: img, ImageShape: ishape}, []string{one, h2}},
		{"base img2img from latents", base, nil, tensor.F32, Request{Steps: 4, Strength: 0.5, Image: lat, ImageShape: []int{1, 4, 8, 8}, ImageIsLatents: true}, []string{n2}},
		{"ensemble euler", base, refiner, tensor.F32, Request{Steps: 5, HighNoiseFrac: 0.6}, []string{n2}},
		{"ensemble euler_a", base, refiner, tensor.F32, Request{Steps: 5, HighNoiseFrac: 0.6, Scheduler: "euler_a"}, []string{n2, n2, n2, n2, n2, n2}},
		{"ensemble with image", base, refiner, tensor.F32, Request{Steps: 5, Strength: 0.8, HighNoiseFrac: 0.6, Image: img, ImageShape: ishape}, []string{one, n2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &Pipeline{Backend: b, Base: c.base, Refiner: c.refiner, Precision: PrecisionOf(c.dt)}
			rec := recording(p)
			req := c.req
			req.Prompt, req.Guidance, req.Seed, req.NumImages, req.OutputLatents = "a lion", 5, 7, 2, true
			res := generate(t, p, req)
			if !slices.Equal(rec.draws, c.want) {
				t.Errorf("draws %v, want %v (timesteps %v)", rec.draws, c.want, res.Timesteps)
			}
			if res.LatentShape != [4]int{2, 4, 8, 8} {
				t.Errorf("latent shape %v", res.LatentShape)
			}
		})
	}
}

// TestHalfNoiseIsTheDraw: a float16 run's first draw is RandnHalf: the same
// run with InitNoise set to that draw is identical.
func TestHalfNoiseIsTheDraw(t *testing.T) {
	b := cpu.New()
	base, _ := loadSmall(t, b, false)
	p := &Pipeline{Backend: b, Base: base, Precision: PrecisionF16}
	req := Request{Prompt: "a lion", Steps: 2, Guidance: 5, Seed: 11, OutputLatents: true}
	got := generate(t, p, req)
	req.InitNoise = torchrand.NewCPU(11).RandnHalf(smallPer)
	want := generate(t, p, req)
	sameFloats(t, "f16 seed run vs RandnHalf init noise", got.Latents, want.Latents, 0)
	req.InitNoise = torchrand.NewCPU(11).Randn(smallPer)
	f32 := generate(t, p, req)
	differ(t, "f16 run vs float32 draw", got.Latents, f32.Latents, 1e-6)
}

// TestBatchIsOneDraw: image k of a batch of n is the one-image run whose
// initial noise is the k-th slice of the batch's single draw (not the run
// with the same seed), with the guidance split per image.
func TestBatchIsOneDraw(t *testing.T) {
	b := cpu.New()
	base, _ := loadSmall(t, b, false)
	p := &Pipeline{Backend: b, Base: base}
	req := Request{Prompt: "a photo of a lion", NegativePrompt: strp("blurry"), Steps: 3, Guidance: 6,
		GuidanceRescale: 0.5, Seed: 21, NumImages: 2, OutputLatents: true}
	batch := generate(t, p, req)
	noise := torchrand.NewCPU(21).Randn(2 * smallPer)
	single := req
	single.NumImages = 1
	for k := 0; k < 2; k++ {
		single.InitNoise = noise[k*smallPer : (k+1)*smallPer]
		one := generate(t, p, single)
		sameFloats(t, fmt.Sprintf("batch image %d vs its noise slice alone", k), batch.Latents[k*smallPer:(k+1)*smallPer], one.Latents, 1e-6)
	}
	single.InitNoise = nil
	single.Seed = 22
	other := generate(t, p, single)
	differ(t, "image 1 vs a one-image run with another seed", batch.Latents[smallPer:], other.Latents, 1e-3)
}

// TestBatchTimeIDRows reproduces how the txt2img pipeline stacks
// add_time_ids with guidance and n > 1: torch.cat([neg, pos]).repeat(n, 1)
// gives rows neg, pos, neg, pos, so with negative micro-conditioning the
// first image is conditioned on the negative ids in both halves and the
// second on the positive ids in both.
func TestBatchTimeIDRows(t *testing.T) {
	b := cpu.New()
	base, _ := loadSmall(t, b, false)
	p := &Pipeline{Backend: b, Base: base}
	negOrig, negTarget := [2]int{32, 48}, [2]int{40, 24}
	req := Request{Prompt: "a lion", Steps: 2, Guidance: 5, Seed: 5, NumImages: 2, OutputLatents: true,
		NegativeOriginalSize: &negOrig, NegativeTargetSize: &negTarget, NegativeCropsTopLeft: [2]int{8, 16}}
	batch := generate(t, p, req)
	noise := torchrand.NewCPU(5).Randn(2 * smallPer)

	onlyPos := Request{Prompt: "a lion", Steps: 2, Guidance: 5, OutputLatents: true, InitNoise: noise[smallPer:]}
	sameFloats(t, "image 1 = positive ids in both halves", batch.Latents[smallPer:], generate(t, p, onlyPos).Latents, 1e-6)

	onlyNeg := Request{Prompt: "a lion", Steps: 2, Guidance: 5, OutputLatents: true, InitNoise: noise[:smallPer],
		OriginalSize: &negOrig, TargetSize: &negTarget, CropsTopLeft: [2]int{8, 16}}
	sameFloats(t, "image 0 = negative ids in both halves", batch.Latents[:smallPer], generate(t, p, onlyNeg).Latents, 1e-6)

	naive := req
	naive.NumImages, naive.InitNoise = 1, noise[:smallPer]
	differ(t, "image 0 vs a one-image run with the same negative ids", batch.Latents[:smallPer], generate(t, p, naive).Latents, 1e-4)
}

func TestTimeIDRows(t *testing.T) {
	b := cpu.New()
	base, refiner := loadSmall(t, b, true)
	p := &Pipeline{Backend: b}
	negOrig, negTarget := [2]int{32, 48}, [2]int{40, 24}
	req := &Request{OriginalSize: &[2]int{128, 96}, CropsTopLeft: [2]int{1, 2}, NegativeOriginalSize: &negOrig,
		NegativeTargetSize: &negTarget, NegativeCropsTopLeft: [2]int{3, 4}, AestheticScore: new(float64), NegativeAestheticScore: nil}
	*req.AestheticScore = 7
	f := func(v ...float32) []float32 { return v }
	cat := func(xs ...[]float32) []float32 { return slices.Concat(xs...) }
	bpos, bneg := f(128, 96, 1, 2, 64, 80), f(32, 48, 3, 4, 40, 24)
	// img2img without aesthetics: negative ids keep the POSITIVE crops.
	ipos, ineg := f(128, 96, 1, 2, 64, 80), f(32, 48, 1, 2, 40, 24)
	// refiner: original + crops + aesthetic score (2.5 by default).
	rpos, rneg := f(128, 96, 1, 2, 7), f(32, 48, 3, 4, 2.5)
	for _, c := range []struct {
		name string
		m    *Model
		st   stage
		cfg  bool
		want []float32
	}{
		{"txt2img cfg", base, stage{}, true, cat(bneg, bpos, bneg, bpos)},
		{"txt2img no cfg", base, stage{}, false, cat(bpos, bpos)},
		{"img2img cfg", base, stage{img2img: true}, true, cat(ineg, ineg, ipos, ipos)},
		{"refiner cfg", refiner, stage{img2img: true}, true, cat(rneg, rneg, rpos, rpos)},
		{"refiner no cfg", refiner, stage{img2img: true}, false, cat(rpos, rpos)},
	} {
		got := p.timeIDs(c.m, req, &c.st, 64, 80, 2, c.cfg)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: time ids %v, want %v", c.name, got, c.want)
		}
	}
}

// TestGuidanceOneSkipsNegative: with guidance <= 1 diffusers neither
// encodes nor uses the negative prompt, so a run with one equals a run
// without, for every weighting (a long Compel/A1111 negative must not pad
// the positive conditioning either).
func TestGuidanceOneSkipsNegative(t *testing.T) {
	b := cpu.New()
	base, _ := loadSmall(t, b, false)
	p := &Pipeline{Backend: b, Base: base}
	long := strings.Repeat("blurry, ugly, low quality, ", 12) // > 77 tokens
	for _, w := range []Weighting{WeightingNone, WeightingCompel, WeightingA1111} {
		for _, g := range []float64{0, 1} {
			req := Request{Prompt: "a lion on a rock", Steps: 2, Guidance: g, Seed: 3, Weighting: w, OutputLatents: true}
			without := generate(t, p, req)
			req.NegativePrompt = strp(long)
			with := generate(t, p, req)
			sameFloats(t, fmt.Sprintf("%s guidance %g: long negative vs none", w, g), with.Latents, without.Latents, 0)
		}
	}
	req := Request{Prompt: "a lion on a rock", Steps: 2, Guidance: 1.5, Seed: 3, OutputLatents: true, NegativePrompt: strp(long)}
	without := req
	without.NegativePrompt = nil
	differ(t, "guidance 1.5 uses the negative", generate(t, p, req).Latents, generate(t, p, without).Latents, 1e-4)
}

func hostEmbeds(t *testing.T, p *Pipeline, m *Model, req Request, cfg bool) *Conditioning {
	t.Helper()
	req.defaults()
	c, err := req.Weighting.Conditioner()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(m, req.prompts(cfg)); err != nil {
		t.Fatal(err)
	}
	e, err := c.Encode(context.Background(), p.Backend, m, req.prompts(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func allZero(x []float32) bool {
	for _, v := range x {
		if v != 0 {
			return false
		}
	}
	return len(x) > 0
}

// TestNegativePromptSemantics: diffusers' negative_prompt None vs "" and
// the prompt_2 / negative_prompt_2 fallbacks, base and refiner.
func TestNegativePromptSemantics(t *testing.T) {
	b := cpu.New()
	base, refiner := loadSmall(t, b, true)
	p := &Pipeline{Backend: b}

	// Base (force_zeros_for_empty_prompt): None is zeros, "" is encoded.
	none := hostEmbeds(t, p, base, Request{Prompt: "a lion"}, true)
	if !allZero(none.Negative) || !allZero(none.NegativePooled) {
		t.Error("base, negative None: want zeros")
	}
	empty := hostEmbeds(t, p, base, Request{Prompt: "a lion", NegativePrompt: strp("")}, true)
	if allZero(empty.Negative) || allZero(empty.NegativePooled) {
		t.Error(`base, negative "": want the encoding of "", got zeros`)
	}
	// zero_out_negative_prompt looks at negative_prompt only: a
	// negative_prompt_2 alone is ignored.
	only2 := hostEmbeds(t, p, base, Request{Prompt: "a lion", NegativePrompt2: strp("blurry")}, true)
	if !allZero(only2.Negative) || !allZero(only2.NegativePooled) {
		t.Error("base, only negative_prompt_2: want zeros (diffusers ignores it)")
	}
	// prompt_2 "" falls back to prompt ("" is falsy).
	p2 := hostEmbeds(t, p, base, Request{Prompt: "a lion", Prompt2: "a lion"}, true)
	sameFloats(t, `prompt_2 "" vs prompt_2 = prompt`, none.Prompt, p2.Prompt, 0)
	other := hostEmbeds(t, p, base, Request{Prompt: "a lion", Prompt2: "a cat"}, true)
	differ(t, "prompt_2 changes the conditioning", none.Prompt, other.Prompt, 1e-4)
	// Without guidance there is no negative conditioning at all.
	if e := hostEmbeds(t, p, base, Request{Prompt: "a lion", NegativePrompt: strp("x")}, false); e.Negative != nil || e.NegativePooled != nil {
		t.Error("no guidance: negative embeds computed")
	}

	// Refiner (no force_zeros): None encodes "", and negative_prompt_2
	// alone is used for its (only) encoder.
	rnone := hostEmbeds(t, p, refiner, Request{Prompt: "a lion"}, true)
	rempty := hostEmbeds(t, p, refiner, Request{Prompt: "a lion", NegativePrompt: strp("")}, true)
	if allZero(rnone.Negative) {
		t.Error("refiner, negative None: want the encoding of \"\"")
	}
	sameFloats(t, `refiner negative None vs ""`, rnone.Negative, rempty.Negative, 0)
	sameFloats(t, `refiner pooled negative None vs ""`, rnone.NegativePooled, rempty.NegativePooled, 0)
	r2 := hostEmbeds(t, p, refiner, Request{Prompt: "a lion", NegativePrompt2: strp("blurry")}, true)
	r2b := hostEmbeds(t, p, refiner, Request{Prompt: "a lion", NegativePrompt: strp("blurry")}, true)
	sameFloats(t, "refiner negative_prompt_2 alone vs negative_prompt (encoder 2 only)", r2.Negative, r2b.Negative, 0)
	differ(t, "refiner negative_prompt_2 is used", r2.Negative, rnone.Negative, 1e-4)
}

// TestClipSkip: clip_skip picks hidden_states[-(clip_skip+2)] for the
// prompt only; diffusers keeps hidden_states[-2] for the negative prompt.
func TestClipSkip(t *testing.T) {
	b := cpu.New()
	base, _ := loadSmall(t, b, false)
	p := &Pipeline{Backend: b}
	req := Request{Prompt: "a lion", NegativePrompt: strp("blurry")}
	e0 := hostEmbeds(t, p, base, req, true)
	req.ClipSkip = 1
	e1 := hostEmbeds(t, p, base, req, true)
	differ(t, "clip skip 1 changes the prompt embeds", e0.Prompt, e1.Prompt, 1e-3)
	sameFloats(t, "clip skip leaves the negative embeds", e1.Negative, e0.Negative, 0)
	sameFloats(t, "clip skip leaves the pooled embeds", e1.Pooled, e0.Pooled, 0)
}

// TestWeightingWithoutSyntax: a short prompt without weights gives the
// same conditioning with Compel as with diffusers' encode_prompt (Compel
// bypasses the weighting when every weight is 1, pads with each
// tokenizer's pad id and its attention mask is all ones), and so does
// AUTOMATIC1111 without emphasis (multipliers 1 leave the mean unchanged;
// encoder 2's ids after EOS are 0 as SDXL's tokenizer_2 pads), as long as
// the prompt has no "!" (which tokenizer_2 maps to its pad id).
func TestWeightingWithoutSyntax(t *testing.T) {
	b := cpu.New()
	base, refiner := loadSmall(t, b, true)
	p := &Pipeline{Backend: b}
	req := Request{Prompt: "a photo of an astronaut riding a horse on mars", NegativePrompt: strp("blurry, low quality")}
	cases := []struct {
		m *Model
		w Weighting
	}{{base, WeightingCompel}, {base, WeightingA1111}, {refiner, WeightingCompel}}
	for _, c := range cases {
		r := req
		none := hostEmbeds(t, p, c.m, r, true)
		r.Weighting = c.w
		got := hostEmbeds(t, p, c.m, r, true)
		name := fmt.Sprintf("%s (refiner %v)", c.w, c.m.IsRefiner())
		if got.Tokens != none.Tokens || got.Dim != none.Dim {
			t.Fatalf("%s: %dx%d conditioning, none gives %dx%d", name, got.Tokens, got.Dim, none.Tokens, none.Dim)
		}
		sameFloats(t, name+" prompt embeds", got.Prompt, none.Prompt, 1e-6)
		sameFloats(t, name+" negative embeds", got.Negative, none.Negative, 1e-6)
		sameFloats(t, name+" pooled", got.Pooled, none.Pooled, 1e-6)
		sameFloats(t, name+" negative pooled", got.NegativePooled, none.NegativePooled, 1e-6)
	}
}

// TestDefaultSize: a missing width or height defaults on its own to the
// UNet's sample_size times the VAE scale factor (height from sample_size's
// first entry); without sample_size a size must be given (no panic).
func TestDefaultSize(t *testing.T) {
	b := cpu.New()
	m, err := LoadModel(b, golden.Path(t, "small/models/sdxl-small-base"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := &Pipeline{Backend: b, Base: m}
	for _, c := range []struct{ w, h, ww, wh int }{{0, 0, 64, 64}, {96, 0, 96, 64}, {0, 32, 64, 32}, {40, 48, 40, 48}} {
		w, h, err := p.ImageSize(Request{Width: c.w, Height: c.h})
		if err != nil || w != c.ww || h != c.wh {
			t.Errorf("ImageSize(%dx%d) = %dx%d, %v; want %dx%d", c.w, c.h, w, h, err, c.ww, c.wh)
		}
	}
	res := generate(t, p, Request{Prompt: "x", Steps: 1, Width: 96, Guidance: 5})
	if res.ImageShape != [4]int{1, 3, 64, 96} || res.LatentShape != [4]int{1, 4, 8, 12} {
		t.Errorf("width 96 only: image %v latents %v, want height 64 from sample_size", res.ImageShape, res.LatentShape)
	}

	m.UNet.Config().SampleSize = &config.Size2{H: 4, W: 6} // non-square [h, w]
	if w, h, _ := p.ImageSize(Request{}); w != 48 || h != 32 {
		t.Errorf("sample_size [4, 6]: default %dx%d, want 48x32", w, h)
	}
	m.UNet.Config().SampleSize = nil
	if _, err := p.Generate(context.Background(), Request{Prompt: "x", Steps: 1}); err == nil || !strings.Contains(err.Error(), "sample_size") {
		t.Errorf("no sample_size: %v", err)
	}
	if res := generate(t, p, Request{Prompt: "x", Steps: 1, Width: 32, Height: 32, OutputLatents: true}); res.LatentShape != [4]int{1, 4, 4, 4} {
		t.Errorf("no sample_size with a size: latents %v", res.LatentShape)
	}
	img, ishape := testImage()
	if w, h, err := p.ImageSize(Request{Image: img, ImageShape: ishape}); err != nil || w != 64 || h != 64 {
		t.Errorf("img2img size %dx%d, %v", w, h, err)
	}
}

// TestDenoisingEnd: denoising_end alone stops early at exactly the step a
// full run passes through, and the partly denoised latents are decoded
// unless latents are asked for (diffusers' output_type); it also applies to
// a one-model img2img run, and is refused with both models.
func TestDenoisingEnd(t *testing.T) {
	b := cpu.New()
	base, refiner := loadSmall(t, b, true)
	p := &Pipeline{Backend: b, Base: base}
	req := Request{Prompt: "a lion", Steps: 6, Guidance: 5, Seed: 9, KeepStepLatents: true}
	full := generate(t, p, req)
	req.DenoisingEnd = 0.5
	part := generate(t, p, req)
	k := len(part.Timesteps)
	if k == 0 || k >= 6 || !slices.Equal(part.Timesteps, full.Timesteps[:k]) {
		t.Fatalf("timesteps %v, full run %v", part.Timesteps, full.Timesteps)
	}
	for _, ts := range part.Timesteps {
		if ts < 500 {
			t.Errorf("timestep %v below the 0.5 cutoff (500)", ts)
		}
	}
	sameFloats(t, "denoising_end latents vs the full run's step", part.Latents, full.StepLatents[k-1], 0)
	if part.Images == nil || part.ImageShape != [4]int{1, 3, 64, 64} {
		t.Errorf("denoising_end without OutputLatents: no decoded image (%v)", part.ImageShape)
	}
	req.OutputLatents = true
	if r := generate(t, p, req); r.Images != nil {
		t.Error("OutputLatents: images decoded")
	}

	img, ishape := testImage()
	i2i := Request{Prompt: "a lion", Steps: 10, Strength: 0.9, Guidance: 5, Seed: 9, Image: img, ImageShape: ishape, OutputLatents: true}
	all := generate(t, p, i2i)
	i2i.DenoisingEnd = 0.5
	cut := generate(t, p, i2i)
	if len(cut.Timesteps) == 0 || len(cut.Timesteps) >= len(all.Timesteps) || !slices.Equal(cut.Timesteps, all.Timesteps[:len(cut.Timesteps)]) {
		t.Errorf("img2img denoising_end: timesteps %v of %v", cut.Timesteps, all.Timesteps)
	}

	both := &Pipeline{Backend: b, Base: base, Refiner: refiner}
	if _, err := both.Generate(context.Background(), Request{Prompt: "x", Steps: 2, DenoisingEnd: 0.5}); err == nil || !strings.Contains(err.Error(), "high-noise") {
		t.Errorf("denoising end with base and refiner: %v", err)
	}
}

// TestSecondOrderSplits: the timesteps of Heun and KDPM2 (order 2) in an
// ensemble and in img2img, derived here from diffusers' rules on the full
// schedule: the base keeps t >= cutoff; the refiner takes the t < cutoff,
// plus one more when that count is even; img2img with strength starts at
// (steps - int(steps*strength)) * order.
func TestSecondOrderSplits(t *testing.T) {
	b := cpu.New()
	base, refiner := loadSmall(t, b, true)
	for _, name := range []string{"heun", "kdpm2"} {
		t.Run(name, func(t *testing.T) {
			s, err := sched.New(name, base.Scheduler)
			if err != nil {
				t.Fatal(err)
			}
			const steps = 7
			if err := s.SetTimesteps(steps); err != nil {
				t.Fatal(err)
			}
			all := s.Timesteps()
			cutoff := math.Round(1000 - 0.7*1000)
			var wantBase []float64
			for _, ts := range all {
				if ts >= cutoff {
					wantBase = append(wantBase, ts)
				}
			}
			wantBase = all[:len(wantBase)]
			nRef := 0
			for _, ts := range all {
				if ts < cutoff {
					nRef++
				}
			}
			if nRef%2 == 0 {
				nRef++
			}
			want := slices.Concat(wantBase, all[len(all)-nRef:])
			p := &Pipeline{Backend: b, Base: base, Refiner: refiner}
			res := generate(t, p, Request{Prompt: "a lion", Steps: steps, Guidance: 5, Seed: 1, Scheduler: name, HighNoiseFrac: 0.7, OutputLatents: true})
			if !slices.Equal(res.Timesteps, want) {
				t.Errorf("ensemble timesteps %v, want %v", res.Timesteps, want)
			}
			img, ishape := testImage()
			pr := &Pipeline{Backend: b, Refiner: refiner}
			res = generate(t, pr, Request{Prompt: "a lion", Steps: steps, Guidance: 5, Seed: 1, Scheduler: name, Strength: 0.6, Image: img, ImageShape: ishape, OutputLatents: true})
			strength := 0.6
			start := (steps - int(float64(steps)*strength)) * 2
			if !slices.Equal(res.Timesteps, all[start:]) {
				t.Errorf("img2img timesteps %v, want %v", res.Timesteps, all[start:])
			}
		})
	}
}

// TestImageIsLatents: latents as the img2img input are used as they are
// (no VAE encode), the output size follows them.
func TestImageIsLatents(t *testing.T) {
	b := cpu.New()
	_, refiner := loadSmall(t, b, true)
	p := &Pipeline{Backend: b, Refiner: refiner}
	lat := make([]float32, 4*6*10)
	for i := range lat {
		lat[i] = float32(math.Sin(float64(i)))
	}
	req := Request{Prompt: "a lion", Steps: 4, Strength: 0.5, Guidance: 5, Image: lat, ImageShape: []int{1, 4, 6, 10}, ImageIsLatents: true}
	if w, h, _ := p.ImageSize(req); w != 80 || h != 48 {
		t.Errorf("latents 6x10: size %dx%d, want 80x48", w, h)
	}
	res := generate(t, p, req)
	if res.ImageShape != [4]int{1, 3, 48, 80} {
		t.Errorf("image shape %v", res.ImageShape)
	}
}

// TestBadRequests: user input errors come back as errors naming the value
// (no panic), before any step runs.
func TestBadRequests(t *testing.T) {
	b := cpu.New()
	base, refiner := loadSmall(t, b, true)
	img, ishape := testImage()
	steps := 0
	progress := func(Event) error { steps++; return nil }
	for _, c := range []struct {
		name    string
		base    *Model
		refiner *Model
		req     Request
		want    string
	}{
		{"init noise with image", base, nil, Request{Image: img, ImageShape: ishape, InitNoise: make([]float32, smallPer)}, "text-to-image only"},
		{"image values", base, nil, Request{Image: img[:100], ImageShape: ishape}, "100 values"},
		{"image channels", base, nil, Request{Image: img[:2*64*64], ImageShape: []int{1, 2, 64, 64}}, "3-channel"},
		{"latent channels", base, nil, Request{Image: img[:3*8*8], ImageShape: []int{1, 3, 8, 8}, ImageIsLatents: true}, "4 latent channels"},
		{"image batch", base, nil, Request{Image: img, ImageShape: []int{3, 1, 64, 64}}, "want [1, C, H, W]"},
		{"init noise size", base, nil, Request{InitNoise: make([]float32, 10)}, "init noise: has 10 values"},
		{"guidance NaN", base, nil, Request{Guidance: math.NaN()}, "guidance NaN"},
		{"guidance Inf", base, nil, Request{Guidance: math.Inf(1)}, "guidance +Inf"},
		{"rescale NaN", base, nil, Request{Guidance: 5, GuidanceRescale: math.NaN()}, "guidance rescale NaN"},
		{"clip skip negative", base, nil, Request{ClipSkip: -1}, "clip skip -1"},
		{"clip skip with compel", base, nil, Request{ClipSkip: 1, Weighting: WeightingCompel}, "clip skip 1: works only"},
		{"prompt 2 with compel", base, nil, Request{Prompt2: "x", Weighting: WeightingCompel}, "prompt_2"},
		{"a1111 refiner in ensemble", base, refiner, Request{Weighting: WeightingA1111}, "weighting a1111: needs the base's two text encoders"},
		{"odd width", base, nil, Request{Width: 60}, "multiple of 8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			steps = 0
			p := &Pipeline{Backend: b, Base: c.base, Refiner: c.refiner}
			req := c.req
			req.Prompt, req.Steps, req.Progress = "x", 2, progress
			_, err := p.Generate(context.Background(), req)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
			if steps != 0 {
				t.Errorf("%d steps ran before the error", steps)
			}
		})
	}
}

// TestCFGBatch: guidance and its rescale are per image (torch.std over
// every dimension but the batch).
func TestCFGBatch(t *testing.T) {
	u := []float32{0.1, -0.4, 0.3, 0.9, 1.5, -2, 0.25, 0.5}
	c := []float32{0.3, 0.1, -0.2, 0.4, 1, -1, 0.75, 0.125}
	got := classifierFreeGuidance(u, c, 7.5, 0.7, 2)
	for k := 0; k < 2; k++ {
		one := classifierFreeGuidance(u[4*k:4*k+4], c[4*k:4*k+4], 7.5, 0.7, 1)
		if !slices.Equal(got[4*k:4*k+4], one) {
			t.Errorf("image %d: %v, alone %v", k, got[4*k:4*k+4], one)
		}
	}
	// Hand check of rescale 0.7 on image 0: torch computes in float32.
	cfg := make([]float32, 4)
	for i := range cfg {
		cfg[i] = u[i] + float32(7.5)*(c[i]-u[i])
	}
	ratio := float32(stddev(c[:4])) / float32(stddev(cfg))
	for i := range cfg {
		want := float32(0.7)*(cfg[i]*ratio) + float32(0.3)*cfg[i]
		if d := math.Abs(float64(got[i] - want)); d > 1e-6 {
			t.Errorf("rescaled[%d] = %v, want %v", i, got[i], want)
		}
	}
}
