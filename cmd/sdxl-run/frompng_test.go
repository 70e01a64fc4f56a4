package main

import (
	"bytes"
	"encoding/json"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sdxl/bundled"
	"github.com/sdxl-go/sdxl/sdxl/hashes"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/sdxl/infotext"
)

func testRGBA() *image.RGBA { return image.NewRGBA(image.Rect(0, 0, 8, 8)) }

// parametersOnly rewrites a PNG keeping only its "parameters" chunk, as an
// image from A1111 or Forge carries.
func parametersOnly(t *testing.T, src, dst string) string {
	t.Helper()
	m, err := imageio.ReadPNGMetadata(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := imageio.WritePNG(dst, decodePNG(t, src), []imageio.TextChunk{{Key: imageio.ParametersKey, Value: m.Parameters}}, false); err != nil {
		t.Fatal(err)
	}
	return m.Parameters
}

func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func readParams(t *testing.T, path string) string {
	t.Helper()
	m, err := imageio.ReadPNGMetadata(path)
	if err != nil {
		t.Fatal(err)
	}
	return m.Parameters
}

// TestFromPNGBundled is the acceptance check: --from-png repeats a run of
// the bundled model bit for bit, from our JSON chunk and from the A1111
// parameters alone; command-line flags override the PNG's.
func TestFromPNGBundled(t *testing.T) {
	if !bundled.Available() {
		t.Skip("built without the bundled model (nobundle)")
	}
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	first := filepath.Join(dir, "out.png")
	code, _, stderr := runCLI(t, append(testDevice(), "--prompt", "a lion, at dusk: golden light", "--negative-prompt", "blurry",
		"--steps", "3", "--seed", "5", "--guidance", "6.5", "--quiet", "--out", first)...)
	if code != 0 {
		t.Fatalf("first run: exit %d: %s", code, stderr)
	}
	params := readParams(t, first)
	t.Logf("parameters:\n%s", params)
	p, err := infotext.Parse(params)
	if err != nil || p.Model != bundled.Name || len(p.ModelHash) != 10 || p.Sampler != "Euler" || p.CFGScale != 6.5 || p.NegativePrompt != "blurry" {
		t.Errorf("parameters read back as %+v, %v", p, err)
	}

	again := filepath.Join(dir, "again.png")
	if code, _, stderr := runCLI(t, append(testDevice(), "--from-png", first, "--out", again)...); code != 0 {
		t.Fatalf("--from-png: exit %d: %s", code, stderr)
	}
	if !bytes.Equal(pngPixels(t, first), pngPixels(t, again)) {
		t.Error("--from-png (sdxl-run chunk) did not reproduce the image")
	}
	if got := readParams(t, again); got != params {
		t.Errorf("parameters differ:\n%s\n%s", got, params)
	}

	a1111 := filepath.Join(dir, "a1111.png")
	parametersOnly(t, first, a1111)
	again2 := filepath.Join(dir, "again2.png")
	if code, _, stderr := runCLI(t, append(testDevice(), "--from-png="+a1111, "--out", again2)...); code != 0 {
		t.Fatalf("--from-png (parameters only): exit %d: %s", code, stderr)
	}
	if !bytes.Equal(pngPixels(t, first), pngPixels(t, again2)) {
		t.Error("--from-png (parameters chunk only) did not reproduce the image")
	}

	// The command line wins.
	other := filepath.Join(dir, "other.png")
	if code, _, stderr := runCLI(t, append(testDevice(), "--seed", "6", "--from-png", a1111, "--out", other)...); code != 0 {
		t.Fatalf("--from-png with --seed: exit %d: %s", code, stderr)
	}
	if got := readParams(t, other); !strings.Contains(got, "Seed: 6,") || !strings.Contains(got, "CFG scale: 6.5,") {
		t.Errorf("override: %s", got)
	}
	if bytes.Equal(pngPixels(t, first), pngPixels(t, other)) {
		t.Error("--seed 6 gave the same image")
	}

	// The model files were hashed into the cache by the first run: a new
	// Cache (a new process) finds them without reading them.
	var rec runRecord
	m, _ := imageio.ReadPNGMetadata(first)
	if err := json.Unmarshal([]byte(m.Run), &rec); err != nil || len(rec.Models) != 1 || !strings.HasPrefix(rec.Models[0].HashOf, filepath.Join(rec.Models[0].Path, "unet")) {
		t.Fatalf("run record models: %+v, %v", rec.Models, err)
	}
	c := hashes.Default()
	for _, f := range rec.Files {
		if sum, err := c.SHA256(t.Context(), f.Path); err != nil || sum != f.SHA256 {
			t.Errorf("%s: %s, %v; recorded %s", f.Path, sum, err, f.SHA256)
		}
	}
	if c.Hashed() != 0 {
		t.Errorf("hashed %d files again", c.Hashed())
	}
}

// TestFromPNGParametersSmall: a parameters-only PNG with Karras, clip skip
// and the CUDA noise stream repeats bit for bit once --model is given.
func TestFromPNGParametersSmall(t *testing.T) {
	dir := t.TempDir()
	first := filepath.Join(dir, "out.png")
	code, _, stderr := runCLI(t, smallArgs(t, "--scheduler", "dpmpp_2m", "--karras", "--clip-skip", "1", "--rng", "cuda", "--out", first)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	a1111 := filepath.Join(dir, "a1111.png")
	params := parametersOnly(t, first, a1111)
	for _, want := range []string{"Sampler: DPM++ 2M, Schedule type: Karras", "Clip skip: 3", "Model: sdxl-small-base,"} {
		if !strings.Contains(params, want) || strings.Contains(params, "RNG:") {
			t.Errorf("parameters %q: want %q and no RNG (cuda is A1111's default GPU source)", params, want)
		}
	}
	// A model other than the bundled one (the golden small model is the
	// bundled model) must be given.
	other := filepath.Join(dir, "other.png")
	imageio.WritePNG(other, testRGBA(), []imageio.TextChunk{{Key: imageio.ParametersKey,
		Value: strings.Replace(params, "Model: sdxl-small-base", "Model: sd_xl_base_1.0", 1)}}, false)
	code, _, stderr = runCLI(t, "--from-png", other, "--out", filepath.Join(dir, "x.png"))
	if code != 2 || !strings.Contains(stderr, `was made with model "sd_xl_base_1.0" (model hash `) || !strings.Contains(stderr, "--model PATH") {
		t.Errorf("without --model: exit %d: %s", code, stderr)
	}
	again := filepath.Join(dir, "again.png")
	args := append(testDevice(), "--model", golden.Path(t, "small/models/sdxl-small-base"), "--quiet", "--from-png", a1111, "--out", again)
	if code, _, stderr := runCLI(t, args...); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !bytes.Equal(pngPixels(t, first), pngPixels(t, again)) {
		t.Error("--from-png (parameters only) did not reproduce the image")
	}
	if got := readParams(t, again); got != params {
		t.Errorf("parameters differ:\n%s\n%s", got, params)
	}
}

func TestFromPNGErrors(t *testing.T) {
	dir := t.TempDir()
	img := func(name, params string) string {
		p := filepath.Join(dir, name)
		if err := imageio.WritePNG(p, testRGBA(), []imageio.TextChunk{{Key: imageio.ParametersKey, Value: params}}, false); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bare := filepath.Join(dir, "bare.png")
	imageio.WritePNG(bare, testRGBA(), nil, false)
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"missing file", []string{"--from-png", filepath.Join(dir, "nope.png")}, "nope.png"},
		{"no metadata", []string{"--from-png", bare}, `has neither an "sdxl-run" nor a "parameters" text chunk`},
		{"img2img", []string{"--model", "m", "--from-png", img("i2i.png", "cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64, Model: sdxl-small-base, Denoising strength: 0.4")},
			"was made by img2img (Denoising strength 0.4) from an input image a PNG does not hold; give it with --image PATH"},
		{"refiner", []string{"--from-png", img("ref.png", "cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Model: sdxl-small-base, Refiner: sd_xl_refiner_1.0 [7440042bbd], Refiner switch at: 0.8")},
			"was made with refiner sd_xl_refiner_1.0 [7440042bbd]; give it with --refiner PATH"},
		{"unknown sampler", []string{"--from-png", img("s.png", "cat\nSteps: 20, Sampler: DPM++ SDE, CFG scale: 7, Seed: 1, Model: sdxl-small-base")},
			`sampler "DPM++ SDE" has no equivalent here`},
		{"bad number", []string{"--from-png", img("n.png", "cat\nSteps: twenty, Sampler: Euler, CFG scale: 7, Seed: 1")}, `"Steps": "twenty" is not an integer`},
		{"no model named", []string{"--from-png", img("nm.png", "cat\nSteps: 2, Sampler: Euler, CFG scale: 7, Seed: 1")}, "does not name its model"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, append(c.args, "--out", filepath.Join(dir, "out.png"))...)
			if code != 2 || !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", code, stderr, c.want)
			}
		})
	}
}

