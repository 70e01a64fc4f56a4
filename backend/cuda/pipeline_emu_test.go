package cuda

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/tensor"
)

// End-to-end runs of the golden pipelines through the backend on the
// kernel emulator: the requests of sdxl's TestTinyPipelines and
// TestSmallPipelines, checked against the same diffusers goldens. Every op
// the models issue goes through the real kernels, the cuBLAS argument
// mapping, the pool and the frees, with mixed dtypes (an F16 UNet and text
// encoders beside the F32 VAE) and the attention paths the sizes select.
//
// F32 storage must match the goldens as tightly as the CPU backend does
// (1e-4 relative on the tiny models, 1e-3 on the small ones). F16 runs
// (weights and UNet activations in half precision, Pipeline.Precision F16)
// round every activation, so they are held to pipeF16Tol; they start from
// the goldens' float32 initial noise, and only scenarios that draw no other
// noise run in F16 (a half-precision pipeline draws its noise in float16,
// which are different numbers).
//
// By default (not -short) a few runs cover every model, both dtypes and
// both attention implementations the sizes reach; SDXL_CUDA_EMU_LONG=1 runs
// every tiny and small scenario in both dtypes (minutes), as TestPipelines
// does on a GPU.

const pipeF16Tol = 2e-2

// emuLong reports whether the long emulator runs were asked for.
func emuLong() bool { return os.Getenv("SDXL_CUDA_EMU_LONG") == "1" }

// tinyCase is one pipeline of tiny/goldens (the file pipe_<name>).
type tinyCase struct {
	name    string
	refiner bool // img2img on the refiner alone
	img2img bool
	noise   bool // the request draws noise beyond the given initial latents
}

var tinyCases = []tinyCase{
	{name: "txt2img"},
	{name: "txt2img_rescale_nonsquare"},
	{name: "img2img", img2img: true, noise: true},
	{name: "img2img_refiner", img2img: true, refiner: true, noise: true},
	{name: "ensemble"},
}

// smallF16 lists the small scenarios that draw no noise after the initial
// latents (deterministic schedulers, no img2img), so they can run in F16
// from the golden's float32 initial noise.
var smallF16 = map[string]bool{"astro_euler": true, "astro_dpmpp_karras_wide": true, "lion_heun_tall": true,
	"ensemble_lion": true, "compel_lion_weighted": true, "compel_anime_long": true}

func TestEmulatedPipelines(t *testing.T) {
	if testing.Short() {
		t.Skip("short: the emulated pipelines take tens of seconds")
	}
	long := emuLong()
	if !long {
		t.Log("SDXL_CUDA_EMU_LONG=1 runs every tiny and small scenario (minutes)")
	}
	testPipelines(t, func(t *testing.T, o Options) *Backend { return newEmuBackend(t, o) }, long)
}

// TestPipelines (GPU) runs every tiny and small scenario on the device.
func TestPipelines(t *testing.T) { testPipelines(t, gpuOpener, true) }

// pipelineRun is one scenario in one storage dtype with one attention
// implementation.
type pipelineRun struct {
	tiny       string // a tinyCases name, or
	small      string // a small scenario name
	dt         tensor.DType
	attention  string
	defaultRun bool // part of the short emulated selection
}

func (r pipelineRun) backendKey() string { return fmt.Sprint(r.dt, "/", r.attention) }

// pipelineRuns lists the scenarios. The default emulated selection is the
// small base end to end (both text encoders, auto attention: the generic
// kernel) in both dtypes, and the tiny refiner's img2img (VAE encode,
// aesthetic conditioning) with GEMM attention.
func pipelineRuns() []pipelineRun {
	var runs []pipelineRun
	for _, c := range tinyCases {
		runs = append(runs, pipelineRun{tiny: c.name, dt: tensor.F32, attention: attnGEMM, defaultRun: c.name == "img2img_refiner"})
		runs = append(runs, pipelineRun{tiny: c.name, dt: tensor.F32, attention: "auto"})
		if !c.noise {
			runs = append(runs, pipelineRun{tiny: c.name, dt: tensor.F16, attention: attnGEMM})
			runs = append(runs, pipelineRun{tiny: c.name, dt: tensor.F16, attention: "auto"})
		}
	}
	for _, name := range []string{"astro_euler", "astro_dpmpp_karras_wide", "lion_euler_a", "lion_heun_tall",
		"ensemble_lion", "refine_astro", "compel_lion_weighted", "compel_anime_long"} {
		runs = append(runs, pipelineRun{small: name, dt: tensor.F32, attention: "auto", defaultRun: name == "astro_euler"})
		if smallF16[name] {
			runs = append(runs, pipelineRun{small: name, dt: tensor.F16, attention: "auto", defaultRun: name == "astro_euler"})
		}
	}
	return runs
}

