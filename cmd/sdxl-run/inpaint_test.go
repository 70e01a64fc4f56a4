package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
)

// inpaintScenario is one entry of golden/inpaint/index.json.
type inpaintScenario struct {
	Model     string  `json:"model"` // base4 or inpaint9
	Prompt    string  `json:"prompt"`
	Negative  string  `json:"negative"`
	Steps     int     `json:"steps"`
	Guidance  float64 `json:"guidance"`
	Scheduler string  `json:"scheduler"`
	Seed      uint64  `json:"seed"`
	Strength  float64 `json:"strength"`
	Image     string  `json:"input_image_png"`
	Mask      string  `json:"mask_png"`
	File      string  `json:"file"`
}

// pngDiff is the largest difference in levels between a PNG and an NHWC
// uint8 golden image.
func pngDiff(t *testing.T, path string, u8 []float32) float64 {
	t.Helper()
	fp, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	img, err := png.Decode(fp)
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	if len(u8) != 3*b.Dx()*b.Dy() {
		t.Fatalf("PNG is %dx%d, the golden has %d values", b.Dx(), b.Dy(), len(u8))
	}
	maxd := 0.0
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			for c, v := range []uint32{r >> 8, g >> 8, bl >> 8} {
				maxd = math.Max(maxd, math.Abs(float64(v)-float64(u8[(y*b.Dx()+x)*3+c])))
			}
		}
	}
	return maxd
}

// TestCLIInpaint runs the four inpainting scenarios as a user types them:
// --image and --mask PNGs, no size (the small models' default is the
// images' 64x64), --strength only where it is not 1.
func TestCLIInpaint(t *testing.T) {
	data, err := os.ReadFile(golden.Path(t, "inpaint/index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Scenarios map[string]inpaintScenario `json:"scenarios"`
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatal(err)
	}
	models := map[string]string{"base4": "small/models/sdxl-small-base", "inpaint9": "inpaint/models/sdxl-small-inpaint"}
	for name, sc := range idx.Scenarios {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			out, lat := filepath.Join(dir, "out.png"), filepath.Join(dir, "latents.safetensors")
			args := append(testDevice(), "--no-watermark", "--quiet", "--model", golden.Path(t, models[sc.Model]),
				"--seed", fmt.Sprint(sc.Seed), "--prompt", sc.Prompt, "--negative-prompt", sc.Negative,
				"--steps", fmt.Sprint(sc.Steps), "--guidance", fmt.Sprint(sc.Guidance), "--scheduler", sc.Scheduler,
				"--image", golden.Path(t, "inpaint/"+sc.Image), "--mask", golden.Path(t, "inpaint/"+sc.Mask),
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
			lf, err := safetensors.Open(lat)
			if err != nil {
				t.Fatal(err)
			}
			defer lf.Close()
			got, _, err := lf.Float32("latents")
			if err != nil {
				t.Fatal(err)
			}
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

// TestCLIInpaintBadInput: mistakes about masks and tiling are one-line
// usage errors naming the flag, before any model is loaded where possible,
// and nothing is written.
func TestCLIInpaintBadInput(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "x.png")
	img := golden.Path(t, "inpaint/input_astro_euler.png")
	text := filepath.Join(dir, "mask.png")
	os.WriteFile(text, []byte("not an image"), 0o644)
	black := filepath.Join(dir, "black.png")
	dark := image.NewNRGBA(image.Rect(0, 0, 64, 64))
	for i := 3; i < len(dark.Pix); i += 4 {
		dark.Pix[i] = 255
	}
	if err := imageio.WritePNG(black, dark, nil, false); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"mask without image", []string{"--mask", black}, 2, "--mask: a mask says which part of an input image to repaint"},
		{"mask not an image", []string{"--image", img, "--mask", text}, 1, "--mask " + text + ": unsupported image format"},
		{"missing mask", []string{"--image", img, "--mask", filepath.Join(dir, "nope.png")}, 1, "nope.png"},
		{"black mask", []string{"--image", img, "--mask", black, "--steps", "2"}, 2, "--mask: the mask has no pixel at least 50% white"},
		{"tile size alone", []string{"--vae-tile-size", "32"}, 2, "--vae-tile-size 32: applies to tiled VAE decoding"},
		{"tile size", []string{"--vae-tiling", "--vae-tile-size", "12"}, 2, "--vae-tile-size 12"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--prompt", "x", "--steps", "1", "--quiet", "--out", out}, c.args...)
			code, _, stderr := runCLI(t, args...)
			if code != c.code || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, c.code, c.want)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); code != 0 && n > 1 {
				t.Errorf("error is not one line: %q", stderr)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("output written despite the error")
			}
		})
	}
}
