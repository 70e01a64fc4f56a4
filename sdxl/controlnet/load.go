package controlnet

import (
	"fmt"
	"path/filepath"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/tensor"
)

// LoadOptions tune loading.
type LoadOptions struct {
	// DType is the storage type of the loaded weights (default F32; fp16
	// files are widened tensor by tensor).
	DType tensor.DType
	// Variant selects the weight files in LoadDir ("" or e.g. "fp16").
	Variant string
	// Progress is called after each tensor with the count loaded and the
	// total.
	Progress func(done, total int)
}

// Load fills the weights of a meta ControlNet (from New) from src,
// strictly: a missing, unexpected or mis-shaped weight is an error naming
// it.
func (c *ControlNet) Load(b tensor.Backend, src nn.Source, opt LoadOptions) error {
	if err := nn.Load(b, c, src, nn.LoadOptions{DType: opt.DType, Progress: opt.Progress}); err != nil {
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
