package config

import (
	"fmt"
	"os"
)

// VAEConfig is vae/config.json (diffusers AutoencoderKL) with the
// constructor's defaults for absent keys.
type VAEConfig struct {
	InChannels       int
	OutChannels      int
	DownBlockTypes   []string
	UpBlockTypes     []string
	BlockOutChannels []int
	LayersPerBlock   int
	ActFn            string
	LatentChannels   int
	NormNumGroups    int
	// SampleSize is AutoencoderKL's sample_size (an int, or [h, w] in
	// some converted configs; nil when null).
	SampleSize    *Size2
	ScalingFactor float64
	// ShiftFactor, LatentsMean and LatentsStd are nil when null or absent
	// (SDXL: all null).
	ShiftFactor          *float64
	LatentsMean          []float64
	LatentsStd           []float64
	ForceUpcast          bool
	UseQuantConv         bool
	UsePostQuantConv     bool
	MidBlockAddAttention bool

	// Unused lists keys of the file this package does not read.
	Unused []string
}

// ReadVAEConfig reads and validates a vae/config.json file.
func ReadVAEConfig(path string) (*VAEConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseVAEConfig(path, data)
}

// ParseVAEConfig parses and validates an AutoencoderKL config; name
// identifies it in errors.
func ParseVAEConfig(name string, data []byte) (*VAEConfig, error) {
	o, err := parseObject(name, data)
	if err != nil {
		return nil, err
	}
	c := &VAEConfig{
		InChannels:       o.int("in_channels", 3),
		OutChannels:      o.int("out_channels", 3),
		DownBlockTypes:   o.strs("down_block_types", []string{"DownEncoderBlock2D"}),
		UpBlockTypes:     o.strs("up_block_types", []string{"UpDecoderBlock2D"}),
		BlockOutChannels: o.ints("block_out_channels", []int{64}),
		LayersPerBlock:   o.int("layers_per_block", 1),
		ActFn:            o.reqStr("act_fn", "silu"),
		LatentChannels:   o.int("latent_channels", 4),
		NormNumGroups:    o.int("norm_num_groups", 32),
		ScalingFactor:    o.float("scaling_factor", 0.18215),
		ShiftFactor:      o.optFloat("shift_factor", nil),
		LatentsMean:      o.floats("latents_mean"),
		LatentsStd:       o.floats("latents_std"),
		// force_upcast, use_quant_conv, use_post_quant_conv and
		// mid_block_add_attention are used through truth tests, so null
		// reads as false.
		ForceUpcast:          o.bool("force_upcast", true),
		UseQuantConv:         o.bool("use_quant_conv", true),
		UsePostQuantConv:     o.bool("use_post_quant_conv", true),
		MidBlockAddAttention: o.bool("mid_block_add_attention", true),
	}
	if _, present, _ := o.get("sample_size"); present {
		c.SampleSize = o.size2("sample_size")
	} else {
		c.SampleSize = &Size2{32, 32}
	}
	if o.err != nil {
		return nil, o.err
	}
	c.Unused = o.unused()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	return c, nil
}

// Validate checks the sizes and block lists.
func (c *VAEConfig) Validate() error {
	n := len(c.BlockOutChannels)
	switch {
	case n == 0:
		return fmt.Errorf("block_out_channels is empty")
	case len(c.DownBlockTypes) != n || len(c.UpBlockTypes) != n:
		// The encoder indexes block_out_channels by down block and the
		// decoder by up block; other lengths give a different model.
		return fmt.Errorf("%d block_out_channels, %d down_block_types, %d up_block_types (want one of each per level)", n, len(c.DownBlockTypes), len(c.UpBlockTypes))
	}
	for i, t := range c.DownBlockTypes {
		if !knownDown[t] {
			return fmt.Errorf("down_block_types[%d]: unknown block type %q", i, t)
		}
	}
	for i, t := range c.UpBlockTypes {
		if !knownUp[t] {
			return fmt.Errorf("up_block_types[%d]: unknown block type %q", i, t)
		}
	}
	for _, f := range []struct {
		key string
		v   int
	}{{"in_channels", c.InChannels}, {"out_channels", c.OutChannels}, {"layers_per_block", c.LayersPerBlock},
		{"latent_channels", c.LatentChannels}, {"norm_num_groups", c.NormNumGroups}} {
		if f.v <= 0 {
			return fmt.Errorf("%s = %d, want > 0", f.key, f.v)
		}
	}
	for i, ch := range c.BlockOutChannels {
		if ch <= 0 || ch%c.NormNumGroups != 0 {
			return fmt.Errorf("block_out_channels[%d] = %d, want a positive multiple of norm_num_groups %d", i, ch, c.NormNumGroups)
		}
	}
	if !(c.ScalingFactor > 0) {
		return fmt.Errorf("scaling_factor = %g, want > 0", c.ScalingFactor)
	}
	if (c.LatentsMean == nil) != (c.LatentsStd == nil) ||
		c.LatentsMean != nil && (len(c.LatentsMean) != c.LatentChannels || len(c.LatentsStd) != c.LatentChannels) {
		return fmt.Errorf("latents_mean (%d values) and latents_std (%d values) must both be null or have latent_channels = %d values",
			len(c.LatentsMean), len(c.LatentsStd), c.LatentChannels)
	}
	return nil
}

// NonSDXL lists settings outside what the SDXL VAE uses (see
// UNetConfig.NonSDXL).
func (c *VAEConfig) NonSDXL() []string {
	var out []string
	for i, t := range c.DownBlockTypes {
		if t != "DownEncoderBlock2D" {
			out = append(out, fmt.Sprintf("down_block_types[%d] = %q", i, t))
		}
	}
	for i, t := range c.UpBlockTypes {
		if t != "UpDecoderBlock2D" {
			out = append(out, fmt.Sprintf("up_block_types[%d] = %q", i, t))
		}
	}
	if c.ActFn != "silu" && c.ActFn != "swish" {
		out = append(out, fmt.Sprintf("act_fn = %q", c.ActFn))
	}
	return out
}

// DownsampleFactor is the latent-to-pixel scale: 2^(levels-1) (8 for SDXL).
func (c *VAEConfig) DownsampleFactor() int { return 1 << (len(c.BlockOutChannels) - 1) }
