package unet

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/tensor"
)

// LoadOptions tune Load.
type LoadOptions struct {
	// DType is the storage type of the loaded weights (default F32; fp16
	// files are widened tensor by tensor, never held twice in memory).
	DType tensor.DType
	// Prefix is prepended to every weight name looked up in the source
	// (e.g. "model.diffusion_model." under a renaming source).
	Prefix string
	// Progress is called after each tensor with the count loaded and the
	// total.
	Progress func(done, total int)
}

// Load fills the weights of a meta UNet (from New) from src, strictly.
// Build with New first when a source needs the parameter list (e.g. the
// single-file views of package singlefile).
func (u *UNet) Load(b tensor.Backend, src nn.Source, opt LoadOptions) error {
	if err := nn.Load(b, u, src, nn.LoadOptions{DType: opt.DType, Prefix: opt.Prefix, Progress: opt.Progress}); err != nil {
		return fmt.Errorf("loading UNet: %w", err)
	}
	return nil
}

// Load builds the UNet that configJSON (unet/config.json) describes and
// fills every weight from src, strictly: a missing, unexpected or
// mis-shaped weight is an error naming it.
func Load(b tensor.Backend, configJSON []byte, src nn.Source, opt LoadOptions) (*UNet, error) {
	u, err := New(configJSON)
	if err != nil {
		return nil, err
	}
	if err := u.Load(b, src, opt); err != nil {
		return nil, err
	}
	return u, nil
}

// LoadDir loads a diffusers unet/ folder: config.json and
// diffusion_pytorch_model.safetensors, or its .fp16 variant when that is
// the only one present.
func LoadDir(b tensor.Backend, dir string, opt LoadOptions) (*UNet, error) {
	cfg, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("reading UNet config: %w", err)
	}
	files, err := OpenWeights(dir, "diffusion_pytorch_model")
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	src, err := nn.NewFileSource(files...)
	if err != nil {
		return nil, err
	}
	u, err := Load(b, cfg, src, opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return u, nil
}

// OpenWeights opens <dir>/<stem>.safetensors, or <stem>.fp16.safetensors
// when the full-precision file is absent.
func OpenWeights(dir, stem string) ([]*safetensors.File, error) {
	for _, name := range []string{stem + ".safetensors", stem + ".fp16.safetensors"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		f, err := safetensors.Open(p)
		if err != nil {
			return nil, err
		}
		return []*safetensors.File{f}, nil
	}
	return nil, fmt.Errorf("no %s.safetensors or %s.fp16.safetensors in %s", stem, stem, dir)
}