// testPipelines runs the scenarios (all, or the default selection) on
// backends from open, one per dtype and attention implementation, shared by
// the scenarios with the models they load.
func testPipelines(t *testing.T, open newBackendFunc, all bool) {
	var runs []pipelineRun
	for _, r := range pipelineRuns() {
		if all || r.defaultRun {
			runs = append(runs, r)
		}
	}
	models := map[string]*pipeModels{}
	for _, r := range runs {
		if models[r.backendKey()] == nil {
			models[r.backendKey()] = &pipeModels{b: open(t, Options{Attention: r.attention}), dt: r.dt}
		}
	}
	for _, r := range runs {
		name := r.tiny
		if name == "" {
			name = "small_" + r.small
		}
		t.Run(fmt.Sprintf("%s/%v/%s", name, r.dt, r.attention), func(t *testing.T) {
			m := models[r.backendKey()]
			if r.tiny != "" {
				runTiny(t, m, r.tiny)
			} else {
				runSmall(t, m, r.small)
			}
		})
	}
}

// pipeModels are the models loaded on one backend, by path.
type pipeModels struct {
	b      *Backend
	dt     tensor.DType
	loaded map[string]*sdxl.Model
}

func (m *pipeModels) model(t *testing.T, rel string) *sdxl.Model {
	t.Helper()
	if mm, ok := m.loaded[rel]; ok {
		return mm
	}
	path := golden.Path(t, rel)
	mm, err := sdxl.LoadModel(m.b, path, sdxl.LoadOptions{DType: m.dt})
	if err != nil {
		t.Fatal(err)
	}
	if m.loaded == nil {
		m.loaded = map[string]*sdxl.Model{}
	}
	m.loaded[rel] = mm
	return mm
}

// generate runs one request and checks the backend afterwards: no recorded
// failure, and every tensor of the run freed (device memory in use back to
// what the loaded weights hold, without help from the garbage collector).
func (m *pipeModels) generate(t *testing.T, p *sdxl.Pipeline, req sdxl.Request) *sdxl.Result {
	t.Helper()
	b := m.b
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	before := b.MemStats().InUse
	p.Backend, p.Precision = b, sdxl.PrecisionOf(m.dt)
	start := time.Now()
	res, err := p.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(); err != nil {
		t.Fatalf("backend failure: %v", err)
	}
	ms := b.MemStats()
	t.Logf("%v on %s; peak %.1f MiB reserved", time.Since(start).Round(time.Millisecond), b.Info().Name, float64(ms.PeakReserved)/(1<<20))
	if ms.InUse != before {
		t.Errorf("device memory in use went from %d to %d bytes over the run: tensors left to the garbage collector", before, ms.InUse)
	}
	return res
}

// tol is the relative-error bound of a run in dtype dt given F32's bound.
func tol(dt tensor.DType, f32 float64) float64 {
	if dt == tensor.F32 {
		return f32
	}
	return pipeF16Tol
}

// goldenEmbeds reads precomputed prompt embeddings of a tiny golden.
func goldenEmbeds(f *golden.File, prefix string, withNeg bool) *sdxl.PromptEmbeds {
	pe, shape := f.Get(prefix + "in.prompt_embeds")
	pooled, _ := f.Get(prefix + "in.pooled_prompt_embeds")
	g := &sdxl.PromptEmbeds{Prompt: pe, Pooled: pooled, Tokens: shape[1], Dim: shape[2]}
	if withNeg {
		g.Negative, _ = f.Get(prefix + "in.negative_prompt_embeds")
		g.NegativePooled, _ = f.Get(prefix + "in.negative_pooled_prompt_embeds")
	}
	return g
}

