// Package bundled ships a small random-weight SDXL base model inside the
// binary, so that `sdxl-run --prompt ...` works right after `go install`
// with no download. It has the real SDXL block topology, vocabulary and
// tokenizers but tiny widths and random weights: its pictures are noise.
// It exists for trying the tool, for tests and for benchmarks of the
// pipeline's overhead — use real SDXL weights (README) for real images.
//
// The model is the golden "sdxl-small-base" (diffusers folder layout, fp16
// weights) that the project's reference tests were computed from.
package bundled

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

// Name is the bundled model's folder name.
const Name = "sdxl-small-base"

// Available reports whether this binary carries the model (builds with
// the nobundle tag leave it out, e.g. for small test binaries).
func Available() bool {
	_, err := fs.Stat(files, Name+"/model_index.json")
	return err == nil
}

// FS returns the bundled model folder as a file system rooted at the
// model's folder.
func FS() fs.FS {
	sub, err := fs.Sub(files, Name)
	if err != nil {
		panic(err) // the embed pattern guarantees the folder
	}
	return sub
}

// version identifies the bundled content: a hash over every file's name
// and bytes, so a changed model extracts to a new folder.
func version() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(files, Name, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", p, len(b))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:16], err
}

// Dir extracts the bundled model (once per content version) into the user's
// cache folder, or the temporary folder when there is none, and returns the
// folder's path. The loaders read ordinary files, so extracting keeps one
// loading path for bundled and user models.
func Dir() (string, error) {
	if !Available() {
		return "", fmt.Errorf("this binary was built without the bundled model (tag nobundle): give --model")
	}
	v, err := version()
	if err != nil {
		return "", err
	}
	base, err := os.UserCacheDir()
	if err != nil || base == "" {
		base = os.TempDir()
	}
	dst := filepath.Join(base, "sdxl-go", Name+"-"+v)
	if _, err := os.Stat(filepath.Join(dst, ".complete")); err == nil {
		return dst, nil
	}
	// Extract into a fresh folder and rename it into place, so concurrent
	// or interrupted runs never see half a model.
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", fmt.Errorf("bundled model: %v", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dst), ".extract-*")
	if err != nil {
		return "", fmt.Errorf("bundled model: %v", err)
	}
	defer os.RemoveAll(tmp)
	err = fs.WalkDir(files, Name, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := filepath.FromSlash(p[len(Name):])
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(tmp, rel), 0o755)
		}
		b, err := files.ReadFile(path.Clean(p))
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(tmp, rel), b, 0o644)
	})
	if err == nil {
		err = os.WriteFile(filepath.Join(tmp, ".complete"), []byte(v+"\n"), 0o644)
	}
	if err != nil {
		return "", fmt.Errorf("bundled model: extracting to %s: %v", tmp, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		// Another process may have won the race; its copy is as good.
		if _, serr := os.Stat(filepath.Join(dst, ".complete")); serr == nil {
			return dst, nil
		}
		return "", fmt.Errorf("bundled model: %v", err)
	}
	return dst, nil
}
