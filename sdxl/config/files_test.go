package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/internal/regfile"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/sdxl/config"
)

// vaeFolder makes a lone VAE folder with the small golden config and
// place(dir, weightPath) putting something at the weight file's path.
func vaeFolder(t *testing.T, place func(t *testing.T, dir, weights string)) string {
	t.Helper()
	src := golden.Path(t, "small/models/sdxl-small-base/vae")
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	place(t, dir, filepath.Join(dir, "diffusion_pytorch_model.safetensors"))
	return dir
}

// TestWeightFileKinds: weight files must be regular files or links to
// one; a named pipe is refused at once (it hung in open(2)), a link loop
// is reported as a loop (it was reported as a missing file while the
// folder listing showed it), a dangling link names its target.
func TestWeightFileKinds(t *testing.T) {
	real := filepath.Join(golden.Path(t, "small/models/sdxl-small-base/vae"), "diffusion_pytorch_model.safetensors")
	for _, c := range []struct {
		name  string
		place func(t *testing.T, dir, w string)
		want  string // "" : loads
	}{
		{"link to a regular file", func(t *testing.T, dir, w string) { symlinkOrSkip(t, real, w) }, ""},
		{"link loop", func(t *testing.T, dir, w string) { symlinkOrSkip(t, w, w) }, "is a symbolic link that cannot be followed (a loop?)"},
		{"dangling link", func(t *testing.T, dir, w string) { symlinkOrSkip(t, filepath.Join(dir, "gone"), w) }, "which does not exist"},
		{"folder", func(t *testing.T, dir, w string) { os.Mkdir(w, 0o755) }, "is a folder, not a regular file"},
		{"named pipe", func(t *testing.T, dir, w string) {
			if err := regfile.MakeFIFO(w); err != nil {
				t.Skip(err)
			}
		}, "is a named pipe (FIFO), not a regular file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := vaeFolder(t, c.place)
			start := time.Now()
			ws, err := config.OpenWeightsIn(dir, "diffusion_pytorch_model", "")
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				ws.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), "diffusion_pytorch_model.safetensors") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
		})
	}
}

// TestConfigFileKinds: a named pipe as config.json is refused, not read.
func TestConfigFileKinds(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.json")
	if err := regfile.MakeFIFO(p); err != nil {
		t.Skip(err)
	}
	if _, err := config.ReadVAEConfig(p); err == nil || !strings.Contains(err.Error(), "named pipe") {
		t.Errorf("FIFO config: %v", err)
	}
}

// TestIntegerWeightsRefused: an I16 tensor where a weight is expected is
// an error naming the file and tensor, not a silent conversion; BF16
// converts (documented in WeightSet.ReadFloat32).
func TestIntegerWeightsRefused(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "w.safetensors")
	i16 := make([]byte, 8)
	bf16 := []byte{0x80, 0x3f, 0x00, 0x40} // 1, 2
	err := safetensors.WriteRawFile(p, []safetensors.RawTensor{
		{Name: "conv.weight", DType: safetensors.I16, Shape: []int{4}, Data: i16},
		{Name: "conv.bias", DType: safetensors.BF16, Shape: []int{2}, Data: bf16},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := config.OpenWeightFiles(p)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	err = ws.ReadFloat32("conv.weight", make([]float32, 4))
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), `tensor "conv.weight" is stored as I16`) {
		t.Errorf("I16 weight: %v", err)
	}
	if _, _, err := ws.Float32("conv.weight"); err == nil {
		t.Error("Float32 read an I16 weight")
	}
	got := make([]float32, 2)
	if err := ws.ReadFloat32("conv.bias", got); err != nil || got[0] != 1 || got[1] != 2 {
		t.Errorf("BF16: %v %v", got, err)
	}
}

func symlinkOrSkip(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("no symbolic links here: %v", err)
	}
}
