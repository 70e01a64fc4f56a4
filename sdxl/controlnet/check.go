package controlnet

import (
	"fmt"
	"slices"

	"github.com/sdxl-go/sdxl/sdxl/config"
)

// CheckUNet reports, before any computation, whether the ControlNet can
// steer a UNet with config u: the same latent channels, the same text
// context width, the same added-embedding inputs, and one residual of the
// right width for each of the UNet's skip connections (the same number of
// levels, layers per level and widths). diffusers only fails on these
// mid-step, with a shape error.
func (c *ControlNet) CheckUNet(u *config.UNetConfig) error {
	e := c.cfg.Encoder
	if e.InChannels != u.InChannels {
		return fmt.Errorf("the ControlNet takes %d latent channels, the UNet %d", e.InChannels, u.InChannels)
	}
	if e.CrossAttentionDim[0] != u.CrossAttentionDim[0] {
		return fmt.Errorf("the ControlNet's cross_attention_dim is %d, the UNet's %d (a ControlNet for another model family)",
			e.CrossAttentionDim[0], u.CrossAttentionDim[0])
	}
	if e.AdditionEmbedType == "text_time" {
		if u.AdditionEmbedType != "text_time" {
			return fmt.Errorf("the ControlNet needs SDXL's text_time conditioning (pooled text and time ids), the UNet has addition_embed_type %q", u.AdditionEmbedType)
		}
		if *e.AdditionTimeEmbedDim != *u.AdditionTimeEmbedDim || *e.ProjectionClassEmbeddingsInputDim != *u.ProjectionClassEmbeddingsInputDim {
			return fmt.Errorf("the ControlNet's added embedding takes %d inputs (time ids x %d), the UNet's %d (time ids x %d): "+
				"a ControlNet for another model (base or refiner)", *e.ProjectionClassEmbeddingsInputDim, *e.AdditionTimeEmbedDim,
				*u.ProjectionClassEmbeddingsInputDim, *u.AdditionTimeEmbedDim)
		}
	}
	cs, us := e.SkipChannels(), u.SkipChannels()
	if !slices.Equal(cs, us) {
		return fmt.Errorf("the ControlNet's residuals have widths %v, the UNet's skip connections %v "+
			"(block_out_channels %v vs %v, layers_per_block %v vs %v)", cs, us,
			e.BlockOutChannels, u.BlockOutChannels, e.LayersPerBlock, u.LayersPerBlock)
	}
	return nil
}
