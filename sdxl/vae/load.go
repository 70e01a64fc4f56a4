package vae

import (
	"fmt"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/tensor"
)

// LoadOptions tune Load and LoadDir. Leave DType F32: diffusers keeps the
// SDXL VAE in float32 (force_upcast).
type LoadOptions = config.LoadOptions

// Load builds the VAE for cfg and fills it strictly from src. Attention
// projections stored as 1x1 convolutions ([C, C, 1, 1], as in original
// single-file checkpoints) are accepted for the [C, C] linear weights.
func Load(b tensor.Backend, cfg *config.VAEConfig, src nn.Source, opt LoadOptions) (*VAE, error) {
	v, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := v.Load(b, src, opt); err != nil {
		return nil, err
	}
	return v, nil
}

// Load fills the weights of a meta VAE (from New) from src, strictly;
// attention projections may be stored as 1x1 convolutions.
func (v *VAE) Load(b tensor.Backend, src nn.Source, opt LoadOptions) error {
	if err := nn.Load(b, v, squeezeConvAttention{src}, opt.NN()); err != nil {
		return fmt.Errorf("loading VAE: %w", err)
	}
	return nil
}

// LoadDir loads a diffusers vae/ folder: config.json and the weights of
// opt.Variant ("" or e.g. "fp16"), chosen as diffusers does.
func LoadDir(b tensor.Backend, dir string, opt LoadOptions) (*VAE, error) {
	return config.LoadDir(dir, opt.Variant, config.ReadVAEConfig, func(cfg *config.VAEConfig, src nn.Source) (*VAE, error) {
		return Load(b, cfg, src, opt)
	})
}

// squeezeConvAttention presents mid-block attention weights stored as 1x1
// convolutions [O, I, 1, 1] with the linear shape [O, I]; the data layout is
// identical.
type squeezeConvAttention struct{ nn.Source }

func isAttnProj(name string) bool {
	for _, s := range []string{".to_q.weight", ".to_k.weight", ".to_v.weight", ".to_out.0.weight"} {
		if len(name) > len(s) && name[len(name)-len(s):] == s {
			return true
		}
	}
	return false
}

func (s squeezeConvAttention) Shape(name string) ([]int, bool) {
	shape, ok := s.Source.Shape(name)
	if ok && len(shape) == 4 && shape[2] == 1 && shape[3] == 1 && isAttnProj(name) {
		return shape[:2], true
	}
	return shape, ok
}
