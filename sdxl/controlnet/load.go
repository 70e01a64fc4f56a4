package controlnet

import (
	"fmt"
	"path/filepath"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/tensor"
)

// LoadOptions tune loading.
type LoadOptions = config.LoadOptions

// Load fills the weights of a meta ControlNet (from New) from src,
// strictly: a missing, unexpected or mis-shaped weight is an error naming
// it.
func (c *ControlNet) Load(b tensor.Backend, src nn.Source, opt LoadOptions) error {
	if err := nn.Load(b, c, src, opt.NN()); err != nil {
		return fmt.Errorf("loading ControlNet: %w", err)
	}
	return nil
}

// LoadDir loads a diffusers ControlNet folder: config.json and the weights
// of opt.Variant ("" = diffusion_pytorch_model.safetensors, "fp16" =
// diffusion_pytorch_model.fp16.safetensors, or their shard indexes),
// chosen as diffusers does.
func LoadDir(b tensor.Backend, dir string, opt LoadOptions) (*ControlNet, error) {
	return loadDir(b, dir, nil, opt)
}

// loadDir is LoadDir, checking the ControlNet against a UNet config u
// (when not nil) before reading weights.
func loadDir(b tensor.Backend, dir string, u *config.UNetConfig, opt LoadOptions) (*ControlNet, error) {
	cfg, err := config.ReadControlNetConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	c, err := New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if u != nil {
		if err := c.CheckUNet(u); err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
	}
	ws, err := config.OpenWeightsIn(dir, "diffusion_pytorch_model", opt.Variant)
	if err != nil {
		return nil, err
	}
	defer ws.Close()
	if err := c.Load(b, ws, opt); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	c.Files = ws.Paths()
	return c, nil
}
