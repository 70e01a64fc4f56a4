package sdxl

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sched"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/tensor"
)

var inpaintModel struct {
	once sync.Once
	m    *Model
	err  error
}

// modelFor loads the scenario's model: the small base (4-channel UNet) or
// the small 9-channel inpainting model.
func modelFor(t *testing.T, b tensor.Backend, sc golden.InpaintScenario) *Model {
	t.Helper()
	if sc.Model == "base4" {
		m, _ := loadSmall(t, b, false)
		return m
	}
	p := golden.Path(t, golden.InpaintModels[sc.Model])
	inpaintModel.once.Do(func() { inpaintModel.m, inpaintModel.err = LoadModel(b, p, LoadOptions{}) })
	if inpaintModel.err != nil {
		t.Fatal(inpaintModel.err)
	}
	return inpaintModel.m
}

// inpaintRequest builds the request of a scenario from its PNGs, given as
// pictures (the engine processes them as diffusers' pipeline processes PIL
// inputs).
func inpaintRequest(t *testing.T, sc golden.InpaintScenario) Request {
	t.Helper()
	img, err := imageio.Load(golden.Path(t, "inpaint/"+sc.ImagePNG))
	if err != nil {
		t.Fatal(err)
	}
	mask, err := imageio.Load(golden.Path(t, "inpaint/"+sc.MaskPNG))
	if err != nil {
		t.Fatal(err)
	}
	neg := sc.Negative
	return Request{
		Prompt: sc.Prompt, NegativePrompt: &neg, Steps: sc.Steps, Guidance: sc.Guidance,
		Scheduler: sc.Scheduler, Seed: sc.Seed, Strength: sc.Strength, Width: sc.Width, Height: sc.Height,
		InitImage: img, MaskImage: mask, KeepStepLatents: true,
	}
}

// valueGen records the values of every draw.
type valueGen struct {
	g     sched.Generator
	draws [][]float32
}

func (r *valueGen) Randn(n int) []float32 {
	v := r.g.Randn(n)
	r.draws = append(r.draws, v)
	return v
}

func (r *valueGen) RandnHalf(n int) []float32 {
	v := r.g.RandnHalf(n)
	r.draws = append(r.draws, v)
	return v
}

// TestInpaintGoldens runs the four inpainting scenarios (4- and 9-channel
// UNets, rectangle and soft masks, strength 1 and 0.75) through
// Pipeline.Generate and checks every draw, the steps' latents, the final
// latents and the image against diffusers.
func TestInpaintGoldens(t *testing.T) {
	b := cpu.New()
	for name, sc := range golden.InpaintScenarios(t) {
		t.Run(name, func(t *testing.T) {
			p := &Pipeline{Backend: b, Base: modelFor(t, b, sc)}
			rec := &valueGen{}
			p.newGen = func(kind string, seed uint64) sched.Generator {
				rec.g = newGenerator(kind, seed)
				return rec
			}
			res, err := p.Generate(context.Background(), inpaintRequest(t, sc))
			if err != nil {
				t.Fatal(err)
			}
			f := golden.Open(t, "inpaint/"+sc.File)
			draws, ds := f.Get("rand_draws")
			if len(rec.draws) != ds[0] {
				t.Fatalf("%d draws, diffusers made %d", len(rec.draws), ds[0])
			}
			per := len(draws) / ds[0]
			for i, d := range rec.draws {
				golden.Check(t, "draw", d, draws[i*per:(i+1)*per], 0)
			}
			steps, ss := f.Get("step_latents")
			if len(res.StepLatents) != ss[0] {
				t.Fatalf("%d steps, diffusers ran %d", len(res.StepLatents), ss[0])
			}
			stepT, _ := f.Get("step_t")
			per = len(steps) / ss[0]
			for i, got := range res.StepLatents {
				if res.Timesteps[i] != float64(stepT[i]) {
					t.Errorf("step %d at t=%v, diffusers at %v", i, res.Timesteps[i], stepT[i])
				}
				if e := golden.RelErr(got, steps[i*per:(i+1)*per]); e > 1e-5 {
					t.Errorf("step %d latents: relative error %.3g", i, e)
				}
			}
			want, _ := f.Get("final_latents")
			golden.Check(t, "final_latents", res.Latents, want, 1e-5)
			checkImageU8(t, f, res, 1)
		})
	}
}

