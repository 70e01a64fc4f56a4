package cuda

import (
	"fmt"
	"testing"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/controlnet"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/tensor"
)

// TestEmulatedControlNet runs a diffusers ControlNet scenario (scale 0.5
// in the window (0.2, 0.8), DPM++ 2M: residuals scaled by 0 on the outer
// steps, summed into the UNet's skips on the others) in F32 on the kernel
// emulator: every step's latents and the final ones within 1e-5, the image
// within 1 level, every tensor freed.
func TestEmulatedControlNet(t *testing.T) {
	if testing.Short() {
		t.Skip("short: an emulated pipeline takes seconds")
	}
	runControlNet(t, newEmuBackend(t, Options{}), "cn_lines_s0p5_window_dpmpp")
}

// TestControlNetPipelines (GPU) runs every ControlNet scenario on the
// device.
func TestControlNetPipelines(t *testing.T) {
	b := newGPU(t, Options{})
	for _, name := range []string{"cn_lines_euler", "cn_lines_s0p5_window_dpmpp", "cn_img2img_lines"} {
		t.Run(name, func(t *testing.T) { runControlNet(t, b, name) })
	}
}

func runControlNet(t *testing.T, b *Backend, name string) {
	sc, ok := golden.ControlNetScenarios(t)[name]
	if !ok {
		t.Fatalf("scenario %s missing from controlnet/index.json", name)
	}
	m := &pipeModels{b: b, dt: tensor.F32}
	base := m.model(t, "small/models/sdxl-small-base")
	cn, err := controlnet.Open(b, golden.Path(t, "controlnet/models/sdxl-small-controlnet"), base.UNet.Config(), controlnet.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	load := func(rel string) *imageio.RGB {
		img, err := imageio.Load(golden.Path(t, "controlnet/"+rel))
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	req := sdxl.Request{Prompt: sc.Prompt, Steps: sc.Steps, Guidance: sc.Guidance, Scheduler: sc.Scheduler, Seed: sc.Seed,
		KeepStepLatents: true, ControlNets: []sdxl.ControlNet{{Model: cn, Image: load(sc.ControlPNG), Scale: sc.Scale, Start: sc.Start, End: sc.End}}}
	if sc.Negative != "" {
		neg := sc.Negative
		req.NegativePrompt = &neg
	}
	if sc.Kind == "img2img" {
		req.InitImage, req.Strength = load(sc.InitImagePNG), sc.Strength
	} else {
		req.Width, req.Height = sc.Width, sc.Height
	}
	res := m.generate(t, &sdxl.Pipeline{Base: base}, req)
	f := golden.Open(t, "controlnet/"+sc.File)
	steps, sshape := f.Get("step_latents")
	per := len(steps) / sshape[0]
	if len(res.StepLatents) != sshape[0] {
		t.Fatalf("%d steps, golden has %d", len(res.StepLatents), sshape[0])
	}
	for i, got := range res.StepLatents {
		golden.Check(t, fmt.Sprintf("step_latents[%d]", i), got, steps[i*per:(i+1)*per], 1e-5)
	}
	want, _ := f.Get("final_latents")
	golden.Check(t, "final_latents", res.Latents, want, 1e-5)
	imgs, err := imageio.FromNCHW(res.Images, res.ImageShape[:])
	if err != nil {
		t.Fatal(err)
	}
	u8, _ := f.Get("image_uint8")
	maxd := golden.MaxLevelDiff(imgs[0], u8)
	if maxd > 1 {
		t.Errorf("image differs from image_uint8 by up to %v levels (limit 1)", maxd)
	}
	t.Logf("image max abs diff %v levels", maxd)
}
