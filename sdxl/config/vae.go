package config

import (
	"fmt"

	"github.com/sdxl-go/sdxl/internal/jsonobj"
	"github.com/sdxl-go/sdxl/internal/regfile"
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
	data, err := regfile.ReadFile(path, MaxConfigBytes)
	if err != nil {
		return nil, err
	}
	return ParseVAEConfig(path, data)
}

// ParseVAEConfig parses and validates an AutoencoderKL config; name
// identifies it in errors.
func ParseVAEConfig(name string, data []byte) (*VAEConfig, error) {
	o, err := jsonobj.Parse(name, data)
	if err != nil {
		return nil, err
	}
	c := &VAEConfig{
		InChannels:       o.Int("in_channels", 3),
		OutChannels:      o.Int("out_channels", 3),
		DownBlockTypes:   o.Strs("down_block_types", []string{"DownEncoderBlock2D"}),
		UpBlockTypes:     o.Strs("up_block_types", []string{"UpDecoderBlock2D"}),
		BlockOutChannels: o.Ints("block_out_channels", []int{64}),
		LayersPerBlock:   o.Int("layers_per_block", 1),
		ActFn:            o.ReqStr("act_fn", "silu"),
		LatentChannels:   o.Int("latent_channels", 4),
		NormNumGroups:    o.Int("norm_num_groups", 32),
		ScalingFactor:    o.Float("scaling_factor", 0.18215),
		ShiftFactor:      o.OptFloat("shift_factor", nil),
		LatentsMean:      o.Floats("latents_mean"),
		LatentsStd:       o.Floats("latents_std"),
		// force_upcast, use_quant_conv, use_post_quant_conv and
		// mid_block_add_attention are used through truth tests, so null
		// reads as false.
		ForceUpcast:          o.Bool("force_upcast", true),
		UseQuantConv:         o.Bool("use_quant_conv", true),
		UsePostQuantConv:     o.Bool("use_post_quant_conv", true),
		MidBlockAddAttention: o.Bool("mid_block_add_attention", true),
	}
	if _, present, _ := o.Get("sample_size"); present {
		c.SampleSize = size2(o, "sample_size")
	} else {
		c.SampleSize = &Size2{32, 32}
	}
	if o.Err() != nil {
		return nil, o.Err()
	}
	c.Unused = o.Unused()
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
	case n > MaxBlocks:
		return fmt.Errorf("%d block_out_channels, want at most %d", n, MaxBlocks)
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
	if err := checkRanges(1, MaxWidth, intField{"in_channels", c.InChannels}, intField{"out_channels", c.OutChannels},
		intField{"latent_channels", c.LatentChannels}, intField{"norm_num_groups", c.NormNumGroups}); err != nil {
		return err
	}
	if err := inRange("layers_per_block", c.LayersPerBlock, 1, MaxLayersPerBlock); err != nil {
		return err
	}
	for i, ch := range c.BlockOutChannels {
		if ch <= 0 || ch > MaxWidth || ch%c.NormNumGroups != 0 {
			return fmt.Errorf("block_out_channels[%d] = %d, want a positive multiple of norm_num_groups %d up to %d", i, ch, c.NormNumGroups, MaxWidth)
		}
	}
	if c.SampleSize != nil {
		if err := checkRanges(1, MaxSampleSize, intField{"sample_size height", c.SampleSize.H}, intField{"sample_size width", c.SampleSize.W}); err != nil {
			return err
		}
	}
	return c.validateScaling()
}

// validateScaling checks the latent scaling numbers: a NaN or zero there
// would give an all-black image, not an error.
func (c *VAEConfig) validateScaling() error {
	if err := positive("scaling_factor", c.ScalingFactor); err != nil {
		return err
	}
	if c.ShiftFactor != nil {
		if err := finite("shift_factor", *c.ShiftFactor); err != nil {
			return err
		}
	}
	if (c.LatentsMean == nil) != (c.LatentsStd == nil) ||
		c.LatentsMean != nil && (len(c.LatentsMean) != c.LatentChannels || len(c.LatentsStd) != c.LatentChannels) {
		return fmt.Errorf("latents_mean (%d values) and latents_std (%d values) must both be null or have latent_channels = %d values",
			len(c.LatentsMean), len(c.LatentsStd), c.LatentChannels)
	}
	for i := range c.LatentsMean {
		if err := finite(fmt.Sprintf("latents_mean[%d]", i), c.LatentsMean[i]); err != nil {
			return err
		}
		if err := positive(fmt.Sprintf("latents_std[%d]", i), c.LatentsStd[i]); err != nil {
			return err
		}
	}
	return nil
}

// NonSDXL lists settings outside what the SDXL VAE uses: an engine
// implementing only SDXL's blocks refuses a config for which it is
// non-empty rather than build a different model.
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
