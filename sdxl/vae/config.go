package vae

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/tensor"
)

// Config is vae/config.json (AutoencoderKL) with diffusers' defaults for
// absent keys.
type Config struct {
	InChannels           int       `json:"in_channels"`
	OutChannels          int       `json:"out_channels"`
	DownBlockTypes       []string  `json:"down_block_types"`
	UpBlockTypes         []string  `json:"up_block_types"`
	BlockOutChannels     []int     `json:"block_out_channels"`
	LayersPerBlock       int       `json:"layers_per_block"`
	ActFn                string    `json:"act_fn"`
	LatentChannels       int       `json:"latent_channels"`
	NormNumGroups        int       `json:"norm_num_groups"`
	ScalingFactor        float64   `json:"scaling_factor"`
	ShiftFactor          *float64  `json:"shift_factor"`
	LatentsMean          []float64 `json:"latents_mean"`
	LatentsStd           []float64 `json:"latents_std"`
	ForceUpcast          bool      `json:"force_upcast"`
	UseQuantConv         bool      `json:"use_quant_conv"`
	UsePostQuantConv     bool      `json:"use_post_quant_conv"`
	MidBlockAddAttention bool      `json:"mid_block_add_attention"`
}

// DefaultConfig is AutoencoderKL's constructor defaults.
func DefaultConfig() *Config {
	return &Config{
		InChannels: 3, OutChannels: 3,
		DownBlockTypes:   []string{"DownEncoderBlock2D"},
		UpBlockTypes:     []string{"UpDecoderBlock2D"},
		BlockOutChannels: []int{64}, LayersPerBlock: 1, ActFn: "silu", LatentChannels: 4,
		NormNumGroups: 32, ScalingFactor: 0.18215, ForceUpcast: true,
		UseQuantConv: true, UsePostQuantConv: true, MidBlockAddAttention: true,
	}
}

// SDXLConfig is the SDXL VAE (stabilityai/stable-diffusion-xl-base-1.0,
// vae/config.json).
func SDXLConfig() *Config {
	c := DefaultConfig()
	c.DownBlockTypes = []string{"DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"}
	c.UpBlockTypes = []string{"UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"}
	c.BlockOutChannels = []int{128, 256, 512, 512}
	c.LayersPerBlock = 2
	c.ScalingFactor = 0.13025
	return c
}

// ParseConfig reads a vae/config.json; unknown keys are ignored.
func ParseConfig(data []byte) (*Config, error) {
	c := DefaultConfig()
	// JSON null leaves a field at its default, which is diffusers' None
	// for the pointer/slice fields and what from_config does for the rest
	// of these (no SDXL file sets them to null).
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("parsing VAE config: %w", err)
	}
	return c, c.validate()
}

func (c *Config) validate() error {
	n := len(c.BlockOutChannels)
	switch {
	case n == 0:
		return fmt.Errorf("vae config: block_out_channels is empty")
	case len(c.DownBlockTypes) != n || len(c.UpBlockTypes) != n:
		return fmt.Errorf("vae config: %d block_out_channels, %d down_block_types, %d up_block_types (want equal)",
			n, len(c.DownBlockTypes), len(c.UpBlockTypes))
	case c.ActFn != "silu" && c.ActFn != "swish":
		return fmt.Errorf("vae config: act_fn %q is not supported (silu)", c.ActFn)
	case c.NormNumGroups <= 0:
		return fmt.Errorf("vae config: norm_num_groups %d", c.NormNumGroups)
	case c.LayersPerBlock < 1 || c.LatentChannels < 1 || c.InChannels < 1 || c.OutChannels < 1:
		return fmt.Errorf("vae config: layers_per_block, latent_channels, in/out_channels must be positive")
	case c.ScalingFactor == 0:
		return fmt.Errorf("vae config: scaling_factor is 0")
	}
	for i, t := range c.DownBlockTypes {
		if t != "DownEncoderBlock2D" {
			return fmt.Errorf("vae config: down_block_types[%d] = %q is not supported (DownEncoderBlock2D)", i, t)
		}
	}
	for i, t := range c.UpBlockTypes {
		if t != "UpDecoderBlock2D" {
			return fmt.Errorf("vae config: up_block_types[%d] = %q is not supported (UpDecoderBlock2D)", i, t)
		}
	}
	for i, ch := range c.BlockOutChannels {
		if ch <= 0 || ch%c.NormNumGroups != 0 {
			return fmt.Errorf("vae config: block_out_channels[%d] = %d does not split into %d groups", i, ch, c.NormNumGroups)
		}
	}
	if (c.LatentsMean == nil) != (c.LatentsStd == nil) {
		return fmt.Errorf("vae config: latents_mean and latents_std must be given together")
	}
	if c.LatentsMean != nil && (len(c.LatentsMean) != c.LatentChannels || len(c.LatentsStd) != c.LatentChannels) {
		return fmt.Errorf("vae config: latents_mean/std need %d values", c.LatentChannels)
	}
	return nil
}

// LoadOptions tune Load.
type LoadOptions struct {
	// DType is the storage type of the weights (default F32; diffusers
	// keeps the SDXL VAE in float32, force_upcast).
	DType tensor.DType
	// Prefix is prepended to every weight name looked up in the source.
	Prefix string
	// Progress is called after each tensor.
	Progress func(done, total int)
}

// Load builds the VAE for cfg and fills it strictly from src. Attention
// projections stored as 1x1 convolutions ([C, C, 1, 1], as in original
// single-file checkpoints) are accepted for the [C, C] linear weights.
func Load(b tensor.Backend, cfg *Config, src nn.Source, opt LoadOptions) (*VAE, error) {
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
	if err := nn.Load(b, v, squeezeConvAttention{src}, nn.LoadOptions{DType: opt.DType, Prefix: opt.Prefix, Progress: opt.Progress}); err != nil {
		return fmt.Errorf("loading VAE: %w", err)
	}
	return nil
}

// LoadDir loads a diffusers vae/ folder (config.json and
// diffusion_pytorch_model.safetensors, or the .fp16 variant when it is the
// only one).
func LoadDir(b tensor.Backend, dir string, opt LoadOptions) (*VAE, error) {
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("reading VAE config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	var f *safetensors.File
	for _, name := range []string{"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			if f, err = safetensors.Open(p); err != nil {
				return nil, err
			}
			break
		}
	}
	if f == nil {
		return nil, fmt.Errorf("no diffusion_pytorch_model(.fp16).safetensors in %s", dir)
	}
	defer f.Close()
	src, err := nn.NewFileSource(f)
	if err != nil {
		return nil, err
	}
	v, err := Load(b, cfg, src, opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return v, nil
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