// checkImageU8 compares the decoded image with the golden's image_uint8.
func checkImageU8(t *testing.T, f *golden.File, res *Result, limit float64) {
	t.Helper()
	imgs, err := imageio.FromNCHW(res.Images, res.ImageShape[:])
	if err != nil {
		t.Fatal(err)
	}
	u8, _ := f.Get("image_uint8")
	h, w := res.ImageShape[2], res.ImageShape[3]
	maxd := 0.0
	for y := range h {
		for x := range w {
			c := imgs[0].NRGBAAt(x, y)
			for k, v := range []uint8{c.R, c.G, c.B} {
				maxd = math.Max(maxd, math.Abs(float64(v)-float64(u8[(y*w+x)*3+k])))
			}
		}
	}
	if maxd > limit {
		t.Errorf("image differs from image_uint8 by up to %v levels (limit %v)", maxd, limit)
	}
	t.Logf("image max abs diff %v levels", maxd)
}

// TestInpaintPreparation checks the inputs prepareInpaint builds against
// the recorded tensors: the processed and latent masks, the (masked-)image
// latents, the initial noise and latents.
func TestInpaintPreparation(t *testing.T) {
	b := cpu.New()
	for name, sc := range golden.InpaintScenarios(t) {
		t.Run(name, func(t *testing.T) {
			p := &Pipeline{Backend: b, Base: modelFor(t, b, sc)}
			pl, err := p.plan(inpaintRequest(t, sc))
			if err != nil {
				t.Fatal(err)
			}
			st := pl.stages[0]
			gen := newGenerator("cpu", sc.Seed)
			latents, _, err := p.prepareInpaint(context.Background(), &pl.req, st, gen, gen.Randn)
			if err != nil {
				t.Fatal(err)
			}
			f := golden.Open(t, "inpaint/"+sc.File)
			check := func(name string, got []float32, tol float64) {
				want, _ := f.Get(name)
				golden.Check(t, name, got, want, tol)
			}
			in := st.inp
			check("image_preprocessed", st.image, 0)
			check("mask_processed", in.pixels.Pix, 0)
			check("mask_latent", in.mask, 0)
			check("init_noise", in.noise, 0)
			check("initial_latents", latents, 1e-5)
			if in.nine {
				check("masked_image_latents", in.maskedLatents, 1e-5)
			} else {
				check("image_latents", in.imageLatents, 1e-5)
			}
			// At strength 1 only the 4-channel pipeline encodes the image.
			if sc.Strength == 1 && f.Has("image_latents") == in.nine {
				t.Errorf("image_latents recorded: %v, computed: %v", f.Has("image_latents"), !in.nine)
			}
		})
	}
}

// TestInpaintDefaults: with a mask and no strength the pipeline uses
// diffusers' 0.9999: the image is encoded (one more draw than at strength
// 1 for the 9-channel model) and int(7 * 0.9999) = 6 of 7 steps run.
func TestInpaintDefaults(t *testing.T) {
	b := cpu.New()
	sc := golden.InpaintScenarios(t)["inp9_rect_euler"]
	p := &Pipeline{Backend: b, Base: modelFor(t, b, sc)}
	rec := recording(p)
	req := inpaintRequest(t, sc)
	req.Strength, req.Steps, req.KeepStepLatents = 0, 7, false
	req.OutputLatents = true
	res := generate(t, p, req)
	if len(res.Timesteps) != 6 || len(rec.draws) != 3 {
		t.Errorf("%d steps and %d draws (%v), want 6 and 3", len(res.Timesteps), len(rec.draws), rec.draws)
	}
}

