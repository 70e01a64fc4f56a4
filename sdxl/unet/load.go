package unet

import (
	"fmt"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/tensor"
)

// LoadOptions tune Load and LoadDir.
type LoadOptions = config.LoadOptions

// Load fills the weights of a meta UNet (from New) from src, strictly.
// Build with New first when a source needs the parameter list (e.g. the
// single-file views of package singlefile).
func (u *UNet) Load(b tensor.Backend, src nn.Source, opt LoadOptions) error {
	if err := nn.Load(b, u, src, opt.NN()); err != nil {
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
	return config.LoadDir(dir, opt.Variant, config.ReadUNetConfig, func(cfg *config.UNetConfig, src nn.Source) (*UNet, error) {
		return Load(b, cfg, src, opt)
	})
}
