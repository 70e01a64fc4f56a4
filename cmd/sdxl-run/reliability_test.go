package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/internal/regfile"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/sdxl/bundled"
)

// copyModel makes a copy of a golden model folder that a test may damage:
// JSON files are copied, weight files linked.
func copyModel(t *testing.T, rel string) string {
	t.Helper()
	src := golden.Path(t, rel)
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(src, p)
		q := filepath.Join(dst, r)
		switch {
		case info.IsDir():
			return os.MkdirAll(q, 0o755)
		case strings.HasSuffix(p, ".safetensors"):
			return os.Symlink(p, q)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(q, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// setJSON sets key of the JSON object in file to the raw JSON value.
func setJSON(t *testing.T, file, key, value string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	m[key] = json.RawMessage(value)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	// Bare NaN/Infinity literals, as Python's json writes them.
	out = []byte(strings.ReplaceAll(string(out), `"@NaN"`, "NaN"))
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// rewriteTensor replaces the weight file at path (a link into the goldens)
// by a copy in which tensor name has dtype dt and the bytes edit gives.
func rewriteTensor(t *testing.T, path, name string, dt safetensors.DType, edit func([]byte)) {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.RawTensor
	for _, n := range f.Names() {
		in, _ := f.Info(n)
		raw, err := f.Raw(n, nil)
		if err != nil {
			t.Fatal(err)
		}
		raw = append([]byte(nil), raw...)
		d := in.DType
		if n == name {
			d = dt
			edit(raw)
		}
		ts = append(ts, safetensors.RawTensor{Name: n, DType: d, Shape: in.Shape, Data: raw})
	}
	f.Close()
	os.Remove(path)
	if err := safetensors.WriteRawFile(path, ts, nil); err != nil {
		t.Fatal(err)
	}
}

// pngOfSize writes the header of a PNG declaring w x h pixels: all that
// image.DecodeConfig reads (an image bomb's first bytes).
func pngOfSize(t *testing.T, path string, w, h uint32) {
	t.Helper()
	ihdr := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, w), h)
	chunk := append([]byte("IHDR"), append(ihdr, 8, 2, 0, 0, 0)...)
	b := append([]byte("\x89PNG\r\n\x1a\n"), binary.BigEndian.AppendUint32(nil, 13)...)
	b = append(b, chunk...)
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(chunk))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// reliabilityCase is one bad input of issue 11 and what the CLI must say.
type reliabilityCase struct {
	name string
	args []string
	code int
	want []string // substrings of stderr
}

// reliabilityCases builds the damaged inputs in dir (the bundled model is
// the default --model).
func reliabilityCases(t *testing.T, dir string) []reliabilityCase {
	small := "small/models/sdxl-small-base"
	negLayers := copyModel(t, small)
	setJSON(t, filepath.Join(negLayers, "unet/config.json"), "layers_per_block", "[2, -1, 2]")
	hugeTE := copyModel(t, small)
	setJSON(t, filepath.Join(hugeTE, "text_encoder/config.json"), "num_hidden_layers", "1000000000")
	betas := copyModel(t, small)
	setJSON(t, filepath.Join(betas, "scheduler/scheduler_config.json"), "beta_start", "2")
	setJSON(t, filepath.Join(betas, "scheduler/scheduler_config.json"), "beta_end", "3")
	nanBeta := copyModel(t, small)
	setJSON(t, filepath.Join(nanBeta, "scheduler/scheduler_config.json"), "beta_end", `"@NaN"`)
	fifo := copyModel(t, small)
	fifoWeights := filepath.Join(fifo, "unet/diffusion_pytorch_model.safetensors")
	os.Remove(fifoWeights)
	if err := regfile.MakeFIFO(fifoWeights); err != nil {
		t.Skipf("no named pipes: %v", err)
	}
	loop := copyModel(t, small)
	loopWeights := filepath.Join(loop, "unet/diffusion_pytorch_model.safetensors")
	os.Remove(loopWeights)
	os.Symlink(loopWeights, loopWeights)
	i16 := copyModel(t, small)
	rewriteTensor(t, filepath.Join(i16, "unet/diffusion_pytorch_model.safetensors"), "conv_out.bias", safetensors.I16, func([]byte) {})
	nanWeight := copyModel(t, small)
	rewriteTensor(t, filepath.Join(nanWeight, "unet/diffusion_pytorch_model.safetensors"), "conv_out.bias", safetensors.F16,
		func(b []byte) { binary.LittleEndian.PutUint16(b, 0x7E00) }) // a half-precision NaN
	nanNoise := filepath.Join(dir, "nan-noise.safetensors")
	noise := make([]float32, 4*8*8)
	noise[3] = float32(math.NaN())
	if err := safetensors.WriteFile(nanNoise, []safetensors.Tensor{{Name: "latents", Shape: []int{1, 4, 8, 8}, Data: noise}}, nil); err != nil {
		t.Fatal(err)
	}
	bomb, big := filepath.Join(dir, "bomb.png"), filepath.Join(dir, "big.png")
	pngOfSize(t, bomb, 16384, 16384)
	pngOfSize(t, big, 8192, 4096)
	fifoOut := filepath.Join(dir, "fifo.png")
	regfile.MakeFIFO(fifoOut)
	same := filepath.Join(dir, "s.png")
	img := golden.Path(t, "inpaint/input_astro_euler.png")
	return []reliabilityCase{
		// Item 1: only regular files are replaced.
		{"out /dev/null", []string{"--out", "/dev/null", "--overwrite"}, 2, []string{"--out: cannot write /dev/null: it is a character device, and only a regular file is ever replaced"}},
		{"out FIFO", []string{"--out", fifoOut, "--overwrite"}, 2, []string{"fifo.png: it is a named pipe (FIFO)"}},
		// Item 2: config values are validated before use.
		{"layers_per_block [2,-1,2]", []string{"--model", negLayers}, 1, []string{"unet/config.json", "layers_per_block[1] = -1"}},
		{"layers_per_block as refiner", []string{"--refiner", negLayers, "--image", img}, 1, []string{"layers_per_block[1] = -1"}},
		{"bench --model bad config", []string{"bench", "--device", "cpu", "--model", negLayers}, 1, []string{"layers_per_block[1] = -1"}},
		// Item 3: weight files must be regular files.
		{"FIFO weights", []string{"--model", fifo}, 1, []string{"diffusion_pytorch_model.safetensors is a named pipe (FIFO), not a regular file"}},
		{"weights link loop", []string{"--model", loop}, 1, []string{"diffusion_pytorch_model.safetensors is a symbolic link that cannot be followed"}},
		// Item 4: no out-of-memory crash; refused at once.
		{"65536x65536", []string{"--width", "65536", "--height", "65536"}, 2, []string{"--width", "over this engine's limit", "fits"}},
		{"16384x16384", []string{"--width", "16384", "--height", "16384"}, 2, []string{"--width", "16384x16384"}},
		{"100000 images", []string{"--num-images", "100000"}, 2, []string{"--num-images 100000", "64 images"}},
		{"bench --size 65536", []string{"bench", "--device", "cpu", "--random-weights", "--size", "65536"}, 2, []string{"--size 65536", "over bench's limit"}},
		{"16384x16384 PNG", []string{"--image", bomb}, 2, []string{"--image", "bomb.png", "image size 16384x16384", "over the limit of 16777216 pixels"}},
		{"8192x4096 PNG", []string{"--image", big}, 2, []string{"--image", "8192x4096"}},
		{"text encoder of 1e9 layers", []string{"--model", hugeTE}, 1, []string{"text_encoder/config.json", "num_hidden_layers = 1000000000, want 1 to 256"}},
		// Item 5: errors that came after the work come before it.
		{"invalid UTF-8 prompt", []string{"--prompt", "a \xff cat"}, 2, []string{"--prompt: is not valid UTF-8 text"}},
		{"invalid UTF-8 negative", []string{"--negative-prompt", "\xc3"}, 2, []string{"--negative-prompt: is not valid UTF-8"}},
		{"--out = --save-latents", []string{"--out", same, "--save-latents", same}, 2, []string{"--save-latents " + same + ": the same file as --out"}},
		{"--out = --dump-to", []string{"--out", same, "--dump", "mid_block", "--dump-to", same}, 2, []string{"--dump-to " + same + ": the same file as --out"}},
		{"strength leaves no step", []string{"--image", img, "--strength", "0.3", "--steps", "2"}, 2, []string{"--strength 0.3: with 2 steps leaves no denoising step"}},
		// Item 6: no silent black images.
		{"NaN weight", []string{"--model", nanWeight, "--steps", "2"}, 1, []string{"base step 1 of 2: the UNet output holds NaN", "NaN or infinite weights"}},
		{"betas 2..3", []string{"--model", betas}, 1, []string{"beta_start = 2", "between 0 and 1"}},
		{"NaN beta_end", []string{"--model", nanBeta}, 1, []string{"beta_end = NaN"}},
		{"NaN init noise", []string{"--init-noise", nanNoise}, 2, []string{"--init-noise: value 3 is NaN"}},
		{"compel 1000 +", []string{"--prompt-weighting", "compel", "--prompt", "cat" + strings.Repeat("+", 1000)}, 2, []string{"--prompt:", `fragment "cat" has weight`, "all-black image"}},
		// Item 7: exit codes and messages.
		{"verify-watermark empty", []string{"--verify-watermark", ""}, 2, []string{"--verify-watermark: give the image file"}},
		{"dump matches nothing", []string{"--dump", "down_blocks.9.**", "--dump-to", filepath.Join(dir, "d.safetensors")}, 2, []string{`--dump "down_blocks.9.**": matches no module of the UNet`}},
		{"bench extra argument", []string{"bench", "--random-weights", "extra"}, 2, []string{`unexpected argument "extra"`}},
		{"integer weights", []string{"--model", i16}, 1, []string{`tensor "conv_out.bias" is stored as I16`}},
		{"init noise missing", []string{"--init-noise", filepath.Join(dir, "none.safetensors")}, 2, []string{"--init-noise", "none.safetensors: no such file"}},
	}
}

// TestCLIReliability runs every bad input of issue 11: each exits with
// the expected status and a one-line error naming the file, flag or value,
// within a second or two (before any long computation: nothing is
// allocated beyond the models), and writes or replaces nothing.
func TestCLIReliability(t *testing.T) {
	if !bundled.Available() {
		t.Skip("built without the bundled model (nobundle)")
	}
	dir := t.TempDir()
	cases := reliabilityCases(t, dir)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, "out.png")
			args := c.args
			if args[0] != "bench" {
				args = append([]string{"--prompt", "x", "--steps", "1", "--quiet", "--no-watermark"}, c.args...)
				if !strings.Contains(strings.Join(c.args, " "), "--out") {
					args = append(args, "--out", out)
				}
			}
			start := time.Now()
			code, _, stderr := runCLI(t, args...)
			took := time.Since(start)
			ok := code == c.code
			for _, w := range c.want {
				ok = ok && strings.Contains(stderr, w)
			}
			if !ok {
				t.Errorf("exit %d, stderr %q\nwant exit %d and %q", code, stderr, c.code, c.want)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n > 1 {
				t.Errorf("error is not one line: %q", stderr)
			}
			t.Logf("exit %d after %v: %s", code, took.Round(time.Millisecond), strings.TrimSpace(stderr))
			for _, p := range []string{out, filepath.Join(dir, "s.png"), filepath.Join(dir, "d.safetensors")} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s written despite the error", p)
				}
			}
		})
	}
	if st, err := os.Stat("/dev/null"); runtime.GOOS != "windows" && (err != nil || st.Mode()&os.ModeCharDevice == 0) {
		t.Errorf("/dev/null is no longer a device: %v %v", st, err)
	}
	assertOnlyFiles(t, dir, "big.png", "bomb.png", "fifo.png", "nan-noise.safetensors")
}

