package unet

import (
	"fmt"
	"strings"

	"github.com/sdxl-go/sdxl/sdxl/config"
)

// archFromConfig turns a parsed config into arch, refusing what this
// implementation does not build (anything outside the SDXL family's
// blocks) rather than building a different model. With encoderOnly the
// config describes only conv_in, the embeddings, the down and the mid
// blocks (a ControlNet's, see config.ControlNetConfig).
func archFromConfig(c *config.UNetConfig, encoderOnly bool) (*arch, error) {
	if c == nil {
		return nil, fmt.Errorf("unet: nil config")
	}
	validate := c.Validate
	if encoderOnly {
		validate = c.ValidateEncoder
	}
	if err := validate(); err != nil {
		return nil, fmt.Errorf("unet config: %w", err)
	}
	down, up, err := familyBlocks(c)
	if err != nil {
		return nil, err
	}
	a := &arch{
		inChannels:        c.InChannels,
		outChannels:       c.OutChannels,
		centerInput:       c.CenterInputSample,
		flipSinToCos:      c.FlipSinToCos,
		freqShift:         c.FreqShift,
		downTypes:         down,
		upTypes:           up,
		midType:           c.MidBlockType,
		blockOut:          append([]int(nil), c.BlockOutChannels...),
		layersPerBlock:    append([]int(nil), c.LayersPerBlock...),
		heads:             append([]int(nil), c.NumAttentionHeads...),
		crossDim:          append([]int(nil), c.CrossAttentionDim...),
		onlyCross:         append([]bool(nil), c.OnlyCrossAttention...),
		midOnlyCross:      c.MidBlockOnlyCrossAttention,
		tLayersDown:       c.TransformerLayers,
		tLayersUp:         c.UpTransformerLayers,
		tLayersMid:        []int{c.MidTransformerLayers},
		downsamplePadding: c.DownsamplePadding,
		midScale:          float32(c.MidBlockScaleFactor),
		groups:            *c.NormNumGroups,
		eps:               float32(c.NormEps),
		linearProj:        c.UseLinearProjection,
		resnetOutScale:    float32(c.ResnetOutScaleFactor),
		timeEmbedDim:      c.TimeEmbedDim(),
		timeInputDim:      c.TimestepInputDim(),
		convInKernel:      c.ConvInKernel,
		convOutKernel:     c.ConvOutKernel,
		addEmbedType:      c.AdditionEmbedType,
	}
	if c.AdditionTimeEmbedDim != nil {
		a.addTimeDim = *c.AdditionTimeEmbedDim
	}
	if c.ProjectionClassEmbeddingsInputDim != nil {
		a.projClassInDim = *c.ProjectionClassEmbeddingsInputDim
	}
	if err := a.validate(encoderOnly); err != nil {
		return nil, fmt.Errorf("unet config: %w", err)
	}
	return a, nil
}

// familyBlocks refuses a config outside the SDXL UNet family, naming every
// field that puts it outside, and returns its down and up block types
// without diffusers' accepted "UNetRes" prefix.
func familyBlocks(c *config.UNetConfig) (down, up []string, err error) {
	var unsupported []string
	add := func(cond bool, format string, args ...any) {
		if cond {
			unsupported = append(unsupported, fmt.Sprintf(format, args...))
		}
	}
	trim := func(s string) string { return strings.TrimPrefix(s, "UNetRes") } // get_*_block accept the alias
	down = make([]string, len(c.DownBlockTypes))
	up = make([]string, len(c.UpBlockTypes))
	for i, t := range c.DownBlockTypes {
		down[i] = trim(t)
		add(down[i] != "DownBlock2D" && down[i] != "CrossAttnDownBlock2D", "down_block_types[%d] = %q", i, t)
	}
	for i, t := range c.UpBlockTypes {
		up[i] = trim(t)
		add(up[i] != "UpBlock2D" && up[i] != "CrossAttnUpBlock2D", "up_block_types[%d] = %q", i, t)
	}
	add(c.MidBlockType != "UNetMidBlock2DCrossAttn" && c.MidBlockType != "UNetMidBlock2D" && c.MidBlockType != "",
		"mid_block_type = %q", c.MidBlockType)
	add(c.ActFn != "silu" && c.ActFn != "swish", "act_fn = %q", c.ActFn)
	add(c.NormNumGroups == nil, "norm_num_groups = null")
	add(c.DualCrossAttention, "dual_cross_attention = true")
	add(c.ClassEmbedType != "" || c.NumClassEmbeds != nil, "class_embed_type = %q / num_class_embeds", c.ClassEmbedType)
	add(c.AdditionEmbedType != "text_time" && c.AdditionEmbedType != "", "addition_embed_type = %q", c.AdditionEmbedType)
	add(c.ResnetTimeScaleShift != "default", "resnet_time_scale_shift = %q", c.ResnetTimeScaleShift)
	add(c.ResnetSkipTimeAct, "resnet_skip_time_act = true")
	add(c.TimeEmbeddingType != "positional", "time_embedding_type = %q", c.TimeEmbeddingType)
	add(c.TimeEmbeddingActFn != "", "time_embedding_act_fn = %q", c.TimeEmbeddingActFn)
	add(c.TimestepPostAct != "", "timestep_post_act = %q", c.TimestepPostAct)
	add(c.TimeCondProjDim != nil, "time_cond_proj_dim is set")
	add(c.AttentionType != "default", "attention_type = %q", c.AttentionType)
	add(c.CrossAttentionNorm != "", "cross_attention_norm = %q", c.CrossAttentionNorm)
	add(c.EncoderHidDim != nil || c.EncoderHidDimType != "", "encoder_hid_dim / encoder_hid_dim_type is set")
	if len(unsupported) > 0 {
		return nil, nil, fmt.Errorf("unet: config outside the SDXL UNet family, not supported: %s", strings.Join(unsupported, ", "))
	}
	return down, up, nil
}
