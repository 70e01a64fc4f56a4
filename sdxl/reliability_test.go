package sdxl

import (
	"errors"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
)

// TestEngineMemoryBudget: a request whose estimate is over
// Options.MemoryBudget is a field error saying what fits; a negative
// budget turns the check off.
func TestEngineMemoryBudget(t *testing.T) {
	b := cpu.New()
	base, _ := loadSmall(t, b, false)
	e, err := New(Options{Backend: b, MemoryBudget: 1 << 30, AutoTilePixels: -1}, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 4096x4096 fits on 1 GiB only with a tiled VAE: the engine tiles.
	w, err := e.Check(Request{Prompt: "x", Width: 4096, Height: 4096})
	if err != nil || len(w) != 1 || w[0].Field != "VAETiling" {
		t.Errorf("4096x4096 on 1 GiB: %v, %v", w, err)
	}
	_, err = e.Check(Request{Prompt: "x", Width: 4096, Height: 4096, NumImages: 4})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "Width" || !strings.Contains(err.Error(), "fits with 1 image") {
		t.Errorf("4096x4096 x4 on 1 GiB: %v", err)
	}
	_, err = e.Check(Request{Prompt: "x", Width: 1024, Height: 1024, NumImages: 64})
	if !errors.As(err, &fe) || fe.Field != "NumImages" || !strings.Contains(err.Error(), "images fit at 1024x1024") {
		t.Errorf("64 images on 1 GiB: %v", err)
	}
	if _, err := e.Check(Request{Prompt: "x", Width: 256, Height: 256}); err != nil {
		t.Errorf("256x256 on 1 GiB: %v", err)
	}
	off, err := New(Options{Backend: b, MemoryBudget: -1}, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := off.Check(Request{Prompt: "x", Width: 4096, Height: 4096}); err != nil {
		t.Errorf("no memory check: %v", err)
	}
}

// deviceBackend is the CPU backend posing as a device with memory of its
// own that reports its budget (as the CUDA backend does).
type deviceBackend struct {
	*cpu.Backend
	budget int64
}

func (d deviceBackend) Name() string        { return "device" }
func (d deviceBackend) MemoryBudget() int64 { return d.budget }

// TestEngineDeviceMemoryBudget: on a backend that reports its device
// memory, the engine refuses what does not fit before any work, without
// Options.MemoryBudget; a backend that reports nothing is not checked.
func TestEngineDeviceMemoryBudget(t *testing.T) {
	b := cpu.New()
	base, _ := loadSmall(t, b, false)
	e, err := New(Options{Backend: deviceBackend{b, 1 << 30}, AutoTilePixels: -1}, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Check(Request{Prompt: "x", Width: 1024, Height: 1024, NumImages: 64})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "NumImages" || !strings.Contains(err.Error(), "images fit at 1024x1024") {
		t.Errorf("64 images on a 1 GiB device: %v", err)
	}
	unknown, err := New(Options{Backend: deviceBackend{b, 0}, AutoTilePixels: -1}, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unknown.Check(Request{Prompt: "x", Width: 1024, Height: 1024, NumImages: 64}); err != nil {
		t.Errorf("a device that cannot tell its memory: %v", err)
	}
}

// TestEngineChecksBeforeWork: a dump pattern that matches no module and a
// prompt weight that would overflow are field errors from Check.
func TestEngineChecksBeforeWork(t *testing.T) {
	e := smallEngine(t, false)
	for _, c := range []struct {
		req   Request
		field string
		want  string
	}{
		{Request{Prompt: "x", Dump: []string{"up_blocks.7.**"}}, "Dump", "matches no module of the UNet"},
		{Request{Prompt: "cat" + strings.Repeat("+", 100), Weighting: WeightingCompel}, "Prompt", `fragment "cat" has weight`},
		{Request{Prompt: "x", NegativePrompt: ptrTo("(dog:1000)"), Weighting: WeightingA1111}, "NegativePrompt", "beyond ±100"},
	} {
		_, err := e.Check(c.req)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %s: %q", c.req.Dump, err, c.field, c.want)
		}
	}
	for _, pat := range []string{"down_blocks.1.attentions.0.transformer_blocks.0.attn2", "**.attn2", "mid_block.input", "time_proj", "up_blocks.*.resnets.0.conv1"} {
		if _, err := e.Check(Request{Prompt: "x", Dump: []string{pat}}); err != nil {
			t.Errorf("dump %q: %v", pat, err)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }
