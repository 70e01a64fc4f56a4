package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
)

// smallArgs are the flags of a fast run with the small base.
func smallArgs(t *testing.T, extra ...string) []string {
	return append(append(testDevice(), "--model", golden.Path(t, "small/models/sdxl-small-base"),
		"--prompt", "a lion", "--seed", "4", "--steps", "3", "--quiet"), extra...)
}

func readLatentsFile(t *testing.T, path string) ([]float32, []int) {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, s, err := f.Float32("latents")
	if err != nil {
		t.Fatal(err)
	}
	return d, s
}

func pngPixels(t *testing.T, path string) []byte {
	t.Helper()
	img := decodePNG(t, path)
	var out []byte
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			out = append(out, byte(r>>8), byte(g>>8), byte(bl>>8))
		}
	}
	return out
}

// TestCLIRequestMapping: the micro-conditioning flags are WIDTHxHEIGHT and
// TOP,LEFT on the command line and diffusers' (height, width) and
// (top, left) tuples in the request; an absent --negative-prompt is None,
// an empty one is "".
func TestCLIRequestMapping(t *testing.T) {
	var o options
	fs := newFlagSet(&o, &bytes.Buffer{})
	err := fs.Parse([]string{"--original-size", "1024x768", "--target-size", "896X1152", "--crop", "10, 20",
		"--negative-original-size", "512x256", "--negative-target-size", "640x480", "--negative-crop", "3,4",
		"--negative-prompt", "", "--aesthetic-score", "7", "--num-images", "3", "--guidance", "1"})
	if err != nil {
		t.Fatal(err)
	}
	req := o.request(1)
	for _, c := range []struct {
		name string
		got  *[2]int
		want [2]int
	}{{"original", req.OriginalSize, [2]int{768, 1024}}, {"target", req.TargetSize, [2]int{1152, 896}},
		{"negative original", req.NegativeOriginalSize, [2]int{256, 512}}, {"negative target", req.NegativeTargetSize, [2]int{480, 640}}} {
		if c.got == nil || *c.got != c.want {
			t.Errorf("%s size: %v, want (height, width) %v", c.name, c.got, c.want)
		}
	}
	if req.CropsTopLeft != [2]int{10, 20} || req.NegativeCropsTopLeft != [2]int{3, 4} {
		t.Errorf("crops %v / %v, want (top, left) (10, 20) / (3, 4)", req.CropsTopLeft, req.NegativeCropsTopLeft)
	}
	if req.NegativePrompt == nil || *req.NegativePrompt != "" || req.NegativePrompt2 != nil {
		t.Errorf(`--negative-prompt "": got %v, %v`, req.NegativePrompt, req.NegativePrompt2)
	}
	if req.AestheticScore == nil || *req.AestheticScore != 7 || req.NegativeAestheticScore != nil {
		t.Errorf("aesthetic scores %v %v", req.AestheticScore, req.NegativeAestheticScore)
	}
	if req.NumImages != 3 || req.Guidance != 1 || !req.Watermark {
		t.Errorf("num images %d, guidance %v, watermark %v", req.NumImages, req.Guidance, req.Watermark)
	}
	var o2 options
	if err := newFlagSet(&o2, &bytes.Buffer{}).Parse(nil); err != nil {
		t.Fatal(err)
	}
	req = o2.request(1)
	if req.NegativePrompt != nil || req.OriginalSize != nil || req.AestheticScore != nil || req.Guidance != 5 || req.Steps != 50 || req.Strength != 0 {
		t.Errorf("defaults: %+v", req)
	}
}

// TestCLIFlagErrors: every mistake is one line on stderr naming the flag,
// the value and what is allowed, exit 2, and no file.
func TestCLIFlagErrors(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "x.png")
	img := filepath.Join(dir, "in.png")
	writeGoldenPNG(t, make([]float32, 64*64*3), 64, 64, img)
	noise := filepath.Join(dir, "noise.safetensors")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"bad seed", []string{"--seed", "abc"}, `invalid value "abc" for flag -seed: want a non-negative integer`},
		{"negative seed", []string{"--seed", "-3"}, `invalid value "-3" for flag -seed`},
		{"bad width", []string{"--width", "wide"}, `invalid value "wide" for flag -width`},
		{"bad size", []string{"--original-size", "1024"}, `invalid value "1024" for flag -original-size: want WIDTHxHEIGHT`},
		{"bad crop", []string{"--crop", "1;2"}, `invalid value "1;2" for flag -crop: want TOP,LEFT`},
		{"bad aesthetic", []string{"--aesthetic-score", "NaN"}, `invalid value "NaN" for flag -aesthetic-score: want a number`},
		{"unknown flag", []string{"--sampler", "euler"}, "flag provided but not defined: -sampler"},
		{"guidance inf", []string{"--guidance", "Inf"}, "--guidance +Inf: must be a finite number"},
		{"rescale NaN", []string{"--guidance-rescale", "NaN"}, "--guidance-rescale NaN: must be in [0, 1]"},
		{"denoising end in ensemble", []string{"--model", "b", "--refiner", "r", "--denoising-end", "0.5"}, "--denoising-end 0.5: is for a one-model run"},
		{"denoising end range", []string{"--denoising-end", "1.5"}, "--denoising-end 1.5: must be in (0, 1)"},
		{"high noise frac alone", []string{"--high-noise-frac", "0.7"}, "--high-noise-frac 0.7: splits the steps between a base and a refiner"},
		{"init noise with image", []string{"--image", img, "--init-noise", noise}, "--init-noise: initial noise applies to text-to-image only"},
		{"clip skip with compel", []string{"--prompt-weighting", "compel", "--clip-skip", "1"}, "--clip-skip 1: works only with prompt weighting none"},
		{"prompt 2 with a1111", []string{"--prompt-weighting", "a1111", "--prompt-2", "x"}, `--prompt-2 "x": a second prompt (prompt_2) works only with prompt weighting none`},
		{"negative prompt 2 with compel", []string{"--prompt-weighting", "compel", "--negative-prompt-2", "x"}, `--negative-prompt-2 "x": a second negative prompt`},
		{"a1111 with refiner", []string{"--prompt-weighting", "a1111", "--model", "b", "--refiner", "r"}, "--prompt-weighting a1111: needs the base's two text encoders"},
		{"bad dtype", []string{"--dtype", "bf16"}, `--dtype "bf16": want f32 or f16`},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--prompt", "x", "--steps", "1", "--quiet", "--out", out}, c.args...)
			code, _, stderr := runCLI(t, args...)
			if code != 2 || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", code, stderr, c.want)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n > 0 {
				t.Errorf("error is not one line: %q", stderr)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("output written despite the error")
			}
		})
	}
	code, _, stderr := runCLI(t, "--help")
	if code != 0 || !strings.Contains(stderr, "--negative-prompt") && !strings.Contains(stderr, "-negative-prompt") {
		t.Errorf("--help: exit %d, %q", code, stderr)
	}
}

// TestCLIRefinerAsModelWithRefiner: --model given a refiner together with
// --refiner used to drop the second model silently.
func TestCLIRefinerAsModelWithRefiner(t *testing.T) {
	ref := golden.Path(t, "small/models/sdxl-small-refiner")
	dir := t.TempDir()
	img := filepath.Join(dir, "in.png")
	writeGoldenPNG(t, make([]float32, 64*64*3), 64, 64, img)
	code, _, stderr := runCLI(t, append(testDevice(), "--model", ref, "--refiner", ref, "--image", img, "--prompt", "x",
		"--steps", "2", "--quiet", "--out", filepath.Join(dir, "o.png"))...)
	if code != 2 || !strings.Contains(stderr, "is a refiner") {
		t.Errorf("exit %d, %q", code, stderr)
	}
}

// TestCLINumImages: --num-images N writes out-1.png ... out-N.png from one
// batch (the library's batch latents, one noise draw), each PNG carrying
// the batch size and its position.
func TestCLINumImages(t *testing.T) {
	dir := t.TempDir()
	out, lat := filepath.Join(dir, "out.png"), filepath.Join(dir, "l.safetensors")
	code, stdout, stderr := runCLI(t, smallArgs(t, "--num-images", "2", "--out", out, "--save-latents", lat, "--negative-prompt", "blurry")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := []string{filepath.Join(dir, "out-1.png"), filepath.Join(dir, "out-2.png")}
	if got := strings.Fields(stdout); !slices.Equal(got, want) {
		t.Errorf("stdout %v, want %v", got, want)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("out.png written besides the numbered files")
	}
	got, shape := readLatentsFile(t, lat)
	if !slices.Equal(shape, []int{2, 4, 8, 8}) {
		t.Fatalf("latents shape %v", shape)
	}
	b := cpu.New()
	m, err := sdxl.LoadModel(b, golden.Path(t, "small/models/sdxl-small-base"), sdxl.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	neg := "blurry"
	res, err := (&sdxl.Pipeline{Backend: b, Base: m}).Generate(context.Background(), sdxl.Request{Prompt: "a lion",
		NegativePrompt: &neg, Seed: 4, Steps: 3, Guidance: 5, Scheduler: "euler", NumImages: 2, OutputLatents: true})
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "CLI batch latents vs library batch", got, res.Latents, 1e-6)
	if bytes.Equal(pngPixels(t, want[0]), pngPixels(t, want[1])) {
		t.Error("the two images are identical")
	}
	for i, p := range want {
		chunks, err := imageio.ReadPNGText(p)
		if err != nil {
			t.Fatal(err)
		}
		params, _ := imageio.Lookup(chunks, imageio.ParametersKey)
		if !strings.Contains(params, fmt.Sprintf("Batch size: 2, Batch pos: %d", i)) || !strings.Contains(params, "Seed: 4") {
			t.Errorf("%s parameters: %q", p, params)
		}
		runJSON, _ := imageio.Lookup(chunks, "sdxl-run")
		var rec runRecord
		if err := json.Unmarshal([]byte(runJSON), &rec); err != nil || rec.Image != i || rec.Flags["num-images"] != "2" {
			t.Errorf("%s run record: image %d, flags %v, %v", p, rec.Image, rec.Flags, err)
		}
	}
}

// TestCLIDenoisingEnd: --denoising-end stops early; as diffusers with
// output_type="pil" the partly denoised latents are decoded into the PNG,
// and --save-latents keeps them (before, the run wrote nothing at all
// unless --save-latents was given).
func TestCLIDenoisingEnd(t *testing.T) {
	dir := t.TempDir()
	out, lat := filepath.Join(dir, "out.png"), filepath.Join(dir, "l.safetensors")
	code, stdout, stderr := runCLI(t, smallArgs(t, "--steps", "6", "--denoising-end", "0.5", "--out", out, "--save-latents", lat)...)
	if code != 0 || strings.TrimSpace(stdout) != out {
		t.Fatalf("exit %d, stdout %q: %s", code, stdout, stderr)
	}
	chunks, err := imageio.ReadPNGText(out)
	if err != nil {
		t.Fatal(err)
	}
	runJSON, _ := imageio.Lookup(chunks, "sdxl-run")
	var rec runRecord
	if err := json.Unmarshal([]byte(runJSON), &rec); err != nil {
		t.Fatal(err)
	}
	for _, ts := range rec.Timesteps {
		if ts < 500 {
			t.Errorf("timestep %v below the 0.5 cutoff", ts)
		}
	}
	if len(rec.Timesteps) == 0 || len(rec.Timesteps) >= 6 || rec.Flags["denoising-end"] != "0.5" {
		t.Errorf("timesteps %v, flags %v", rec.Timesteps, rec.Flags)
	}
	full := filepath.Join(dir, "full.safetensors")
	if code, _, stderr := runCLI(t, smallArgs(t, "--steps", "6", "--out", filepath.Join(dir, "full.png"), "--save-latents", full)...); code != 0 {
		t.Fatal(stderr)
	}
	a, _ := readLatentsFile(t, lat)
	b, _ := readLatentsFile(t, full)
	if e := golden.RelErr(a, b); !(e > 1e-2) {
		t.Errorf("early stop latents equal the full run's (relative difference %.3g)", e)
	}
	// Without --save-latents the PNG alone is the output.
	out2 := filepath.Join(dir, "only.png")
	if code, _, stderr := runCLI(t, smallArgs(t, "--steps", "6", "--denoising-end", "0.5", "--out", out2)...); code != 0 {
		t.Fatal(stderr)
	} else if !bytes.Equal(pngPixels(t, out), pngPixels(t, out2)) {
		t.Error("same run, different PNG")
	}
}

// TestCLIWatermarkRules: the watermark is left off below 256 pixels wide
// (as diffusers), skipped with a note at 256 wide or more but under
// 256*256 pixels (where invisible-watermark fails), and applied otherwise
// — decided on the size the run really has, defaults included (a lone
// --width used to be paired with height 0).
func TestCLIWatermarkRules(t *testing.T) {
	b := cpu.New()
	m, err := sdxl.LoadModel(b, golden.Path(t, "small/models/sdxl-small-base"), sdxl.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := &sdxl.Pipeline{Backend: b, Base: m}
	for _, c := range []struct {
		w, h       int
		note, mark bool
	}{
		{0, 0, false, false},      // 64x64, the model's default
		{512, 0, true, false},     // 512x64: height from the model
		{1024, 0, false, true},    // 1024x64 = 256*256 pixels
		{0, 512, false, false},    // 64x512: too narrow, no note
		{256, 256, false, true},   //
		{248, 1024, false, false}, // narrower than 256
	} {
		var o options
		if err := newFlagSet(&o, &bytes.Buffer{}).Parse([]string{"--width", fmt.Sprint(c.w), "--height", fmt.Sprint(c.h)}); err != nil {
			t.Fatal(err)
		}
		req := o.request(1)
		warnings, err := p.Check(req)
		if err != nil {
			t.Fatal(err)
		}
		note := false
		for _, w := range warnings {
			note = note || strings.Contains(w.Message, "no watermark")
		}
		// The library applies the mark when asked to, the image is at
		// least 256 wide (diffusers' own rule) and no warning said no.
		w, _, err := p.ImageSize(req)
		if err != nil {
			t.Fatal(err)
		}
		applied := req.Watermark && w >= 256 && !note
		if note != c.note || applied != c.mark {
			t.Errorf("--width %d --height %d: note %v, watermark %v; want %v, %v (%v)", c.w, c.h, note, applied, c.note, c.mark, warnings)
		}
	}

	// End to end: the mark is in the PNG.
	dir := t.TempDir()
	on := filepath.Join(dir, "on.png")
	code, _, stderr := runCLI(t, smallArgs(t, "--steps", "1", "--width", "256", "--height", "256", "--out", on)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	r, err := imageio.VerifyWatermark(on)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%dx%d: %d of 48 watermark bits decoded", r.Width, r.Height, r.Matching)
	if r.Matching < 36 {
		t.Errorf("watermark not found: %s", r)
	}
	// The user's way to check it: sdxl-run --verify-watermark prints the
	// library's report.
	code, stdout, stderr := runCLI(t, "--verify-watermark", on)
	if code != 0 || strings.TrimSpace(stdout) != strings.TrimSpace(r.String()) {
		t.Errorf("--verify-watermark: exit %d, %q (stderr %q); want %q", code, stdout, stderr, r.String())
	}
	t.Logf("--verify-watermark: %s", strings.TrimSpace(stdout))
}

// TestCLINotes: flags diffusers would ignore for this run are reported.
func TestCLINotes(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := runCLI(t, smallArgs(t, "--steps", "1", "--negative-prompt-2", "blurry", "--aesthetic-score", "7",
		"--out", filepath.Join(dir, "a.png"))...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"note: a second negative prompt without a negative prompt is ignored by the base", "note: aesthetic scores only condition a refiner"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q: %q", want, stderr)
		}
	}
}

// TestCLIInitNoiseShape: the --init-noise tensor must have the latents'
// shape, not just their number of values (a transposed [1, 4, 16, 8]
// tensor for 128x64 latents [1, 4, 8, 16] used to be accepted).
func TestCLIInitNoiseShape(t *testing.T) {
	dir := t.TempDir()
	noise := filepath.Join(dir, "noise.safetensors")
	if err := safetensors.WriteFile(noise, []safetensors.Tensor{{Name: "latents", Shape: []int{1, 4, 16, 8}, Data: make([]float32, 512)}}, nil); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "x.png")
	code, _, stderr := runCLI(t, smallArgs(t, "--width", "128", "--init-noise", noise, "--out", out)...)
	if code != 2 || !strings.Contains(stderr, "--init-noise: has shape [1 4 16 8]; 1 image(s) of 128x64 need [1 4 8 16]") {
		t.Errorf("exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("output written")
	}
	code, _, stderr = runCLI(t, smallArgs(t, "--height", "128", "--init-noise", noise, "--out", out)...)
	if code != 0 {
		t.Errorf("matching shape: exit %d, %q", code, stderr)
	}
}

// TestCLIImageResize: an --image whose sides are not multiples of 8 is
// resized down to them (diffusers' VaeImageProcessor) with a note, the
// output has that size, and --width/--height must agree with it.
func TestCLIImageResize(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.png")
	px := make([]float32, 50*70*3)
	for i := range px {
		px[i] = float32(i * 7 % 256)
	}
	writeGoldenPNG(t, px, 50, 70, in)
	out := filepath.Join(dir, "out.png")
	code, _, stderr := runCLI(t, smallArgs(t, "--image", in, "--strength", "0.5", "--out", out)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "note: the input image is 70x50; resized to 64x48 (multiples of 8) as diffusers does") {
		t.Errorf("no resize note: %q", stderr)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(f)
	f.Close()
	if err != nil || cfg.Width != 64 || cfg.Height != 48 {
		t.Errorf("output %dx%d, %v; want 64x48", cfg.Width, cfg.Height, err)
	}
	chunks, _ := imageio.ReadPNGText(out)
	if params, _ := imageio.Lookup(chunks, imageio.ParametersKey); !strings.Contains(params, "Denoising strength: 0.5") || !strings.Contains(params, "Size: 64x48") {
		t.Errorf("parameters %q", params)
	}
	code, _, stderr = runCLI(t, smallArgs(t, "--image", in, "--width", "64", "--height", "64", "--out", filepath.Join(dir, "o2.png"))...)
	if code != 2 || !strings.Contains(stderr, "--width: 64x64 differs from the input image's size 64x48") {
		t.Errorf("exit %d, %q", code, stderr)
	}
}

// TestCLILongPromptNote: without weighting, a prompt over 75 tokens is
// truncated as in diffusers, and the user is told.
func TestCLILongPromptNote(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("a red fox in the snow, ", 20)
	code, _, stderr := runCLI(t, smallArgs(t, "--steps", "1", "--prompt", long, "--out", filepath.Join(dir, "x.png"))...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "note: prompt is 140 tokens") {
		t.Errorf("no truncation note: %q", stderr)
	}
	code, _, stderr = runCLI(t, smallArgs(t, "--steps", "1", "--prompt", long, "--prompt-weighting", "compel", "--out", filepath.Join(dir, "y.png"))...)
	if code != 0 || strings.Contains(stderr, "tokens; like diffusers") {
		t.Errorf("compel run: exit %d, %q", code, stderr)
	}
}