// nhwc01 converts decoded NCHW images in [-1, 1] to NHWC in [0, 1] (the
// goldens' image_np).
func nhwc01(img []float32, shape [4]int) []float32 {
	c, h, w := shape[1], shape[2], shape[3]
	out := make([]float32, len(img))
	for n := range shape[0] {
		for k := range c {
			for y := range h {
				for x := range w {
					v := img[((n*c+k)*h+y)*w+x]/2 + 0.5
					out[((n*h+y)*w+x)*c+k] = min(max(v, 0), 1)
				}
			}
		}
	}
	return out
}

// checkTiny compares the last steps' latents, the final latents and the
// decoded image of a tiny golden (prefix selects the base or refiner part).
func checkTiny(t *testing.T, f *golden.File, prefix string, res *sdxl.Result, tol float64) {
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
		golden.Check(t, fmt.Sprintf("%ssteps.latents[%d]", prefix, i), got[i], steps[i*per:(i+1)*per], tol)
	}
	want, _ := f.Get(prefix + "out.latents")
	golden.Check(t, prefix+"out.latents", res.Latents, want, tol)
	img, _ := f.Get(prefix + "out.image_np") // NHWC in [0, 1]
	golden.Check(t, prefix+"out.image_np", nhwc01(res.Images, res.ImageShape), img, tol)
}

// runTiny runs a pipeline of tiny/goldens exactly as sdxl's
// TestTinyPipelines does (precomputed embeddings and initial latents).
func runTiny(t *testing.T, m *pipeModels, name string) {
	tl := tol(m.dt, 1e-4)
	f := golden.Open(t, "tiny/goldens/pipe_"+name+".safetensors")
	base := func() *sdxl.Model { return m.model(t, "tiny/models/sdxl-tiny-base") }
	refiner := func() *sdxl.Model { return m.model(t, "tiny/models/sdxl-tiny-refiner") }
	switch name {
	case "txt2img":
		lat, _ := f.Get("in.latents")
		res := m.generate(t, &sdxl.Pipeline{Base: base()}, sdxl.Request{Width: 64, Height: 64, Steps: 4, Guidance: 5,
			Seed: 302, InitNoise: lat, Embeds: goldenEmbeds(f, "", true), KeepStepLatents: true})
		checkTiny(t, f, "", res, tl)
	case "txt2img_rescale_nonsquare":
		lat, _ := f.Get("in.latents")
		res := m.generate(t, &sdxl.Pipeline{Base: base()}, sdxl.Request{Width: 80, Height: 48, Steps: 4, Guidance: 5,
			GuidanceRescale: 0.7, CropsTopLeft: [2]int{4, 8}, NegativeOriginalSize: &[2]int{32, 32},
			NegativeTargetSize: &[2]int{48, 80}, Seed: 312, InitNoise: lat, Embeds: goldenEmbeds(f, "", true),
			KeepStepLatents: true})
		checkTiny(t, f, "", res, tl)
	case "img2img", "img2img_refiner":
		img, shape := f.Get("in.image")
		for i := range img {
			img[i] = 2*img[i] - 1
		}
		p := &sdxl.Pipeline{}
		seed := uint64(321)
		if name == "img2img" {
			p.Base = base()
		} else {
			p.Refiner, seed = refiner(), 331
		}
		res := m.generate(t, p, sdxl.Request{Steps: 4, Guidance: 5, Strength: 0.5, Seed: seed,
			Image: img, ImageShape: shape, Embeds: goldenEmbeds(f, "", true), KeepStepLatents: true})
		checkTiny(t, f, "", res, tl)
	case "ensemble":
		lat, _ := f.Get("base.in.latents")
		res := m.generate(t, &sdxl.Pipeline{Base: base(), Refiner: refiner()}, sdxl.Request{Width: 64, Height: 64,
			Steps: 8, Guidance: 5, HighNoiseFrac: 0.8, Seed: 342, InitNoise: lat,
			Embeds: goldenEmbeds(f, "base.", false), RefinerEmbeds: goldenEmbeds(f, "refiner.", true),
			KeepStepLatents: true})
		want, _ := f.Get("base.out.latents")
		golden.Check(t, "base.out.latents", res.BaseLatents, want, tl)
		bsteps, _ := f.Get("base.steps.latents")
		if len(res.StepLatents) != 8 {
			t.Fatalf("%d steps, want 6 + 2", len(res.StepLatents))
		}
		per := len(bsteps) / 6
		for i := range 6 {
			golden.Check(t, fmt.Sprintf("base.steps.latents[%d]", i), res.StepLatents[i], bsteps[i*per:(i+1)*per], tl)
		}
		checkTiny(t, f, "refiner.", res, tl)
	default:
		t.Fatalf("unknown tiny pipeline %q", name)
	}
}

