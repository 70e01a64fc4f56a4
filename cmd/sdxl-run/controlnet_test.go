package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
)

// controlNetArgs turns a golden ControlNet scenario into sdxl-run flags.
func controlNetArgs(t *testing.T, sc golden.ControlNetScenario) []string {
	args := append(testDevice(), "--no-watermark", "--quiet", "--model", golden.Path(t, "small/models/sdxl-small-base"),
		"--seed", fmt.Sprint(sc.Seed), "--prompt", sc.Prompt, "--steps", fmt.Sprint(sc.Steps),
		"--guidance", fmt.Sprint(sc.Guidance), "--scheduler", sc.Scheduler,
		"--controlnet", golden.Path(t, "controlnet/models/sdxl-small-controlnet"),
		"--control-image", golden.Path(t, "controlnet/"+sc.ControlPNG),
		"--control-scale", fmt.Sprint(sc.Scale), "--control-start", fmt.Sprint(sc.Start), "--control-end", fmt.Sprint(sc.End))
	if sc.Negative != "" {
		args = append(args, "--negative-prompt", sc.Negative)
	}
	if sc.Kind == "img2img" {
		return append(args, "--image", golden.Path(t, "controlnet/"+sc.InitImagePNG), "--strength", fmt.Sprint(sc.Strength))
	}
	return append(args, "--width", fmt.Sprint(sc.Width), "--height", fmt.Sprint(sc.Height))
}

// TestCLIControlNetGoldens runs the diffusers ControlNet scenarios (scale
// 1, scale 0.5 in the window (0.2, 0.8), img2img) as a user types them:
// final latents within 1e-5, the PNG within 1 level, and the ControlNet
// in the PNG's parameters.
func TestCLIControlNetGoldens(t *testing.T) {
	for name, sc := range golden.ControlNetScenarios(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			out, lat := filepath.Join(dir, "out.png"), filepath.Join(dir, "latents.safetensors")
			args := append(controlNetArgs(t, sc), "--out", out, "--save-latents", lat)
			if code, _, stderr := runCLI(t, args...); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			f := golden.Open(t, "controlnet/"+sc.File)
			want, _ := f.Get("final_latents")
			got, _ := savedLatents(t, lat)
			golden.Check(t, "final_latents", got, want, 1e-5)
			u8, _ := f.Get("image_uint8")
			if d := pngDiff(t, out, u8); d > 1 {
				t.Errorf("PNG differs from image_uint8 by up to %v levels (limit 1)", d)
			} else {
				t.Logf("PNG max abs diff %v levels", d)
			}
			chunks, err := imageio.ReadPNGText(out)
			if err != nil {
				t.Fatal(err)
			}
			params, _ := imageio.Lookup(chunks, imageio.ParametersKey)
			if want := fmt.Sprintf(`ControlNet 0: "Module: none, Model: sdxl-small-controlnet, Weight: %g, Guidance Start: %g, Guidance End: %g"`, sc.Scale, sc.Start, sc.End); !strings.Contains(params, want) {
				t.Errorf("parameters %q lack %q", params, want)
			}
		})
	}
}

// TestCLIControlNetErrors: ControlNet mistakes are usage errors naming the
// flag, found before anything runs.
func TestCLIControlNetErrors(t *testing.T) {
	cn := golden.Path(t, "controlnet/models/sdxl-small-controlnet")
	img := golden.Path(t, "controlnet/control_lines.png")
	base := append(testDevice(), "--quiet", "--prompt", "x", "--steps", "2", "--model", golden.Path(t, "small/models/sdxl-small-base"),
		"--out", filepath.Join(t.TempDir(), "o.png"))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--control-image", img}, "after the --controlnet"},
		{[]string{"--controlnet", cn}, "--controlnet " + cn + ": give its --control-image"},
		{[]string{"--controlnet", cn, "--control-image", img, "--control-scale", "20"}, "scale 20: must be in [0, 10]"},
		{[]string{"--controlnet", cn, "--control-image", img, "--control-start", "0.9", "--control-end", "0.5"}, "start 0.9 and end 0.5"},
		{[]string{"--controlnet", cn, "--control-image", img, "--control-scale", "1", "--control-scale", "2"}, "given twice"},
		{[]string{"--controlnet", cn, "--control-image", img, "--guidance-rescale", "0.5"}, "--guidance-rescale 0.5: is not an option"},
		{[]string{"--guess-mode"}, "--guess-mode applies to ControlNets"},
		{[]string{"--controlnet", cn, "--control-image", img, "--image", img, "--mask", img}, "inpainting with ControlNets"},
		{[]string{"--controlnet", cn, "--control-image", "/nonexistent.png"}, "--control-image /nonexistent.png"},
		{[]string{"--controlnet", filepath.Join(t.TempDir(), "none"), "--control-image", img}, "--controlnet"},
		{[]string{"--controlnet", cn, "--control-image", img, "--refiner", golden.Path(t, "small/models/sdxl-small-refiner")}, "--controlnet: diffusers' ControlNet pipelines run the base alone"},
	} {
		code, _, stderr := runCLI(t, append(append([]string(nil), base...), c.args...)...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want exit 2 with %q", c.args, code, stderr, c.want)
		}
	}
}

// TestCLIControlNetFromPNG: --from-png repeats a run with two ControlNet
// groups exactly, and a --controlnet on the command line replaces them.
func TestCLIControlNetFromPNG(t *testing.T) {
	sc := golden.ControlNetScenarios(t)["cn_lines_s0p5_window_dpmpp"]
	dir := t.TempDir()
	out, lat := filepath.Join(dir, "a.png"), filepath.Join(dir, "a.safetensors")
	cn, img := golden.Path(t, "controlnet/models/sdxl-small-controlnet"), golden.Path(t, "controlnet/"+sc.ControlPNG)
	args := append(controlNetArgs(t, sc), "--controlnet", cn, "--control-image", img, "--control-scale", "0.25", "--out", out, "--save-latents", lat)
	if code, _, stderr := runCLI(t, args...); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	a, _ := savedLatents(t, lat)
	if d := golden.MaxAbs(a, repeatRun(t, out, filepath.Join(dir, "b.png"))); d != 0 {
		t.Errorf("the repeated run differs by %g", d)
	}
	c := repeatRun(t, out, filepath.Join(dir, "c.png"),
		"--controlnet", cn, "--control-image", img, "--control-scale", "0.75", "--control-start", "0.2", "--control-end", "0.8")
	if golden.MaxAbs(c, a) == 0 {
		t.Error("the replacing --controlnet group had no effect")
	}
}

// TestCLIControlNetOffload: with --offload the ControlNet's weights visit
// the device with the UNet's, and the run still matches diffusers.
func TestCLIControlNetOffload(t *testing.T) {
	sc := golden.ControlNetScenarios(t)["cn_lines_euler"]
	dir := t.TempDir()
	out, lat := filepath.Join(dir, "out.png"), filepath.Join(dir, "l.safetensors")
	if code, _, stderr := runCLI(t, append(controlNetArgs(t, sc), "--offload", "--out", out, "--save-latents", lat)...); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want, _ := golden.Open(t, "controlnet/"+sc.File).Get("final_latents")
	got, _ := savedLatents(t, lat)
	golden.Check(t, "final_latents with --offload", got, want, 1e-5)
}
