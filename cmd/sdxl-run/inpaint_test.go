package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
)

// TestCLIInpaint runs the four inpainting scenarios as a user types them:
// --image and --mask PNGs, no size (the small models' default is the
// images' 64x64), --strength only where it is not 1.
func TestCLIInpaint(t *testing.T) {
	for name, sc := range golden.InpaintScenarios(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			out, lat := filepath.Join(dir, "out.png"), filepath.Join(dir, "latents.safetensors")
			args := append(testDevice(), "--no-watermark", "--quiet", "--model", golden.Path(t, golden.InpaintModels[sc.Model]),
				"--seed", fmt.Sprint(sc.Seed), "--prompt", sc.Prompt, "--negative-prompt", sc.Negative,
				"--steps", fmt.Sprint(sc.Steps), "--guidance", fmt.Sprint(sc.Guidance), "--scheduler", sc.Scheduler,
				"--image", golden.Path(t, "inpaint/"+sc.ImagePNG), "--mask", golden.Path(t, "inpaint/"+sc.MaskPNG),
				"--out", out, "--save-latents", lat)
			if sc.Strength != 1 {
				args = append(args, "--strength", fmt.Sprint(sc.Strength))
			} else {
				args = append(args, "--strength", "1")
			}
			code, _, stderr := runCLI(t, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			f := golden.Open(t, "inpaint/"+sc.File)
			want, _ := f.Get("final_latents")
			got, _ := savedLatents(t, lat)
			golden.Check(t, "final_latents", got, want, 1e-5)
			u8, _ := f.Get("image_uint8")
			d := pngDiff(t, out, u8)
			if d > 1 {
				t.Errorf("PNG differs from image_uint8 by up to %v levels (limit 1)", d)
			}
			t.Logf("PNG max abs diff %v levels", d)
		})
	}
}

// TestCLIVAETiling: the astro_euler scenario decoded in 32-pixel tiles
// gives diffusers' tiled decode of its latents (vae_tiling astro_8x8_t4).
func TestCLIVAETiling(t *testing.T) {
	sc := golden.SmallScenarios(t)["astro_euler"]
	dir := t.TempDir()
	out := filepath.Join(dir, "out.png")
	args := append(scenarioArgs(t, sc, dir), "--vae-tiling", "--vae-tile-size", "32", "--out", out)
	code, _, stderr := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	g := golden.Open(t, "vae_tiling/vae_tiled_astro_8x8_t4.safetensors")
	tiled, shape := g.Get("out.tiled")
	imgs, err := imageio.FromNCHW(tiled, shape)
	if err != nil {
		t.Fatal(err)
	}
	h, w := shape[2], shape[3]
	u8 := make([]float32, 0, 3*h*w)
	for y := range h {
		for x := range w {
			c := imgs[0].NRGBAAt(x, y)
			u8 = append(u8, float32(c.R), float32(c.G), float32(c.B))
		}
	}
	d := pngDiff(t, out, u8)
	if d > 1 {
		t.Errorf("PNG differs from the tiled golden by up to %v levels (limit 1)", d)
	}
	t.Logf("PNG vs diffusers' tiled decode: max abs diff %v levels", d)

	// The parameters record the tiling, so --from-png repeats it.
	if p := readParams(t, out); !strings.Contains(p, "VAE tile size: 32") {
		t.Errorf("parameters without the tile size: %s", p)
	}
	a1111, again := filepath.Join(dir, "a1111.png"), filepath.Join(dir, "again.png")
	parametersOnly(t, out, a1111)
	code, _, stderr = runCLI(t, append(testDevice(), "--quiet", "--model", golden.Path(t, "small/models/sdxl-small-base"), "--from-png", a1111, "--out", again)...)
	if code != 0 {
		t.Fatalf("--from-png: exit %d: %s", code, stderr)
	}
	if !bytes.Equal(pngPixels(t, out), pngPixels(t, again)) {
		t.Error("--from-png did not repeat the tiled decode")
	}
}
