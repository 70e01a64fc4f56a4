package jobspec

import (
	"errors"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/sdxl"
)

func TestDecodeNative(t *testing.T) {
	s, err := Decode([]byte(`{"prompt": "a cat", "negative_prompt": "", "seed": 12, "steps": 20.0, "cfg_scale": 6,
		"width": 832, "height": 1216, "sampler_name": "DPM++ 2M", "scheduler": "Karras", "batch_size": 2, "n_iter": 3,
		"refiner": false, "refiner_switch_at": 0.7, "loras": [{"name": "styles/ink", "weight": 0.6}, {"name": "detail"}],
		"prompt_weighting": "a1111", "clip_skip": 2, "vae_tiling": true, "watermark": false, "rng": "cuda", "mask": null}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Steps != 20 || s.Refiner == nil || *s.Refiner || len(s.LoRAs) != 2 || s.LoRAs[1].Weight != 1 || s.Images() != 6 || s.IterationSeed(2) != 16 {
		t.Errorf("decoded: %+v", s)
	}
	req, warnings, err := s.Request(Env{LoRAs: true})
	if err != nil || len(warnings) != 0 {
		t.Fatal(err, warnings)
	}
	if req.Scheduler != "dpmpp_2m_karras" || req.Prompt != "a cat <lora:styles/ink:0.6> <lora:detail:1>" || req.NegativePrompt != nil ||
		req.NumImages != 2 || req.HighNoiseFrac != 0.7 || req.Watermark || req.RNG != "cuda" || req.Weighting != sdxl.WeightingA1111 || req.ClipSkip != 0 {
		t.Errorf("request: %+v", req)
	}
	// Defaults, and A1111's automatic schedule for a sampler whose A1111
	// default this engine lacks: a note, not an error.
	s, _ = Decode([]byte(`{"prompt": "x", "sampler_name": "DPM++ 2M SDE"}`))
	s.Normalize()
	if s.Seed < 0 || s.Steps != 50 || s.CFGScale != 5 || s.BatchSize != 1 {
		t.Errorf("defaults: %+v", s)
	}
	if _, w, err := s.Request(Env{}); err != nil || len(w) != 1 || !strings.Contains(w[0], "Exponential") {
		t.Errorf("automatic schedule: %v %v", w, err)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, c := range []struct{ body, field string }{
		{`{"prompt": "x", "steps": true}`, "steps"},
		{`{"prompt": "x", "width": 1e400}`, "width"},
		{`{"prompt": "x", "seed": 1.5}`, "seed"},
		{`{"prompt": "x", "n_iter": 0}`, "n_iter"},
		{`{"prompt": "x", "loras": {"name": "a"}}`, "loras"},
		{`{"prompt": "x", "loras": [{"name": "a", "strength": 1}]}`, "loras[0].strength"},
		{`{"prompt": "x", "loras": [{"name": "a:b"}]}`, "loras[0].name"},
		{`{"prompt": "x", "loras": [{"name": "/etc/x"}]}`, "loras[0].name"},
		{`{"prompt": "x", "init_images": [1]}`, "init_images[0]"},
		{`{"prompt": "x", "sampler_name": "Nope"}`, "sampler_name"},
		{`{"prompt": "x", "guidance_rescale": 2}`, "guidance_rescale"},
		{`{"prompt": "x", "extra": 1}`, "extra"},
	} {
		_, err := Decode([]byte(c.body))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s: %v, want an error naming %s", c.body, err, c.field)
		}
	}
}

func TestFromEngineAndRecord(t *testing.T) {
	err := FromEngine(&sdxl.FieldError{Field: "Guidance", Value: 0.5, Reason: "too low"})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Error() != "cfg_scale: 0.5: too low" {
		t.Errorf("FromEngine: %v", err)
	}
	if other := errors.New("x"); FromEngine(other) != other {
		t.Errorf("other errors pass through")
	}
	s := New(Native)
	s.InitImages, s.Mask = []string{"aGVsbG8="}, "aGVsbG8="
	r := s.Record()
	if !strings.HasPrefix(r.InitImages[0], "sha256:") || !strings.HasPrefix(r.Mask, "sha256:") || s.InitImages[0] != "aGVsbG8=" {
		t.Errorf("Record: %+v (original %+v)", r, s)
	}
}

func TestDecodeA1111(t *testing.T) {
	r, err := DecodeA1111([]byte(`{"prompt": "x", "sampler_index": "Euler a", "denoising_strength": 0.7, "eta": 0.5,
		"refiner_checkpoint": "None", "override_settings": {"CLIP_stop_at_last_layers": 3, "sd_model_checkpoint": "m", "foo": 1},
		"send_images": false, "seed": -1}`), false)
	if err != nil {
		t.Fatal(err)
	}
	if r.Spec.SamplerName != "Euler a" || r.Spec.DenoisingStrength != 0 || r.Spec.ClipSkip != 3 || r.Checkpoint != "m" ||
		r.RefinerCheckpoint == nil || r.SendImages || r.Spec.CFGScale != 7 || strings.Join(r.Ignored, ",") != "eta,override_settings.foo" {
		t.Errorf("%+v", r)
	}
	if r, err := DecodeA1111([]byte(`{"prompt": "x", "init_images": ["aGk="]}`), true); err != nil || r.Spec.DenoisingStrength != 0.75 {
		t.Errorf("img2img default strength: %v %v", r.Spec.DenoisingStrength, err)
	}
}