// TestCLIMemoryRefusal: a request whose memory estimate is over the
// budget (here the Go memory limit, as GOMEMLIMIT would set it) is refused
// before any work with what fits.
func TestCLIMemoryRefusal(t *testing.T) {
	if !bundled.Available() {
		t.Skip("built without the bundled model (nobundle)")
	}
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(1 << 30))
	out := filepath.Join(t.TempDir(), "x.png")
	code, _, stderr := runCLI(t, "--prompt", "x", "--steps", "1", "--quiet", "--width", "4096", "--height", "4096", "--out", out)
	if code != 2 || !strings.Contains(stderr, "--width: 4096x4096, 1 image(s) needs about") || !strings.Contains(stderr, "fits with 1 image") {
		t.Errorf("exit %d, %q", code, stderr)
	}
	t.Log(strings.TrimSpace(stderr))
	if _, err := os.Stat(out); err == nil {
		t.Error("output written")
	}
}

// TestCLIInternalError: a panic becomes "internal error", exit 3, with a
// request to report it.
func TestCLIInternalError(t *testing.T) {
	if !bundled.Available() {
		t.Skip("built without the bundled model (nobundle)")
	}
	ctx := context.WithValue(context.Background(), stageHookKey{}, func(stage string) {
		if stage == "text" {
			panic("test panic")
		}
	})
	var o, e strings.Builder
	code := runMain(ctx, []string{"--prompt", "x", "--steps", "1", "--quiet", "--out", filepath.Join(t.TempDir(), "x.png")}, &o, &e)
	if code != 3 || !strings.Contains(e.String(), "sdxl-run: internal error: test panic") || !strings.Contains(e.String(), "please report it") {
		t.Errorf("exit %d, %q", code, e.String())
	}
}

func assertOnlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}
