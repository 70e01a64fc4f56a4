package main

import (
	"bytes"
	"context"
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
	"github.com/sdxl-go/sdxl/sdxl/bundled"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
)

// writeGoldenPNG writes a golden NHWC uint8 image as a PNG (the refiner
// scenario's source image).
func writeGoldenPNG(t *testing.T, u8 []float32, h, w int, path string) {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			o := img.PixOffset(x, y)
			for c := 0; c < 3; c++ {
				img.Pix[o+c] = uint8(u8[(y*w+x)*3+c])
			}
			img.Pix[o+3] = 255
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// scenarioArgs turns a golden scenario into sdxl-run flags.
func scenarioArgs(t *testing.T, sc golden.Scenario, dir string) []string {
	base := golden.Path(t, "small/models/sdxl-small-base")
	refiner := func() string { return golden.Path(t, "small/models/sdxl-small-refiner") }
	args := append(testDevice(), "--no-watermark", "--quiet",
		"--seed", fmt.Sprint(sc.Seed), "--prompt", sc.Prompt, "--steps", fmt.Sprint(sc.Steps),
		"--guidance", fmt.Sprint(sc.Guidance), "--scheduler", sc.Scheduler)
	if sc.Negative != "" {
		args = append(args, "--negative-prompt", sc.Negative)
	}
	if sc.Compel {
		args = append(args, "--prompt-weighting", "compel")
	}
	switch sc.Kind {
	case "txt2img":
		args = append(args, "--model", base, "--width", fmt.Sprint(sc.Width), "--height", fmt.Sprint(sc.Height))
	case "ensemble":
		args = append(args, "--model", base, "--refiner", refiner(), "--high-noise-frac", fmt.Sprint(sc.DenoiseFrac),
			"--width", fmt.Sprint(sc.Width), "--height", fmt.Sprint(sc.Height))
	case "img2img_refiner", "img2img":
		src := golden.Open(t, "small/e2e_"+sc.Source+".safetensors")
		u8, shape := src.Get("image_uint8")
		p := filepath.Join(dir, "source.png")
		writeGoldenPNG(t, u8, shape[1], shape[2], p)
		args = append(args, "--image", p, "--strength", fmt.Sprint(sc.Strength))
		if sc.Kind == "img2img" {
			args = append(args, "--model", base)
		} else {
			args = append(args, "--refiner", refiner())
		}
	default:
		t.Fatalf("unknown kind %q", sc.Kind)
	}
	return args
}

// checkRun compares a run's saved latents and PNG with the scenario's golden.
func checkRun(t *testing.T, name, latents, pngPath string) {
	t.Helper()
	f := golden.Open(t, "small/e2e_"+name+".safetensors")
	want, wshape := f.Get("final_latents")
	got, gshape := savedLatents(t, latents)
	if fmt.Sprint(gshape) != fmt.Sprint(wshape) {
		t.Fatalf("latents shape %v, golden %v", gshape, wshape)
	}
	golden.Check(t, name+" final_latents", got, want, 1e-3)
	u8, _ := f.Get("image_uint8")
	maxd := pngDiff(t, pngPath, u8)
	if maxd > 2 {
		t.Errorf("%s: PNG differs from image_uint8 by up to %v levels (limit 2)", name, maxd)
	}
	t.Logf("%s: PNG max abs diff %v levels", name, maxd)
}

// savedLatents reads a --save-latents file.
func savedLatents(t *testing.T, path string) ([]float32, []int) {
	t.Helper()
	lf, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	got, shape, err := lf.Float32("latents")
	if err != nil {
		t.Fatal(err)
	}
	return got, shape
}

// pngDiff is the largest difference in levels between a PNG and an NHWC
// uint8 golden image.
func pngDiff(t *testing.T, path string, u8 []float32) float64 {
	t.Helper()
	px := pngPixels(t, path)
	if len(px) != len(u8) {
		t.Fatalf("%s has %d values, the golden image %d", path, len(px), len(u8))
	}
	maxd := 0.0
	for i, v := range px {
		maxd = math.Max(maxd, math.Abs(float64(v)-float64(u8[i])))
	}
	return maxd
}

// TestCLIGoldenScenarios runs every golden/small scenario through sdxl-run's
// flags, exactly as a user would type them.
func TestCLIGoldenScenarios(t *testing.T) {
	scs := golden.SmallScenarios(t)
	if len(scs) == 0 {
		t.Fatal("no scenarios")
	}
	for name, sc := range scs {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			out, lat := filepath.Join(dir, "out.png"), filepath.Join(dir, "latents.safetensors")
			args := append(scenarioArgs(t, sc, dir), "--out", out, "--save-latents", lat)
			code, stdout, stderr := runCLI(t, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if strings.TrimSpace(stdout) != out {
				t.Errorf("stdout %q, want the output path", stdout)
			}
			checkRun(t, name, lat, out)
		})
	}
}

// TestCLIOffload: --offload gives the same latents.
func TestCLIOffload(t *testing.T) {
	sc := golden.SmallScenarios(t)["astro_euler"]
	dir := t.TempDir()
	out, lat := filepath.Join(dir, "out.png"), filepath.Join(dir, "l.safetensors")
	args := append(scenarioArgs(t, sc, dir), "--offload", "--out", out, "--save-latents", lat)
	if code, _, stderr := runCLI(t, args...); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	checkRun(t, "astro_euler", lat, out)
}

// TestCLISingleFile: the single-file small base with the folder's configs
// reproduces astro_euler.
func TestCLISingleFile(t *testing.T) {
	sc := golden.SmallScenarios(t)["astro_euler"]
	dir := t.TempDir()
	args := scenarioArgs(t, sc, dir)
	for i, a := range args {
		if a == "--model" {
			args[i+1] = golden.Path(t, "small/models/sdxl-small-base.safetensors")
		}
	}
	out, lat := filepath.Join(dir, "out.png"), filepath.Join(dir, "l.safetensors")
	args = append(args, "--config", golden.Path(t, "small/models/sdxl-small-base"), "--out", out, "--save-latents", lat)
	if code, _, stderr := runCLI(t, args...); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	checkRun(t, "astro_euler", lat, out)
}

// TestCLIFirstRun is a fresh clone's first command: only --prompt and --out.
func TestCLIFirstRun(t *testing.T) {
	if !bundled.Available() {
		t.Skip("built without the bundled model (nobundle)")
	}
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	out := filepath.Join(dir, "first.png")
	code, _, stderr := runCLI(t, "--prompt", "a photo of an astronaut riding a horse on mars", "--out", out, "--steps", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "seed: ") || !strings.Contains(stderr, "random-weight") {
		t.Errorf("stderr should print the random seed and the bundled-model note: %q", stderr)
	}
	chunks, err := imageio.ReadPNGText(out)
	if err != nil {
		t.Fatal(err)
	}
	params, ok := imageio.Lookup(chunks, imageio.ParametersKey)
	if !ok || !strings.HasPrefix(params, "a photo of an astronaut riding a horse on mars\nNegative prompt: \nSteps: 3, Sampler: Euler, Schedule type: Automatic, CFG scale: 5, Seed: ") {
		t.Errorf("parameters chunk: %q", params)
	}
	runJSON, ok := imageio.Lookup(chunks, "sdxl-run")
	var rec runRecord
	if !ok || json.Unmarshal([]byte(runJSON), &rec) != nil || rec.Flags["prompt"] == "" || len(rec.Files) == 0 || rec.Files[0].SHA256 == "" {
		t.Errorf("sdxl-run chunk: %q", runJSON)
	}
	before, _ := os.ReadFile(out)
	code, _, stderr = runCLI(t, "--prompt", "x", "--out", out, "--steps", "1")
	if code == 0 || !strings.Contains(stderr, "already exists") || !strings.Contains(stderr, "--overwrite") {
		t.Errorf("second run without --overwrite: exit %d, %q", code, stderr)
	}
	if after, _ := os.ReadFile(out); !bytes.Equal(before, after) {
		t.Error("existing file was modified")
	}
	if code, _, stderr = runCLI(t, "--prompt", "x", "--out", out, "--steps", "1", "--overwrite", "--seed", "1"); code != 0 {
		t.Errorf("--overwrite: exit %d, %q", code, stderr)
	}
}

func TestCLIBadInput(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "x.png")
	corrupt := filepath.Join(dir, "corrupt.safetensors")
	os.WriteFile(corrupt, []byte("\x10\x00\x00\x00\x00\x00\x00\x00{not json}      "), 0o644)
	// Inpainting inputs: a picture, a text file posing as a mask, a black mask.
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
		{"unknown scheduler", []string{"--scheduler", "eulr"}, 2, `--scheduler "eulr": unknown; choose one of`},
		{"width not multiple of 8", []string{"--width", "100"}, 2, "--width 100: must be a positive multiple of 8"},
		{"height not multiple of 8", []string{"--height", "7"}, 2, "--height 7"},
		{"strength too large", []string{"--image", "x.png", "--strength", "1.5"}, 2, "--strength 1.5: must be in (0, 1]"},
		{"strength zero", []string{"--image", "x.png", "--strength", "0"}, 2, "--strength 0"},
		{"missing model", []string{"--model", filepath.Join(dir, "nope")}, 1, "nope"},
		{"corrupt model", []string{"--model", corrupt}, 1, "corrupt.safetensors"},
		{"refiner without base", []string{"--refiner", filepath.Join(dir, "some-refiner")}, 2, "text-to-image needs a base model"},
		// Every problem with a path the user gave (input or output) is a
		// usage error naming the flag.
		{"unwritable output", []string{"--out", filepath.Join(dir, "no", "such", "dir", "x.png")}, 2, "--out: cannot write"},
		{"bad weighting", []string{"--prompt-weighting", "foo"}, 2, "--prompt-weighting"},
		{"bad device", []string{"--device", "tpu"}, 2, "--device"},
		{"stray argument", []string{"hello"}, 2, "unexpected argument"},
		{"mask without image", []string{"--mask", black}, 2, "--mask: a mask says which part of an input image to repaint"},
		{"mask not an image", []string{"--image", img, "--mask", text}, 2, "--mask " + text + ": unsupported image format"},
		{"missing mask", []string{"--image", img, "--mask", filepath.Join(dir, "nope.png")}, 2, "--mask " + filepath.Join(dir, "nope.png") + ": no such file"},
		{"black mask", []string{"--image", img, "--mask", black, "--steps", "2"}, 2, "--mask: the mask has no pixel at least 50% white"},
		{"tile size alone", []string{"--vae-tile-size", "32"}, 2, "--vae-tile-size 32: applies to tiled VAE decoding"},
		{"tile size", []string{"--vae-tiling", "--vae-tile-size", "12"}, 2, "--vae-tile-size 12"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--prompt", "x", "--steps", "1", "--quiet"}, c.args...)
			if !strings.Contains(strings.Join(c.args, " "), "--out") {
				args = append(args, "--out", out)
			}
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

// TestCLIInterrupt: a canceled run (SIGINT) stops between steps and leaves
// no file.
func TestCLIInterrupt(t *testing.T) {
	if !bundled.Available() {
		t.Skip("built without the bundled model (nobundle)")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "x.png")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var o, e bytes.Buffer
	code := run(ctx, []string{"--prompt", "x", "--steps", "5", "--out", out, "--quiet"}, &o, &e)
	if code != 130 || !strings.Contains(e.String(), "interrupted") {
		t.Errorf("exit %d, %q", code, e.String())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("files left behind: %v", entries)
	}
}

// TestCLIResearchOutputs: --init-noise replaces the seed's first draw
// (same result as the seed), --dump records the chosen modules at every
// step and the per-step latents.
func TestCLIResearchOutputs(t *testing.T) {
	sc := golden.SmallScenarios(t)["astro_euler"]
	dir := t.TempDir()
	f := golden.Open(t, "small/e2e_astro_euler.safetensors")
	noise, nshape := f.Get("init_noise")
	noisePath := filepath.Join(dir, "noise.safetensors")
	if err := safetensors.WriteFile(noisePath, []safetensors.Tensor{{Name: "latents", Shape: nshape, Data: noise}}, nil); err != nil {
		t.Fatal(err)
	}
	args := scenarioArgs(t, sc, dir)
	for i, a := range args {
		if a == "--seed" {
			args[i+1] = "999" // the init noise must win over the seed's first draw
		}
	}
	out, lat, dump := filepath.Join(dir, "out.png"), filepath.Join(dir, "l.safetensors"), filepath.Join(dir, "d.safetensors")
	args = append(args, "--init-noise", noisePath, "--out", out, "--save-latents", lat,
		"--dump", "mid_block.attentions.0.transformer_blocks.0.attn2", "--dump", "conv_out", "--dump-to", dump)
	if code, _, stderr := runCLI(t, args...); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	checkRun(t, "astro_euler", lat, out)
	df, err := safetensors.Open(dump)
	if err != nil {
		t.Fatal(err)
	}
	defer df.Close()
	for i := 0; i < sc.Steps; i++ {
		for _, name := range []string{
			fmt.Sprintf("base.step%d.mid_block.attentions.0.transformer_blocks.0.attn2", i),
			fmt.Sprintf("base.step%d.conv_out", i),
			fmt.Sprintf("latents.step%d", i),
		} {
			if _, ok := df.Info(name); !ok {
				t.Errorf("dump lacks %s (has %v)", name, df.Names())
			}
		}
	}
	steps, sshape := f.Get("step_latents")
	per := len(steps) / sshape[0]
	got, _, err := df.Float32(fmt.Sprintf("latents.step%d", sc.Steps-1))
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "dumped last step latents", got, steps[(sshape[0]-1)*per:], 1e-3)
	co, _ := df.Info("base.step0.conv_out")
	if fmt.Sprint(co.Shape) != fmt.Sprint([]int{2, 4, sc.Height / 8, sc.Width / 8}) {
		t.Errorf("conv_out shape %v", co.Shape)
	}
}
