package config

import (
	"fmt"
	"path/filepath"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/tensor"
)

// LoadOptions tune loading a model component (UNet, VAE, ControlNet) from a
// weight source or a diffusers folder; the component packages name it
// LoadOptions too.
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
	// Variant selects the weight files in a folder ("" or e.g. "fp16").
	Variant string
}

// NN returns the options of nn.Load.
func (o LoadOptions) NN() nn.LoadOptions {
	return nn.LoadOptions{DType: o.DType, Prefix: o.Prefix, Progress: o.Progress}
}

// LoadDir loads a diffusers component folder: dir/config.json parsed by
// read, then the weights of variant ("" = diffusion_pytorch_model.safetensors,
// "fp16" = diffusion_pytorch_model.fp16.safetensors, or their shard
// indexes, chosen as diffusers does, see OpenWeightsIn) handed to load. An
// error of load names dir.
func LoadDir[C, M any](dir, variant string, read func(path string) (C, error), load func(C, nn.Source) (M, error)) (M, error) {
	var zero M
	cfg, err := read(filepath.Join(dir, "config.json"))
	if err != nil {
		return zero, err
	}
	ws, err := OpenWeightsIn(dir, "diffusion_pytorch_model", variant)
	if err != nil {
		return zero, err
	}
	defer ws.Close()
	m, err := load(cfg, ws)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", dir, err)
	}
	return m, nil
}
