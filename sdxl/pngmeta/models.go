// Package pngmeta builds the metadata a generated PNG carries, shared by
// every front end that writes images (the sdxl-run command, the HTTP
// server, workers): AUTOMATIC1111's "parameters" infotext of a Request and
// its Result (see package infotext for the format), the loaded models'
// names and short hashes, and the LoRA entries of the run record.
//
// Each front end adds its own run record chunk (imageio.RunChunk): the
// command line records its flags, the server its job.
package pngmeta

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/hashes"
)

// FileHash is one model file's identity for a run record.
type FileHash struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"`
	Error  string `json:"error,omitempty"`
}

// ModelRef names one loaded model the way the parameters chunk does.
type ModelRef struct {
	Role string `json:"role"` // "base" or "refiner"
	Path string `json:"path"`
	// Name is A1111's name_for_extra: the file name without extension, or
	// the folder's name.
	Name string `json:"name"`
	// Hash is A1111's short model hash, the first 10 hex digits of the
	// SHA-256 of HashOf: the checkpoint file, or for a diffusers folder
	// (which has no single checkpoint) its UNet weights file.
	Hash   string `json:"hash,omitempty"`
	HashOf string `json:"hash_of,omitempty"`
}

// Hashes are the model files' hashes and the models they identify.
type Hashes struct {
	Files  []FileHash
	Models []ModelRef
}

// Pending hashes model files in the background while images are
// generated. Hashes come from the cache (package hashes) after the first
// run on a file, so a 6.9 GB checkpoint is read once, not on every run.
type Pending chan Hashes

// HashFiles hashes the engine's model files and extra ones (ControlNet
// weights) in the background.
func HashFiles(ctx context.Context, e *sdxl.Engine, extra []string) Pending {
	files, models := append(ModelFiles(e), extra...), ModelRefs(e)
	ch := make(Pending, 1)
	go func() {
		cache := hashes.Default()
		out := make([]FileHash, len(files))
		sums := map[string]string{}
		for i, path := range files {
			out[i] = FileHash{Path: path}
			if st, err := os.Stat(path); err == nil {
				out[i].Size = st.Size()
			}
			// A cache that cannot be written still returns the digest.
			sum, err := cache.SHA256(ctx, path)
			if sum == "" {
				out[i].Error = err.Error()
				continue
			}
			out[i].SHA256, sums[path] = sum, sum
		}
		for i := range models {
			models[i].Hash = hashes.ModelHash(sums[models[i].HashOf])
		}
		ch <- Hashes{out, models}
	}()
	return ch
}

// Wait returns the hashes once computed.
func (p Pending) Wait() Hashes { return <-p }

// ModelFiles lists the weight files of the engine's models.
func ModelFiles(e *sdxl.Engine) []string {
	var files []string
	for _, m := range []*sdxl.Model{e.Base(), e.Refiner()} {
		if m != nil {
			files = append(files, m.Files...)
		}
	}
	return files
}

// ModelRefs names the engine's models (without their hashes).
func ModelRefs(e *sdxl.Engine) []ModelRef {
	var refs []ModelRef
	for _, r := range []struct {
		role string
		m    *sdxl.Model
	}{{"base", e.Base()}, {"refiner", e.Refiner()}} {
		if r.m != nil {
			refs = append(refs, ModelRef{Role: r.role, Path: r.m.Path, Name: ModelName(r.m.Path), HashOf: modelHashFile(r.m)})
		}
	}
	return refs
}

// ModelName is A1111's CheckpointInfo.name_for_extra: the base name without
// extension; a folder keeps its whole name.
func ModelName(path string) string {
	base := filepath.Base(path)
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return base
	}
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// modelHashFile is the file whose SHA-256 makes the model hash: the
// checkpoint itself, or a diffusers folder's (first) UNet weights file.
func modelHashFile(m *sdxl.Model) string {
	if st, err := os.Stat(m.Path); err == nil && !st.IsDir() {
		return m.Path
	}
	unet := filepath.Join(m.Path, "unet")
	for _, f := range m.Files {
		if filepath.Dir(f) == unet {
			return f
		}
	}
	return ""
}