// TestScanArgs: --from-png is found only where the flag package would
// read it, and values that look like flags stay values.
func TestScanArgs(t *testing.T) {
	var o options
	fs := newFlagSet(&o, &bytes.Buffer{})
	for _, c := range []struct {
		args       []string
		path, rest string
	}{
		{[]string{"--prompt", "--from-png", "--steps", "3"}, "", "--prompt --from-png --steps 3"},
		{[]string{"--karras", "--from-png", "a.png", "--seed=4"}, "a.png", "--karras --seed=4"},
		{[]string{"-from-png=b.png", "--", "--from-png", "c.png"}, "b.png", "-- --from-png c.png"},
		{[]string{"--quiet", "stray", "--from-png", "d.png"}, "", "--quiet stray --from-png d.png"},
	} {
		path, rest, _ := scanArgs(fs, c.args)
		if path != c.path || strings.Join(rest, " ") != c.rest {
			t.Errorf("scanArgs(%q) = %q, %q; want %q, %q", c.args, path, rest, c.path, c.rest)
		}
	}
}

// TestEnsembleParameters: a single-file base's Model hash is the file's,
// a refiner folder's is its UNet file's, written as A1111's short title;
// the parameters alone repeat the ensemble once the files are given.
func TestEnsembleParameters(t *testing.T) {
	dir := t.TempDir()
	base := golden.Path(t, "small/models/sdxl-small-base.safetensors")
	cfg := golden.Path(t, "small/models/sdxl-small-base")
	ref := golden.Path(t, "small/models/sdxl-small-refiner")
	first := filepath.Join(dir, "out.png")
	files := []string{"--model", base, "--config", cfg, "--refiner", ref}
	code, _, stderr := runCLI(t, append(append(testDevice(), files...), "--prompt", "a lion", "--seed", "4", "--steps", "4",
		"--high-noise-frac", "0.75", "--quiet", "--out", first)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	c := hashes.Open("")
	baseSum, _ := c.SHA256(t.Context(), base)
	refSum, _ := c.SHA256(t.Context(), filepath.Join(ref, "unet", "diffusion_pytorch_model.safetensors"))
	a1111 := filepath.Join(dir, "a1111.png")
	params := parametersOnly(t, first, a1111)
	want := "Model hash: " + baseSum[:10] + ", Model: sdxl-small-base, RNG: CPU, Refiner: sdxl-small-refiner [" + refSum[:10] + "], Refiner switch at: 0.75, Version: "
	if !strings.Contains(params, want) {
		t.Errorf("parameters:\n%s\nwant %q", params, want)
	}
	again := filepath.Join(dir, "again.png")
	if code, _, stderr := runCLI(t, append(append(testDevice(), files...), "--quiet", "--from-png", a1111, "--out", again)...); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !bytes.Equal(pngPixels(t, first), pngPixels(t, again)) {
		t.Error("--from-png did not reproduce the ensemble")
	}
}
