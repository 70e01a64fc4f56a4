package bundled

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDirExtractsOnce(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	d, err := Dir()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "tokenizer_2/merges.txt"} {
		if _, err := os.Stat(filepath.Join(d, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	d2, err := Dir()
	if err != nil || d2 != d {
		t.Fatalf("second Dir = %q, %v; want %q", d2, err, d)
	}
}
