package sdxl

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sdxl/lora"
)

// loraScenario runs a golden/lora scenario through the engine, its LoRAs
// given in the request.
func loraRequest(t *testing.T, name string) (Request, golden.LoRAScenario) {
	t.Helper()
	sc, ok := golden.LoRAScenarios(t)[name]
	if !ok {
		t.Fatalf("scenario %s missing from lora/index.json", name)
	}
	neg := sc.Negative
	req := Request{Prompt: sc.Prompt, NegativePrompt: &neg, Width: sc.Width, Height: sc.Height, Steps: sc.Steps,
		Guidance: sc.Guidance, Scheduler: sc.Scheduler, Seed: sc.Seed}
	for _, l := range sc.Loras {
		f, err := lora.Load(golden.Path(t, "lora/"+l.File))
		if err != nil {
			t.Fatal(err)
		}
		req.LoRAs = append(req.LoRAs, LoRA{File: f, Scale: l.Scale})
	}
	return req, sc
}

// TestEngineLoRAs: LoRAs in a request match diffusers (final latents within
// 1e-5); the same LoRA as a prompt tag with a LoRA folder gives the same
// run bit for bit; a request without LoRAs afterwards is the plain model's
// golden (the LoRA taken out exactly).
func TestEngineLoRAs(t *testing.T) {
	e := smallEngine(t, false)
	t.Cleanup(e.Base().clearLoRAs)
	want := map[string][]float32{}
	for _, name := range []string{"lora_a_kohya_sgm_s1p0", "lora_a_kohya_s0p6", "lora_none"} {
		req, sc := loraRequest(t, name)
		res, err := e.Generate(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		w, _ := golden.Open(t, "lora/"+sc.File).Get("final_latents")
		golden.Check(t, name+" final_latents", res.Latents, w, 1e-5)
		want[name] = res.Latents
		if len(res.LoRAs) != len(sc.Loras) {
			t.Errorf("%s: result lists %d LoRAs", name, len(res.LoRAs))
		}
	}
	if e.Base().hasLoRAs() {
		t.Error("a request without LoRAs left LoRA weights merged")
	}

	// The tag, in an engine with the golden folder as its LoRA folder.
	te, err := New(Options{Backend: e.Backend(), LoRADir: golden.Path(t, "lora")}, e.Base(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := loraRequest(t, "lora_a_kohya_s0p6")
	req.LoRAs = nil
	req.Prompt = "<lora:lora_a.kohya:0.6>" + req.Prompt
	res, err := te.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !golden.SameBits(res.Latents, want["lora_a_kohya_s0p6"]) {
		t.Error("<lora:lora_a.kohya:0.6> differs from the LoRA given in the request")
	}
	if len(res.LoRAs) != 1 || res.LoRAs[0].Tag != "<lora:lora_a.kohya:0.6>" || res.LoRAs[0].Name != "lora_a.kohya" {
		t.Errorf("result LoRAs %+v", res.LoRAs)
	}
	// Without a folder the tag stays text, with a warning.
	ws, err := e.Check(req)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) == 0 || !strings.Contains(ws[0].Message, "--lora-dir") {
		t.Errorf("warnings %v", ws)
	}
}

// TestEngineLoRAErrors: bad LoRAs are FieldErrors naming the LoRA (and the
// key), found by Check before any weight changes.
func TestEngineLoRAErrors(t *testing.T) {
	e := smallEngine(t, true)
	t.Cleanup(e.Base().clearLoRAs)
	f, err := lora.Load(golden.Path(t, "lora/lora_a.kohya_sgm.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	le, err := New(Options{Backend: e.Backend(), LoRADir: golden.Path(t, "lora")}, nil, e.Refiner())
	if err != nil {
		t.Fatal(err)
	}
	img := make([]float32, 3*64*64)
	for _, c := range []struct {
		e    *Engine
		req  Request
		want string
	}{
		{e, Request{Prompt: "x", Steps: 2, LoRAs: []LoRA{{Scale: 1, Name: "nofile"}}}, "LoRA 1 (nofile): no file loaded"},
		{e, Request{Prompt: "x", Steps: 2, LoRAs: []LoRA{{File: f, Scale: math.NaN()}}}, "finite"},
		// The base LoRA on the refiner alone: its UNet does not fit.
		{le, Request{Prompt: "x", Steps: 10, Image: img, ImageShape: []int{1, 3, 64, 64}, LoRAs: []LoRA{{File: f, Scale: 1}}},
			"lora_unet_"},
		{le, Request{Prompt: "x <lora:missing:1>", Steps: 10, Image: img, ImageShape: []int{1, 3, 64, 64}}, "no file"},
		{le, Request{Prompt: "x <lora:../lora/x:1>", Steps: 10, Image: img, ImageShape: []int{1, 3, 64, 64}}, "inside"},
		{le, Request{Prompt: "x <lora:lora_a.kohya:abc>", Steps: 10, Image: img, ImageShape: []int{1, 3, 64, 64}}, "not a number"},
	} {
		_, err := c.e.Check(c.req)
		fe, ok := err.(*FieldError)
		if !ok || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want a FieldError with %q", c.req.Prompt, err, c.want)
			continue
		}
		t.Logf("%s: %v", fe.Field, err)
	}
	if e.Base().hasLoRAs() || e.Refiner().hasLoRAs() {
		t.Error("Check changed weights")
	}
}

// TestEngineLoRAEnsemble: in a base + refiner run the refiner's
// text_encoder_2 gets the LoRA's text_encoder_2 layers; its UNet is left
// alone; a later run without LoRAs restores both models.
func TestEngineLoRAEnsemble(t *testing.T) {
	e := smallEngine(t, true)
	t.Cleanup(e.Base().clearLoRAs)
	t.Cleanup(e.Refiner().clearLoRAs)
	req, _ := loraRequest(t, "lora_a_diffusers_s1p0")
	req.Steps = 4
	if _, err := e.Generate(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	ap, err := e.Refiner().loraApplier()
	if err != nil {
		t.Fatal(err)
	}
	te2 := 0
	for _, l := range req.LoRAs[0].File.Layers {
		if l.Component == lora.TextEncoder2 {
			te2++
		}
	}
	if ap.Touched() != te2 || te2 == 0 {
		t.Errorf("the refiner has %d weights changed, the LoRA %d text_encoder_2 layers", ap.Touched(), te2)
	}
	req.LoRAs = nil
	if _, err := e.Generate(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if e.Base().hasLoRAs() || e.Refiner().hasLoRAs() {
		t.Error("a run without LoRAs left LoRAs merged")
	}
}
