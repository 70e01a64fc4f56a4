package unet

import (
	"fmt"
	"path/filepath"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/config"
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
	// Variant selects the weight files in LoadDir ("" or e.g. "fp16").
	Variant string
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

// Load builds the UNet that cfg describes and fills every weight from src,
// strictly: a missing, unexpected or mis-shaped weight is an error naming
// it.
func Load(b tensor.Backend, cfg *config.UNetConfig, src nn.Source, opt LoadOptions) (*UNet, error) {
	u, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := u.Load(b, src, opt); err != nil {
		return nil, err
	}
	return u, nil
}

// LoadDir loads a diffusers unet/ folder: config.json and the weights of
// opt.Variant ("" = diffusion_pytorch_model.safetensors, "fp16" =
// diffusion_pytorch_model.fp16.safetensors, or their shard indexes),
// chosen as diffusers does (config.OpenWeightsIn).
func LoadDir(b tensor.Backend, dir string, opt LoadOptions) (*UNet, error) {
	cfg, err := config.ReadUNetConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	ws, err := config.OpenWeightsIn(dir, "diffusion_pytorch_model", opt.Variant)
	if err != nil {
		return nil, err
	}
	defer ws.Close()
	u, err := Load(b, cfg, ws, opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return u, nil
}
