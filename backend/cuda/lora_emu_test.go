package cuda

import (
	"context"
	"testing"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/sdxl/lora"
	"github.com/sdxl-go/sdxl/tensor"
)

// TestEmulatedLoRA merges a LoRA on the device (the backend's MatMul and Add
// on the emulated GPU) and runs a golden LoRA scenario in F32: diffusers'
// final latents within 1e-5, the image within 1 level, and every merged
// weight freed again when the LoRA is removed.
func TestEmulatedLoRA(t *testing.T) {
	if testing.Short() {
		t.Skip("short: the emulated pipeline takes tens of seconds")
	}
	testLoRAPipeline(t, newEmuBackend(t, Options{}))
}

// TestLoRAPipeline (GPU) is the same on the device.
func TestLoRAPipeline(t *testing.T) { testLoRAPipeline(t, newGPU(t, Options{})) }

func testLoRAPipeline(t *testing.T, b *Backend) {
	sc, ok := golden.LoRAScenarios(t)["lora_a_kohya_sgm_s1p0"]
	if !ok || len(sc.Loras) != 1 {
		t.Fatal("scenario lora_a_kohya_sgm_s1p0 missing from lora/index.json")
	}
	m := &pipeModels{b: b, dt: tensor.F32}
	base := m.model(t, "small/models/sdxl-small-base")
	f, err := lora.Load(golden.Path(t, "lora/"+sc.Loras[0].File))
	if err != nil {
		t.Fatal(err)
	}
	ap, err := lora.NewApplier(lora.Target{UNet: base.UNet, TextEncoder: base.Text.TextEncoder, TextEncoder2: base.Text.TextEncoder2})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	before := b.MemStats().InUse
	if err := ap.Set(context.Background(), []lora.Use{lora.Scaled(f, sc.Loras[0].Scale)}); err != nil {
		t.Fatal(err)
	}
	if w := base.UNet.ConvIn.Weight; w.Backend() != tensor.Backend(b) {
		t.Fatalf("weights live on %v", w.Backend())
	}
	neg := sc.Negative
	res := m.generate(t, &sdxl.Pipeline{Base: base}, sdxl.Request{Prompt: sc.Prompt, NegativePrompt: &neg,
		Width: sc.Width, Height: sc.Height, Steps: sc.Steps, Guidance: sc.Guidance, Scheduler: sc.Scheduler, Seed: sc.Seed})
	ap.Clear()
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := b.MemStats().InUse; got != before {
		t.Errorf("device memory in use %d bytes after removing the LoRA, %d before applying it", got, before)
	}
	gf := golden.Open(t, "lora/"+sc.File)
	want, _ := gf.Get("final_latents")
	golden.Check(t, "final_latents", res.Latents, want, 1e-5)
	imgs, err := imageio.FromNCHW(res.Images, res.ImageShape[:])
	if err != nil {
		t.Fatal(err)
	}
	u8, _ := gf.Get("image_uint8")
	maxd := golden.MaxLevelDiff(imgs[0], u8)
	if maxd > 1 {
		t.Errorf("image differs from image_uint8 by up to %v levels (limit 1)", maxd)
	}
	t.Logf("image max abs diff %v levels", maxd)
}