// runSmall runs a scenario of small/index.json from its prompt, as sdxl's
// TestSmallPipelines does, and checks every step's latents, the final
// latents and the 8-bit image.
func runSmall(t *testing.T, m *pipeModels, name string) {
	sc, ok := golden.SmallScenarios(t)[name]
	if !ok {
		t.Fatalf("scenario %s missing from small/index.json", name)
	}
	f := golden.Open(t, "small/e2e_"+name+".safetensors")
	req := sdxl.Request{Prompt: sc.Prompt, Width: sc.Width, Height: sc.Height, Steps: sc.Steps,
		Guidance: sc.Guidance, Scheduler: sc.Scheduler, Seed: sc.Seed, KeepStepLatents: true}
	if sc.Negative != "" { // the goldens' script passed "" as None
		neg := sc.Negative
		req.NegativePrompt = &neg
	}
	if sc.Compel {
		req.Weighting = sdxl.WeightingCompel
	}
	if sc.DenoiseFrac != 0 {
		req.HighNoiseFrac = sc.DenoiseFrac
	}
	if m.dt != tensor.F32 {
		// The golden's float32 draw: a half-precision pipeline would draw
		// other numbers.
		req.InitNoise, _ = f.Get("init_noise")
	}
	p := &sdxl.Pipeline{}
	switch sc.Kind {
	case "txt2img":
		p.Base = m.model(t, "small/models/sdxl-small-base")
	case "ensemble":
		p.Base = m.model(t, "small/models/sdxl-small-base")
		p.Refiner = m.model(t, "small/models/sdxl-small-refiner")
	case "img2img_refiner":
		p.Refiner = m.model(t, "small/models/sdxl-small-refiner")
		req.Strength = sc.Strength
		src, shape := f.Get("source_image") // NHWC in [0, 1]
		h, w := shape[1], shape[2]
		img := make([]float32, 3*h*w)
		for y := range h {
			for x := range w {
				for c := range 3 {
					img[(c*h+y)*w+x] = 2*src[(y*w+x)*3+c] - 1
				}
			}
		}
		req.Image, req.ImageShape = img, []int{1, 3, h, w}
	default:
		t.Fatalf("unknown kind %q", sc.Kind)
	}
	res := m.generate(t, p, req)
	tl := tol(m.dt, 1e-3)
	steps, sshape := f.Get("step_latents")
	per := len(steps) / sshape[0]
	if len(res.StepLatents) != sshape[0] {
		t.Fatalf("%d steps, golden has %d", len(res.StepLatents), sshape[0])
	}
	for i, got := range res.StepLatents {
		golden.Check(t, fmt.Sprintf("step_latents[%d]", i), got, steps[i*per:(i+1)*per], tl)
	}
	want, _ := f.Get("final_latents")
	golden.Check(t, "final_latents", res.Latents, want, tl)
	if f.Has("base_latents") {
		bl, _ := f.Get("base_latents")
		golden.Check(t, "base_latents", res.BaseLatents, bl, tl)
	}
	imgs, err := imageio.FromNCHW(res.Images, res.ImageShape[:])
	if err != nil {
		t.Fatal(err)
	}
	u8, _ := f.Get("image_uint8")
	maxd := golden.MaxLevelDiff(imgs[0], u8)
	limit := 2.0 // the CPU backend's bound
	if m.dt != tensor.F32 {
		limit = 8
	}
	if maxd > limit {
		t.Errorf("image differs from image_uint8 by up to %v levels (limit %v)", maxd, limit)
	}
	t.Logf("image max abs diff %v levels", maxd)
}
