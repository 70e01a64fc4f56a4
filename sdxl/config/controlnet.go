package config

import (
	"fmt"
	"os"

	"github.com/sdxl-go/sdxl/internal/jsonobj"
)

// ControlNetConfig is a ControlNetModel's config.json (diffusers
// models/controlnets/controlnet.py), with the constructor's defaults for
// absent keys.
//
// A ControlNet is a copy of a UNet's first half (conv_in, the time and
// added embeddings, the down blocks and the mid block) plus a conditioning
// embedding and zero convolutions. The keys it shares with
// UNet2DConditionModel are read into Encoder, normalised like a UNet
// config, so the same code builds those modules for both models.
type ControlNetConfig struct {
	// Encoder holds the shared keys. It describes no up blocks and no
	// conv_out: UpBlockTypes and UpTransformerLayers are nil and
	// OutChannels is 0; see UNetConfig.ValidateEncoder. The mid block
	// never has only-cross attention (the ControlNet constructor does not
	// pass the flag to it).
	Encoder *UNetConfig

	// ConditioningChannels is the control image's channel count
	// (conditioning_channels, 3 for RGB).
	ConditioningChannels int
	// ConditioningEmbeddingOutChannels are the widths of the conditioning
	// embedding's conv stack (16, 32, 96, 256 by default); each step after
	// the first halves the resolution.
	ConditioningEmbeddingOutChannels []int
	// ChannelOrder is controlnet_conditioning_channel_order: "rgb", or
	// "bgr" (the control image's channels are flipped before use).
	ChannelOrder string
	// GlobalPoolConditions averages every residual over its spatial
	// dimensions (and makes the pipelines run in guess mode).
	GlobalPoolConditions bool

	// Unused lists keys of the file this package does not read.
	Unused []string
}

// ReadControlNetConfig reads and validates a ControlNet config.json.
func ReadControlNetConfig(path string) (*ControlNetConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseControlNetConfig(path, data)
}

// ParseControlNetConfig parses and validates a ControlNetModel config; name
// identifies it in errors. Keys of UNet2DConditionModel that the ControlNet
// constructor does not take (out_channels, up_block_types, sample_size, ...)
// are ignored and listed in Unused, as diffusers ignores them.
func ParseControlNetConfig(name string, data []byte) (*ControlNetConfig, error) {
	o, err := jsonobj.Parse(name, data)
	if err != nil {
		return nil, err
	}
	c := readControlNetScalars(o)
	e := c.Encoder
	if o.Err() != nil {
		return nil, o.Err()
	}
	n := len(e.DownBlockTypes)
	switch {
	case n == 0:
		return nil, fmt.Errorf("%s: down_block_types is empty", name)
	case n > MaxBlocks:
		return nil, fmt.Errorf("%s: %d down_block_types, want at most %d", name, n, MaxBlocks)
	case len(e.BlockOutChannels) != n:
		return nil, fmt.Errorf("%s: %d block_out_channels for %d down_block_types (want one per block)", name, len(e.BlockOutChannels), n)
	}
	// layers_per_block and cross_attention_dim are single numbers here: the
	// constructor loops over range(layers_per_block) and hands
	// cross_attention_dim to every block as it is.
	lpb := o.Int("layers_per_block", 2)
	if err := inRange("layers_per_block", lpb, 1, MaxLayersPerBlock); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	e.LayersPerBlock = repeat(lpb, n)
	e.CrossAttentionDim = repeat(o.Int("cross_attention_dim", 1280), n)
	e.AttentionHeadDim = perBlock(o, "attention_head_dim", 8, n)
	// num_attention_heads = num_attention_heads or attention_head_dim.
	e.NumAttentionHeads = append([]int(nil), e.AttentionHeadDim...)
	if _, present, null := o.Get("num_attention_heads"); present && !null {
		e.NumAttentionHeads = perBlock(o, "num_attention_heads", 8, n)
	}
	e.OnlyCrossAttention = perBlockBool(o, "only_cross_attention", false, n)
	if o.Err() != nil {
		return nil, o.Err()
	}
	if _, _, err := e.downTransformerLayers(o); err != nil {
		return nil, err
	}
	c.Unused = o.Unused()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	return c, nil
}

