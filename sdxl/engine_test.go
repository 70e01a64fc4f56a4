package sdxl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/tensor"
)

// smallEngine is an engine over the small golden models.
func smallEngine(t *testing.T, refiner bool) *Engine {
	t.Helper()
	b := cpu.New()
	base, ref := loadSmall(t, b, refiner)
	e, err := New(Options{Backend: b}, base, ref)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestEngineEvents: a run reports text, every step and the decode, in
// order, with counts that add up and latents on step events.
func TestEngineEvents(t *testing.T) {
	e := smallEngine(t, true)
	var got []string
	var last Event
	req := Request{Prompt: "a lion", Steps: 5, Guidance: 5, Seed: 1, Progress: func(ev Event) error {
		got = append(got, fmt.Sprintf("%s %d/%d", ev.Stage, ev.Step, ev.Steps))
		if ev.Done < last.Done || ev.Total != 8 || ev.Elapsed < last.Elapsed {
			t.Errorf("event %+v after %+v", ev, last)
		}
		if (ev.Latents != nil) != (ev.Step > 0 && (ev.Stage == StageBase || ev.Stage == StageRefiner)) {
			t.Errorf("%s %d: latents %v", ev.Stage, ev.Step, ev.Latents != nil)
		}
		last = ev
		return nil
	}}
	if _, err := e.Generate(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	// Ensemble, 5 steps at 0.8: the base runs 4, the refiner 1.
	want := []string{"text 0/2", "text 1/2", "base 0/4", "base 1/4", "base 2/4", "base 3/4", "base 4/4",
		"text 1/2", "text 2/2", "refiner 0/1", "refiner 1/1", "vae 0/1", "vae 1/1"}
	if !slices.Equal(got, want) {
		t.Errorf("events\n%v\nwant\n%v", got, want)
	}
	if last.Done != last.Total || last.Fraction() != 1 {
		t.Errorf("last event %d/%d", last.Done, last.Total)
	}
}

// TestEngineCancel: a cancel during step k stops the run before step k+1,
// during or after the decode it returns no images; every way wraps
// context.Canceled.
func TestEngineCancel(t *testing.T) {
	e := smallEngine(t, false)
	for _, c := range []struct {
		name   string
		at     func(Event) bool
		stages []string
	}{
		{"at step 2", func(ev Event) bool { return ev.Stage == StageBase && ev.Step == 2 }, []string{"base 2"}},
		{"before the decode", func(ev Event) bool { return ev.Stage == StageVAE && ev.Step == 0 }, []string{"vae 0"}},
		{"after the decode", func(ev Event) bool { return ev.Stage == StageVAE && ev.Step == 1 }, []string{"vae 1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var after []string
			stopped := false
			req := Request{Prompt: "a lion", Steps: 4, Guidance: 5, Progress: func(ev Event) error {
				if stopped {
					after = append(after, fmt.Sprintf("%s %d", ev.Stage, ev.Step))
				}
				if c.at(ev) {
					cancel()
					stopped = true
					after = append(after, fmt.Sprintf("%s %d", ev.Stage, ev.Step))
				}
				return nil
			}}
			res, err := e.Generate(ctx, req)
			if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrCanceled) || res != nil {
				t.Fatalf("result %v, error %v; want context.Canceled and no result", res != nil, err)
			}
			if !slices.Equal(after, c.stages) {
				t.Errorf("events from the cancel on: %v, want %v", after, c.stages)
			}
		})
	}
	// A progress error stops the run with that error.
	stop := errors.New("enough")
	_, err := e.Generate(context.Background(), Request{Prompt: "x", Steps: 3, Progress: func(ev Event) error {
		if ev.Step == 1 {
			return stop
		}
		return nil
	}})
	if !errors.Is(err, stop) {
		t.Errorf("error %v, want the progress callback's", err)
	}
}

// TestEnginePreview: step events carry latents whose preview has the
// latent size and real colours.
func TestEnginePreview(t *testing.T) {
	e := smallEngine(t, false)
	var n int
	req := Request{Prompt: "a lion", Width: 96, Height: 64, Steps: 2, NumImages: 2, OutputLatents: true, Progress: func(ev Event) error {
		if ev.Latents == nil {
			if ev.Preview(0) != nil {
				t.Error("preview without latents")
			}
			return nil
		}
		n++
		for i := 0; i < 2; i++ {
			p := ev.Preview(i)
			if p == nil || p.Bounds().Dx() != 12 || p.Bounds().Dy() != 8 {
				t.Fatalf("preview %d: %v", i, p)
			}
			if p.Pix[3] != 255 || slices.Max(p.Pix) == slices.Min(p.Pix) {
				t.Errorf("preview %d is blank", i)
			}
		}
		if ev.Preview(2) != nil {
			t.Error("preview of a third image of two")
		}
		return nil
	}}
	if _, err := e.Generate(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("%d step events, want 2", n)
	}
}

// TestLatentPreviewMap: the map is ComfyUI's SDXL latent_rgb_factors and
// bias, then [-1, 1] to [0, 255].
func TestLatentPreviewMap(t *testing.T) {
	// One pixel with latents (1, 0, 0, 0): rgb = row 0 + bias.
	img := LatentPreview([]float32{1, 0, 0, 0}, [4]int{1, 4, 1, 1}, 0)
	for j, want := range []float64{0.3651 + 0.1084, 0.4232 - 0.0175, 0.4341 - 0.0011} {
		if got := img.Pix[j]; got != toByte((want+1)/2) {
			t.Errorf("channel %d: %d, want %d", j, got, toByte((want+1)/2))
		}
	}
	if LatentPreview(make([]float32, 3), [4]int{1, 3, 1, 1}, 0) != nil {
		t.Error("a 3-channel latent has no SDXL preview")
	}
}

// TestEngineRoles: the engine settles which model is which, and refuses
// what cannot work, naming the model.
func TestEngineRoles(t *testing.T) {
	b := cpu.New()
	base, ref := loadSmall(t, b, true)
	e, err := New(Options{Backend: b}, ref, nil)
	if err != nil || e.Base() != nil || e.Refiner() != ref {
		t.Fatalf("refiner given as base: base %v, refiner %v, %v", e.Base(), e.Refiner(), err)
	}
	var me *ModelError
	if _, err := New(Options{Backend: b}, ref, ref); !errors.As(err, &me) || me.Role != "base" {
		t.Errorf("refiner as base with a refiner: %v", err)
	}
	if _, err := New(Options{Backend: b}, base, base); !errors.As(err, &me) || me.Role != "refiner" {
		t.Errorf("base as refiner: %v", err)
	}
	if _, err := e.Check(Request{Prompt: "x"}); !isField(err, "InitImage") {
		t.Errorf("text to image with the refiner alone: %v", err)
	}
}

func isField(err error, field string) bool {
	var fe *FieldError
	return errors.As(err, &fe) && fe.Field == field
}

// TestEngineCheck: every request error is a FieldError naming the field,
// found before any work; warnings say what the run changes.
func TestEngineCheck(t *testing.T) {
	e := smallEngine(t, false)
	bad := "\xff\xfe"
	for _, c := range []struct {
		req   Request
		field string
	}{
		{Request{Width: 12}, "Width"},
		{Request{Width: 8192, Height: 8192}, "Width"},
		{Request{Steps: 5000}, "Steps"},
		{Request{NumImages: 1000}, "NumImages"},
		{Request{Prompt: bad}, "Prompt"},
		{Request{NegativePrompt: &bad}, "NegativePrompt"},
		{Request{Strength: 0.5}, "Strength"},
		{Request{HighNoiseFrac: 0.5}, "HighNoiseFrac"},
		{Request{Scheduler: "nope"}, "Scheduler"},
		{Request{Scheduler: "ddim", Karras: true}, "Karras"},
		{Request{InitNoise: []float32{1, 2}}, "InitNoise"},
		{Request{Dump: []string{"a..b"}}, "Dump"},
		{Request{Image: make([]float32, 3*64*64), ImageShape: []int{1, 3, 64, 64}, Strength: 0.01, Steps: 10}, "Strength"},
	} {
		if _, err := e.Check(c.req); !isField(err, c.field) {
			t.Errorf("%+v: error %v, want one naming %s", c.req, err, c.field)
		}
	}
	w, err := e.Check(Request{Prompt: strings.Repeat("lion ", 80), Width: 512, Height: 64, Watermark: true, AestheticScore: new(float64)})
	if err != nil {
		t.Fatal(err)
	}
	var fields []string
	for _, x := range w {
		fields = append(fields, x.Field)
	}
	if !slices.Equal(fields, []string{"Watermark", "AestheticScore", "Prompt"}) {
		t.Errorf("warnings %v", w)
	}
}

// TestEngineInitImage: an image given as pixels is resized like diffusers'
// processor (with a warning) and gives what its processed tensor gives.
func TestEngineInitImage(t *testing.T) {
	e := smallEngine(t, false)
	px := &imageio.RGB{W: 70, H: 50, Pix: make([]uint8, 70*50*3)}
	for i := range px.Pix {
		px.Pix[i] = uint8(i * 7 % 256)
	}
	pre, err := imageio.Preprocess(px)
	if err != nil {
		t.Fatal(err)
	}
	img, shape := pre.Normalized()
	tensorReq := Request{Prompt: "x", Steps: 2, Strength: 0.5, Image: img, ImageShape: shape, OutputLatents: true}
	want, err := e.Generate(context.Background(), tensorReq)
	if err != nil {
		t.Fatal(err)
	}
	pixReq := tensorReq
	pixReq.Image, pixReq.ImageShape, pixReq.InitImage = nil, nil, px
	got, err := e.Generate(context.Background(), pixReq)
	if err != nil {
		t.Fatal(err)
	}
	sameFloats(t, "InitImage vs Image", got.Latents, want.Latents, 0)
	if len(got.Warnings) != 1 || !strings.Contains(got.Warnings[0].Message, "70x50; resized to 64x48") {
		t.Errorf("warnings %v", got.Warnings)
	}
	pixReq.Image = img
	if _, err := e.Check(pixReq); !isField(err, "InitImage") {
		t.Errorf("image given twice: %v", err)
	}
}

// TestReleaseTextEncoders: a one-request engine frees the text encoders'
// weights once the prompts are encoded, with the same result; a second
// request that needs them is refused, one with given embeddings runs.
func TestReleaseTextEncoders(t *testing.T) {
	b := cpu.New()
	m, err := LoadModel(b, golden.Path(t, "small/models/sdxl-small-base"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{Backend: b, ReleaseTextEncoders: true}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := Request{Prompt: "a lion", Steps: 2, Guidance: 5, Seed: 9, OutputLatents: true}
	got, err := e.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	want := generate(t, &Pipeline{Backend: b, Base: smallEngine(t, false).Base()}, req)
	sameFloats(t, "released vs kept", got.Latents, want.Latents, 0)
	for _, p := range nn.Params(m.Text.TextEncoder2, "") {
		if p.Tensor().Storage != nil {
			t.Fatalf("%s still holds its weights", p.Name)
		}
	}
	if _, err := e.Check(req); err == nil || !strings.Contains(err.Error(), "released") {
		t.Errorf("second request: %v", err)
	}
}

// TestHalfWeightsFloatCompute: half-precision weights computed in float32
// (the CPU's --dtype f16) give exactly what float32 weights holding the
// same values give, text encoders included (the small model's files are
// fp16, so its F32 load holds f16-rounded values).
func TestHalfWeightsFloatCompute(t *testing.T) {
	b := cpu.New()
	half, err := LoadModel(b, golden.Path(t, "small/models/sdxl-small-base"), LoadOptions{DType: tensor.F16})
	if err != nil {
		t.Fatal(err)
	}
	base, _ := loadSmall(t, b, false)
	req := Request{Prompt: "a lion", Steps: 2, Guidance: 5, Seed: 9, OutputLatents: true}
	got := generate(t, &Pipeline{Backend: b, Base: half, Precision: PrecisionF32}, req)
	want := generate(t, &Pipeline{Backend: b, Base: base}, req)
	sameFloats(t, "f16 weights in f32 vs f32 weights", got.Latents, want.Latents, 0)
}