// TestInpaintChecks: every mistake is a FieldError naming the field before
// any work; what the run does differently is a warning.
func TestInpaintChecks(t *testing.T) {
	b := cpu.New()
	scs := golden.InpaintScenarios(t)
	base := modelFor(t, b, scs["inp_base_rect_euler"])
	nine := modelFor(t, b, scs["inp9_rect_euler"])
	_, refiner := loadSmall(t, b, true)
	req := inpaintRequest(t, scs["inp_base_rect_euler"])
	black := &imageio.RGB{W: 64, H: 64, Pix: make([]uint8, 3*64*64)}
	for _, c := range []struct {
		name  string
		p     *Pipeline
		edit  func(*Request)
		field string
		want  string
	}{
		{"no image", &Pipeline{Base: base}, func(r *Request) { r.InitImage, r.Strength = nil, 0 }, "MaskImage", "give the image"},
		{"two masks", &Pipeline{Base: base}, func(r *Request) { r.Mask = make([]float32, 64*64) }, "MaskImage", "give the mask once"},
		{"mask size", &Pipeline{Base: base}, func(r *Request) { r.MaskImage, r.Mask = nil, make([]float32, 100) }, "Mask", "has 100 values"},
		{"black mask", &Pipeline{Base: base}, func(r *Request) { r.MaskImage = black }, "MaskImage", "nothing to repaint"},
		{"zero mask", &Pipeline{Base: base}, func(r *Request) { r.MaskImage, r.Mask = nil, make([]float32, 64*64) }, "Mask", "nothing to repaint"},
		{"nan mask", &Pipeline{Base: base}, func(r *Request) {
			r.MaskImage, r.Mask = nil, make([]float32, 64*64)
			r.Mask[5] = float32(math.NaN())
		}, "Mask", "finite"},
		{"9ch without mask", &Pipeline{Base: nine}, func(r *Request) { *r = Request{Prompt: "x", Steps: 2} }, "MaskImage", "inpainting UNet"},
		{"latents", &Pipeline{Base: base}, func(r *Request) {
			r.InitImage, r.Image, r.ImageShape, r.ImageIsLatents = nil, make([]float32, 4*8*8), []int{1, 4, 8, 8}, true
			r.Width, r.Height = 0, 0
		}, "Image", "pixels, not latents"},
		{"refiner split", &Pipeline{Base: base, Refiner: refiner}, func(r *Request) { r.HighNoiseFrac = 0.8 }, "HighNoiseFrac", "one model"},
		{"tile size alone", &Pipeline{Base: base}, func(r *Request) { r.VAETileSize = 32 }, "VAETileSize", "turn VAETiling on"},
		{"tile size", &Pipeline{Base: base}, func(r *Request) { r.VAETiling, r.VAETileSize = true, 12 }, "VAETileSize", "multiple of 8"},
	} {
		r := req
		c.edit(&r)
		c.p.Backend = b
		_, err := c.p.Check(r)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want a %s error saying %q", c.name, err, c.field, c.want)
		}
	}

	// Warnings: the refiner left out; a mask of another size resized.
	r := req
	big := &imageio.RGB{W: 128, H: 128, Pix: make([]uint8, 3*128*128)}
	for i := range big.Pix {
		big.Pix[i] = 255
	}
	r.MaskImage = big
	ws, err := (&Pipeline{Backend: b, Base: base, Refiner: refiner}).Check(r)
	if err != nil {
		t.Fatal(err)
	}
	var text []string
	for _, w := range ws {
		text = append(text, w.Message)
	}
	if all := strings.Join(text, "\n"); !strings.Contains(all, "refiner is not used") || !strings.Contains(all, "mask is 128x128; resized") {
		t.Errorf("warnings: %v", text)
	}
}

// TestInpaintSizes: without a size the image is resized to the model's
// default (diffusers' inpainting pipeline does not keep the image's size),
// with a warning; an Image tensor keeps its size.
func TestInpaintSizes(t *testing.T) {
	b := cpu.New()
	sc := golden.InpaintScenarios(t)["inp_base_rect_euler"]
	p := &Pipeline{Backend: b, Base: modelFor(t, b, sc)}
	req := inpaintRequest(t, sc)
	req.Width, req.Height = 0, 0
	img := req.InitImage
	req.InitImage = &imageio.RGB{W: 96, H: 80, Pix: make([]uint8, 3*96*80)}
	pl, err := p.plan(req)
	if err != nil {
		t.Fatal(err)
	}
	if r := pl.req; r.Width != 64 || r.Height != 64 || len(r.Mask) != 64*64 || len(pl.warnings) != 1 || !strings.Contains(pl.warnings[0].Message, "96x80; resized to 64x64") {
		t.Errorf("%dx%d, %d mask values, warnings %v", r.Width, r.Height, len(r.Mask), pl.warnings)
	}
	req.InitImage = nil
	req.Image, req.ImageShape = make([]float32, 3*80*96), []int{1, 3, 80, 96}
	req.MaskImage = img // 64x64: resized to the tensor's 96x80
	if pl, err = p.plan(req); err != nil {
		t.Fatal(err)
	}
	if r := pl.req; r.Width != 96 || r.Height != 80 || len(r.Mask) != 96*80 {
		t.Errorf("tensor: %dx%d, %d mask values", r.Width, r.Height, len(r.Mask))
	}
}