// readControlNetScalars reads every key that is not per block; the
// encoder's fixed settings are the ControlNet constructor's.
func readControlNetScalars(o *jsonobj.Object) *ControlNetConfig {
	e := &UNetConfig{
		InChannels:                        o.Int("in_channels", 4),
		FlipSinToCos:                      o.Bool("flip_sin_to_cos", true),
		FreqShift:                         o.Float("freq_shift", 0),
		DownBlockTypes:                    o.Strs("down_block_types", []string{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}),
		MidBlockType:                      o.Str("mid_block_type", "UNetMidBlock2DCrossAttn"),
		BlockOutChannels:                  o.Ints("block_out_channels", []int{320, 640, 1280, 1280}),
		DownsamplePadding:                 o.Int("downsample_padding", 1),
		MidBlockScaleFactor:               o.Float("mid_block_scale_factor", 1),
		ActFn:                             o.ReqStr("act_fn", "silu"),
		NormNumGroups:                     o.OptInt("norm_num_groups", ptr(32)),
		NormEps:                           o.Float("norm_eps", 1e-5),
		EncoderHidDim:                     o.OptInt("encoder_hid_dim", nil),
		EncoderHidDimType:                 o.Str("encoder_hid_dim_type", ""),
		UseLinearProjection:               o.Bool("use_linear_projection", false),
		ClassEmbedType:                    o.Str("class_embed_type", ""),
		AdditionEmbedType:                 o.Str("addition_embed_type", ""),
		AdditionTimeEmbedDim:              o.OptInt("addition_time_embed_dim", nil),
		NumClassEmbeds:                    o.OptInt("num_class_embeds", nil),
		UpcastAttention:                   o.Bool("upcast_attention", false),
		ResnetTimeScaleShift:              o.ReqStr("resnet_time_scale_shift", "default"),
		ProjectionClassEmbeddingsInputDim: o.OptInt("projection_class_embeddings_input_dim", nil),
		AdditionEmbedTypeNumHeads:         o.Int("addition_embed_type_num_heads", 64),
		// Fixed by the ControlNet constructor.
		ResnetOutScaleFactor: 1,
		TimeEmbeddingType:    "positional",
		ConvInKernel:         3,
		AttentionType:        "default",
	}
	return &ControlNetConfig{
		Encoder:                          e,
		ConditioningChannels:             o.Int("conditioning_channels", 3),
		ConditioningEmbeddingOutChannels: o.Ints("conditioning_embedding_out_channels", []int{16, 32, 96, 256}),
		ChannelOrder:                     o.ReqStr("controlnet_conditioning_channel_order", "rgb"),
		GlobalPoolConditions:             o.Bool("global_pool_conditions", false),
	}
}

// Validate checks what the constructor would refuse or could not build.
func (c *ControlNetConfig) Validate() error {
	if c.Encoder == nil {
		return fmt.Errorf("no encoder settings")
	}
	if err := c.Encoder.ValidateEncoder(); err != nil {
		return err
	}
	if c.Encoder.MidBlockType == "" {
		return fmt.Errorf("mid_block_type is null: the ControlNet constructor needs a mid block")
	}
	if err := inRange("conditioning_channels", c.ConditioningChannels, 1, MaxWidth); err != nil {
		return err
	}
	if n := len(c.ConditioningEmbeddingOutChannels); n == 0 || n > MaxBlocks {
		return fmt.Errorf("conditioning_embedding_out_channels has %d entries, want 1 to %d", n, MaxBlocks)
	}
	for i, ch := range c.ConditioningEmbeddingOutChannels {
		if err := inRange(fmt.Sprintf("conditioning_embedding_out_channels[%d]", i), ch, 1, MaxWidth); err != nil {
			return err
		}
	}
	if c.ChannelOrder != "rgb" && c.ChannelOrder != "bgr" {
		return fmt.Errorf("controlnet_conditioning_channel_order %q: want rgb or bgr", c.ChannelOrder)
	}
	return nil
}

// CondDownscale is the factor by which the conditioning embedding shrinks
// the control image: 2 per stride-2 convolution, one between each pair of
// ConditioningEmbeddingOutChannels (8 by default, the VAE's factor).
func (c *ControlNetConfig) CondDownscale() int {
	return 1 << (len(c.ConditioningEmbeddingOutChannels) - 1)
}

// ControlNetFromUNet is the config ControlNetModel.from_unet gives a
// ControlNet for UNet u: the UNet's settings for the shared modules, a
// conditioning embedding for images of conditioningChannels channels with
// the given widths (nil for 16, 32, 96, 256), RGB order, no pooling. It is
// how a ControlNet file without a config is read.
func ControlNetFromUNet(u *UNetConfig, conditioningChannels int, widths []int) (*ControlNetConfig, error) {
	if widths == nil {
		widths = []int{16, 32, 96, 256}
	}
	e := *u
	e.SampleSize, e.OutChannels, e.CenterInputSample, e.ConvOutKernel = nil, 0, false, 0
	e.UpBlockTypes, e.UpTransformerLayers = nil, nil
	e.MidBlockOnlyCrossAttention = false
	e.LayersPerBlock = append([]int(nil), u.LayersPerBlock...)
	e.CrossAttentionDim = append([]int(nil), u.CrossAttentionDim...)
	e.NumAttentionHeads = append([]int(nil), u.NumAttentionHeads...)
	e.AttentionHeadDim = append([]int(nil), u.AttentionHeadDim...)
	e.OnlyCrossAttention = append([]bool(nil), u.OnlyCrossAttention...)
	e.BlockOutChannels = append([]int(nil), u.BlockOutChannels...)
	e.DownBlockTypes = append([]string(nil), u.DownBlockTypes...)
	e.TransformerLayers = make([][]int, len(u.TransformerLayers))
	for i, l := range u.TransformerLayers {
		e.TransformerLayers[i] = append([]int(nil), l...)
	}
	e.Unused = nil
	c := &ControlNetConfig{
		Encoder:                          &e,
		ConditioningChannels:             conditioningChannels,
		ConditioningEmbeddingOutChannels: append([]int(nil), widths...),
		ChannelOrder:                     "rgb",
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}
