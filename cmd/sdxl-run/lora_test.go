package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
)

// loraArgs turns a golden LoRA scenario into sdxl-run flags, without its
// LoRAs.
func loraArgs(t *testing.T, sc golden.LoRAScenario) []string {
	return append(testDevice(), "--no-watermark", "--quiet", "--model", golden.Path(t, "small/models/sdxl-small-base"),
		"--seed", fmt.Sprint(sc.Seed), "--prompt", sc.Prompt, "--negative-prompt", sc.Negative, "--steps", fmt.Sprint(sc.Steps),
		"--guidance", fmt.Sprint(sc.Guidance), "--scheduler", sc.Scheduler, "--width", fmt.Sprint(sc.Width), "--height", fmt.Sprint(sc.Height))
}

// runRec reads a PNG's sdxl-run record.
func runRec(t *testing.T, path string) runRecord {
	t.Helper()
	m, err := imageio.ReadPNGMetadata(path)
	if err != nil {
		t.Fatal(err)
	}
	var rec runRecord
	if err := json.Unmarshal([]byte(m.Run), &rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestCLILoRAGoldens runs the golden LoRA scenarios as a user types them
// (--lora FILE:SCALE, in each of the three key layouts): final latents
// within 1e-5, the PNG within 1 level, the LoRA as a tag in the prompt and
// in "Lora hashes", the run record listing it. The same LoRA as a prompt
// tag with --lora-dir gives the same latents bit for bit and the same
// hashes.
func TestCLILoRAGoldens(t *testing.T) {
	hash := regexp.MustCompile(`Lora hashes: "(lora_a\.[a-z_]+): ([0-9a-f]{12})"`)
	for name, sc := range golden.LoRAScenarios(t) {
		if len(sc.Loras) == 0 {
			continue
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l := sc.Loras[0]
			file := golden.Path(t, "lora/"+l.File)
			out, lat := filepath.Join(dir, "flag.png"), filepath.Join(dir, "flag.safetensors")
			args := append(loraArgs(t, sc), "--lora", fmt.Sprintf("%s:%g", file, l.Scale), "--out", out, "--save-latents", lat)
			if code, _, stderr := runCLI(t, args...); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			f := golden.Open(t, "lora/"+sc.File)
			want, _ := f.Get("final_latents")
			got, _ := savedLatents(t, lat)
			golden.Check(t, "final_latents", got, want, 1e-5)
			u8, _ := f.Get("image_uint8")
			if d := pngDiff(t, out, u8); d > 1 {
				t.Errorf("PNG differs from image_uint8 by up to %v levels (limit 1)", d)
			}
			stem := strings.TrimSuffix(l.File, ".safetensors")
			params := readParams(t, out)
			if tag := fmt.Sprintf("%s <lora:%s:%g>\n", sc.Prompt, stem, l.Scale); !strings.HasPrefix(params, tag) {
				t.Errorf("parameters %q do not start with %q", params, tag)
			}
			m := hash.FindStringSubmatch(params)
			if m == nil || m[1] != stem {
				t.Fatalf("parameters %q lack the Lora hashes of %s", params, stem)
			}
			rec := runRec(t, out)
			if len(rec.LoRAs) != 1 || rec.LoRAs[0].Path != file || rec.LoRAs[0].Scale != l.Scale || len(rec.LoRAs[0].SHA256) != 64 ||
				!strings.HasPrefix(rec.LoRAs[0].AddnetHash, m[2]) || !strings.HasPrefix(rec.LoRAs[0].Format, "kohya") && rec.LoRAs[0].Format != "diffusers" {
				t.Errorf("run record LoRAs %+v", rec.LoRAs)
			}

			// The tag: same latents, same hash, the prompt as typed.
			tagOut, tagLat := filepath.Join(dir, "tag.png"), filepath.Join(dir, "tag.safetensors")
			tagged := fmt.Sprintf("%s <lora:%s:%g>", sc.Prompt, stem, l.Scale)
			args = append(loraArgs(t, sc), "--prompt", tagged, "--lora-dir", filepath.Dir(file), "--out", tagOut, "--save-latents", tagLat)
			if code, _, stderr := runCLI(t, args...); code != 0 {
				t.Fatalf("tag run: exit %d: %s", code, stderr)
			}
			tl, _ := savedLatents(t, tagLat)
			if d := golden.MaxAbs(tl, got); d != 0 {
				t.Errorf("the tag run differs from the --lora run by %g", d)
			}
			tp := readParams(t, tagOut)
			if !strings.HasPrefix(tp, tagged+"\n") || !strings.Contains(tp, m[0]) {
				t.Errorf("tag run parameters %q", tp)
			}
		})
	}
}

// TestCLILoRAFromPNG: --from-png repeats a run with two --lora files.
func TestCLILoRAFromPNG(t *testing.T) {
	sc := golden.LoRAScenarios(t)["lora_a_kohya_s0p6"]
	dir := t.TempDir()
	out, lat := filepath.Join(dir, "a.png"), filepath.Join(dir, "a.safetensors")
	args := append(loraArgs(t, sc), "--lora", golden.Path(t, "lora/lora_a.kohya.safetensors")+":0.6",
		"--lora", golden.Path(t, "lora/lora_a.diffusers.safetensors")+":-0.25", "--steps", "3", "--out", out, "--save-latents", lat)
	if code, _, stderr := runCLI(t, args...); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	out2 := filepath.Join(dir, "b.png")
	a, _ := savedLatents(t, lat)
	if d := golden.MaxAbs(a, repeatRun(t, out, out2)); d != 0 {
		t.Errorf("the repeated run differs by %g", d)
	}
	if n := len(runRec(t, out2).LoRAs); n != 2 {
		t.Errorf("the repeated run applied %d LoRAs", n)
	}
}

// TestCLILoRAErrors: bad LoRAs exit 2 naming the file (and the key), and
// write nothing.
func TestCLILoRAErrors(t *testing.T) {
	sc := golden.LoRAScenarios(t)["lora_none"]
	dir := t.TempDir()
	good := golden.Path(t, "lora/lora_a.kohya.safetensors")
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.safetensors")
	if err := os.WriteFile(cut, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	// An SD 1.5-style file: its keys rename the golden's text-encoder keys.
	sd15 := filepath.Join(dir, "sd15.safetensors")
	if err := os.WriteFile(sd15, []byte(strings.ReplaceAll(string(data), "lora_te1_", "lora_te_x")), 0o644); err != nil {
		t.Fatal(err)
	}
	notLoRA := golden.Path(t, "small/e2e_astro_euler.safetensors")
	out := filepath.Join(dir, "out.png")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--lora", filepath.Join(dir, "missing.safetensors")}, "missing.safetensors"},
		{[]string{"--lora", cut}, cut + ": tensor"},
		{[]string{"--lora", sd15}, "SD 1.x"},
		{[]string{"--lora", notLoRA + ":0.5"}, "not a LoRA"},
		{[]string{"--lora", good + ":inf"}, "finite"},
		{[]string{"--lora-dir", good}, "--lora-dir " + good + ": not a folder"},
		{[]string{"--lora-dir", dir, "--prompt", "x <lora:nothere:1>"}, "--prompt: <lora:nothere:1>: LoRA \"nothere\": no file"},
	} {
		args := append(append(loraArgs(t, sc), "--steps", "2", "--out", out), c.args...)
		code, _, stderr := runCLI(t, args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want exit 2 with %q", c.args, code, stderr, c.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("%v: wrote %s", c.args, out)
		}
	}
	// The base's LoRA on the refiner alone: its UNet does not fit.
	refine := append(testDevice(), "--quiet", "--refiner", golden.Path(t, "small/models/sdxl-small-refiner"), "--image",
		golden.Path(t, "controlnet/input_astro_euler.png"), "--prompt", "x", "--steps", "10", "--lora", good, "--out", out)
	if code, _, stderr := runCLI(t, refine...); code != 2 || !strings.Contains(stderr, "--lora: refiner model") || !strings.Contains(stderr, "lora_unet_") {
		t.Errorf("base LoRA on the refiner: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatalf("wrote %s", out)
	}
	// A tag without --lora-dir stays text, with a note.
	args := append(loraArgs(t, sc), "--steps", "2", "--out", out, "--prompt", "x <lora:lora_a.kohya:1>")
	args = slicesWithout(args, "--quiet")
	if code, _, stderr := runCLI(t, args...); code != 0 || !strings.Contains(stderr, "note: the prompt's <lora:...> tags are left in the text") {
		t.Errorf("tag without --lora-dir: exit %d, stderr %q", code, stderr)
	}
}

// repeatRun runs sdxl-run --from-png png (writing out, with extra flags)
// and returns its final latents.
func repeatRun(t *testing.T, png, out string, extra ...string) []float32 {
	t.Helper()
	lat := strings.TrimSuffix(out, filepath.Ext(out)) + ".safetensors"
	args := append(append(testDevice(), "--quiet", "--from-png", png, "--out", out, "--save-latents", lat), extra...)
	if code, _, stderr := runCLI(t, args...); code != 0 {
		t.Fatalf("--from-png %v: exit %d: %s", extra, code, stderr)
	}
	l, _ := savedLatents(t, lat)
	return l
}

func slicesWithout(s []string, drop string) []string {
	var out []string
	for _, v := range s {
		if v != drop {
			out = append(out, v)
		}
	}
	return out
}
