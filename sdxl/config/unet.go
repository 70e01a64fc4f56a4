package config

import (
	"fmt"

	"github.com/sdxl-go/sdxl/internal/jsonobj"
	"github.com/sdxl-go/sdxl/internal/regfile"
)

// Size2 is a height and width (diffusers' sample_size may be an int or a
// pair).
type Size2 struct{ H, W int }

// UNetConfig is unet/config.json (diffusers UNet2DConditionModel), with the
// constructor's defaults for absent keys and every int-or-list field
// normalised to one value per down block (index i = down block i; the up
// blocks use them reversed, as the constructor does).
type UNetConfig struct {
	SampleSize        *Size2 // nil: None
	InChannels        int
	OutChannels       int
	CenterInputSample bool
	FlipSinToCos      bool
	FreqShift         float64
	DownBlockTypes    []string
	UpBlockTypes      []string
	// MidBlockType is "" when the config sets it to null (no mid block).
	MidBlockType string
	// OnlyCrossAttention is per down block.
	OnlyCrossAttention []bool
	// MidBlockOnlyCrossAttention is resolved as the constructor does: the
	// config value, else only_cross_attention when that was a single flag,
	// else false.
	MidBlockOnlyCrossAttention bool
	BlockOutChannels           []int
	LayersPerBlock             []int // per down block
	DownsamplePadding          int
	MidBlockScaleFactor        float64
	Dropout                    float64
	ActFn                      string
	// NormNumGroups is nil when the config sets it to null.
	NormNumGroups     *int
	NormEps           float64
	CrossAttentionDim []int // per down block
	// TransformerLayers[i][j] is the depth of the transformer after resnet
	// j of down block i (transformer_layers_per_block, an int, a list per
	// block or a list of lists per block and layer).
	TransformerLayers [][]int
	// UpTransformerLayers[i][j] is the same for up block i, which has
	// LayersPerBlock[n-1-i]+1 resnets: reverse_transformer_layers_per_block
	// when given, else the down values reversed.
	UpTransformerLayers [][]int
	// MidTransformerLayers is the depth of the mid block's one transformer.
	MidTransformerLayers int
	// AttentionHeadDim is the config's attention_head_dim per down block.
	// Because of a naming accident in diffusers it is the number of heads
	// (SDXL: [5, 10, 20], head size 64); see NumAttentionHeads.
	AttentionHeadDim []int
	// NumAttentionHeads is what the blocks get as their head count:
	// attention_head_dim, since diffusers refuses num_attention_heads.
	NumAttentionHeads                 []int
	DualCrossAttention                bool
	UseLinearProjection               bool
	ClassEmbedType                    string
	AdditionEmbedType                 string
	AdditionTimeEmbedDim              *int
	NumClassEmbeds                    *int
	UpcastAttention                   bool
	ResnetTimeScaleShift              string
	ResnetSkipTimeAct                 bool
	ResnetOutScaleFactor              float64
	TimeEmbeddingType                 string
	TimeEmbeddingDim                  *int
	TimeEmbeddingActFn                string
	TimestepPostAct                   string
	TimeCondProjDim                   *int
	ConvInKernel                      int
	ConvOutKernel                     int
	ProjectionClassEmbeddingsInputDim *int
	AttentionType                     string
	ClassEmbeddingsConcat             bool
	CrossAttentionNorm                string
	AdditionEmbedTypeNumHeads         int
	EncoderHidDim                     *int
	EncoderHidDimType                 string

	// Unused lists keys of the file this package does not read (diffusers
	// ignores unknown keys too); "_"-prefixed bookkeeping keys are left out.
	Unused []string
}

// ReadUNetConfig reads and validates a unet/config.json file.
func ReadUNetConfig(path string) (*UNetConfig, error) {
	data, err := regfile.ReadFile(path, MaxConfigBytes)
	if err != nil {
		return nil, err
	}
	return ParseUNetConfig(path, data)
}

// ParseUNetConfig parses and validates a UNet config; name identifies it in
// errors (usually its path).
func ParseUNetConfig(name string, data []byte) (*UNetConfig, error) {
	o, err := jsonobj.Parse(name, data)
	if err != nil {
		return nil, err
	}
	c := &UNetConfig{}
	c.readScalars(o)
	if o.Err() != nil {
		return nil, o.Err()
	}
	n := len(c.DownBlockTypes)
	switch {
	case n == 0:
		return nil, fmt.Errorf("%s: down_block_types is empty", name)
	case n > MaxBlocks:
		return nil, fmt.Errorf("%s: %d down_block_types, want at most %d", name, n, MaxBlocks)
	case len(c.UpBlockTypes) != n:
		// The constructor's own check (_check_config).
		return nil, fmt.Errorf("%s: %d down_block_types but %d up_block_types (want the same number)", name, n, len(c.UpBlockTypes))
	case len(c.BlockOutChannels) != n:
		return nil, fmt.Errorf("%s: %d block_out_channels for %d down_block_types (want one per block)", name, len(c.BlockOutChannels), n)
	}
	if _, present, null := o.Get("num_attention_heads"); present && !null {
		// diffusers raises here: the key's meaning was never settled
		// (https://github.com/huggingface/diffusers/issues/2011).
		return nil, fmt.Errorf("%s: num_attention_heads is set, which diffusers rejects; attention_head_dim holds the head count", name)
	}
	c.LayersPerBlock = perBlock(o, "layers_per_block", 2, n)
	c.CrossAttentionDim = perBlock(o, "cross_attention_dim", 1280, n)
	c.AttentionHeadDim = perBlock(o, "attention_head_dim", 8, n)
	c.NumAttentionHeads = append([]int(nil), c.AttentionHeadDim...)
	c.OnlyCrossAttention = perBlockBool(o, "only_cross_attention", false, n)
	// mid_block_only_cross_attention follows a single only_cross_attention
	// flag when it is null or absent.
	mid := o.OptBool("mid_block_only_cross_attention", nil)
	if mid == nil {
		if v, present, _ := o.Get("only_cross_attention"); present && !jsonobj.IsList(v) {
			c.MidBlockOnlyCrossAttention = c.OnlyCrossAttention[0]
		}
	} else {
		c.MidBlockOnlyCrossAttention = *mid
	}
	if o.Err() != nil {
		return nil, o.Err()
	}
	// The per-block layer counts size the lists expanded next: check them
	// first.
	for i, l := range c.LayersPerBlock {
		if err := inRange(fmt.Sprintf("layers_per_block[%d]", i), l, 1, MaxLayersPerBlock); err != nil {
			return nil, fmt.Errorf("%s: %v", name, err)
		}
	}
	if err := c.transformerLayers(o); err != nil {
		return nil, err
	}
	c.Unused = o.Unused()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	return c, nil
}

// readScalars reads every key that is not per block.
func (c *UNetConfig) readScalars(o *jsonobj.Object) {
	c.SampleSize = size2(o, "sample_size")
	c.InChannels = o.Int("in_channels", 4)
	c.OutChannels = o.Int("out_channels", 4)
	c.CenterInputSample = o.Bool("center_input_sample", false)
	c.FlipSinToCos = o.Bool("flip_sin_to_cos", true)
	c.FreqShift = o.Float("freq_shift", 0)
	c.DownBlockTypes = o.Strs("down_block_types", []string{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"})
	c.MidBlockType = o.Str("mid_block_type", "UNetMidBlock2DCrossAttn")
	c.UpBlockTypes = o.Strs("up_block_types", []string{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"})
	c.BlockOutChannels = o.Ints("block_out_channels", []int{320, 640, 1280, 1280})
	c.DownsamplePadding = o.Int("downsample_padding", 1)
	c.MidBlockScaleFactor = o.Float("mid_block_scale_factor", 1)
	c.Dropout = o.Float("dropout", 0)
	c.ActFn = o.ReqStr("act_fn", "silu")
	c.NormNumGroups = o.OptInt("norm_num_groups", ptr(32))
	c.NormEps = o.Float("norm_eps", 1e-5)
	c.EncoderHidDim = o.OptInt("encoder_hid_dim", nil)
	c.EncoderHidDimType = o.Str("encoder_hid_dim_type", "")
	c.DualCrossAttention = o.Bool("dual_cross_attention", false)
	c.UseLinearProjection = o.Bool("use_linear_projection", false)
	c.ClassEmbedType = o.Str("class_embed_type", "")
	c.AdditionEmbedType = o.Str("addition_embed_type", "")
	c.AdditionTimeEmbedDim = o.OptInt("addition_time_embed_dim", nil)
	c.NumClassEmbeds = o.OptInt("num_class_embeds", nil)
	c.UpcastAttention = o.Bool("upcast_attention", false)
	c.ResnetTimeScaleShift = o.ReqStr("resnet_time_scale_shift", "default")
	c.ResnetSkipTimeAct = o.Bool("resnet_skip_time_act", false)
	c.ResnetOutScaleFactor = o.Float("resnet_out_scale_factor", 1)
	c.TimeEmbeddingType = o.ReqStr("time_embedding_type", "positional")
	c.TimeEmbeddingDim = o.OptInt("time_embedding_dim", nil)
	c.TimeEmbeddingActFn = o.Str("time_embedding_act_fn", "")
	c.TimestepPostAct = o.Str("timestep_post_act", "")
	c.TimeCondProjDim = o.OptInt("time_cond_proj_dim", nil)
	c.ConvInKernel = o.Int("conv_in_kernel", 3)
	c.ConvOutKernel = o.Int("conv_out_kernel", 3)
	c.ProjectionClassEmbeddingsInputDim = o.OptInt("projection_class_embeddings_input_dim", nil)
	c.AttentionType = o.ReqStr("attention_type", "default")
	c.ClassEmbeddingsConcat = o.Bool("class_embeddings_concat", false)
	c.CrossAttentionNorm = o.Str("cross_attention_norm", "")
	c.AdditionEmbedTypeNumHeads = o.Int("addition_embed_type_num_heads", 64)
}

func ptr[T any](v T) *T { return &v }

// Known block types of UNet2DConditionModel's get_down_block, get_up_block
// and get_mid_block.
var (
	knownDown = map[string]bool{"DownBlock2D": true, "ResnetDownsampleBlock2D": true, "AttnDownBlock2D": true,
		"CrossAttnDownBlock2D": true, "SimpleCrossAttnDownBlock2D": true, "SkipDownBlock2D": true,
		"AttnSkipDownBlock2D": true, "DownEncoderBlock2D": true, "AttnDownEncoderBlock2D": true,
		"KDownBlock2D": true, "KCrossAttnDownBlock2D": true}
	knownUp = map[string]bool{"UpBlock2D": true, "ResnetUpsampleBlock2D": true, "CrossAttnUpBlock2D": true,
		"SimpleCrossAttnUpBlock2D": true, "AttnUpBlock2D": true, "SkipUpBlock2D": true, "AttnSkipUpBlock2D": true,
		"UpDecoderBlock2D": true, "AttnUpDecoderBlock2D": true, "KUpBlock2D": true, "KCrossAttnUpBlock2D": true}
	knownMid = map[string]bool{"": true, "UNetMidBlock2DCrossAttn": true, "UNetMidBlock2DSimpleCrossAttn": true, "UNetMidBlock2D": true}
)

// trimUNetRes drops the "UNetRes" prefix that get_down_block/get_up_block
// accept as an alias.
func trimUNetRes(s string) string {
	if len(s) > 7 && s[:7] == "UNetRes" {
		return s[7:]
	}
	return s
}

// Validate checks what the constructor would refuse or could not build
// (unknown block types, non-positive sizes, bad kernels and options) and
// the limits of this package (see MaxBlocks and the others), so that every
// value is known to be usable before a model is built from it.
func (c *UNetConfig) Validate() error {
	return c.validate(false)
}

// ValidateEncoder is Validate for a config that describes only the modules
// up to the mid block (conv_in, the embeddings, the down and mid blocks),
// which is all a ControlNet has (config.ControlNetConfig's Encoder): the up
// blocks, out_channels and conv_out are not checked.
func (c *UNetConfig) ValidateEncoder() error {
	return c.validate(true)
}

func (c *UNetConfig) validate(encoderOnly bool) error {
	n := len(c.DownBlockTypes)
	if n == 0 || n > MaxBlocks || len(c.BlockOutChannels) != n || (!encoderOnly && len(c.UpBlockTypes) != n) {
		return fmt.Errorf("%d down_block_types, %d up_block_types, %d block_out_channels (want the same number, 1 to %d)", n, len(c.UpBlockTypes), len(c.BlockOutChannels), MaxBlocks)
	}
	for i, t := range c.DownBlockTypes {
		if !knownDown[trimUNetRes(t)] {
			return fmt.Errorf("down_block_types[%d]: unknown block type %q", i, t)
		}
	}
	if !encoderOnly {
		for i, t := range c.UpBlockTypes {
			if !knownUp[trimUNetRes(t)] {
				return fmt.Errorf("up_block_types[%d]: unknown block type %q", i, t)
			}
		}
	}
	if !knownMid[c.MidBlockType] {
		return fmt.Errorf("mid_block_type: unknown block type %q", c.MidBlockType)
	}
	if err := c.validateSizes(encoderOnly); err != nil {
		return err
	}
	if err := c.validateBlocks(encoderOnly); err != nil {
		return err
	}
	if err := c.validateNumbers(); err != nil {
		return err
	}
	return c.validateEmbeddings()
}

// validateSizes checks the model-wide sizes (without out_channels and
// conv_out_kernel for an encoder).
func (c *UNetConfig) validateSizes(encoderOnly bool) error {
	outCh, outK := c.OutChannels, c.ConvOutKernel
	if encoderOnly {
		outCh, outK = 1, 1 // nothing to check
	}
	if err := checkRanges(1, MaxWidth, intField{"in_channels", c.InChannels}, intField{"out_channels", outCh}); err != nil {
		return err
	}
	if err := checkRanges(1, MaxKernel, intField{"conv_in_kernel", c.ConvInKernel}, intField{"conv_out_kernel", outK}); err != nil {
		return err
	}
	if c.ConvInKernel%2 == 0 || outK%2 == 0 {
		// (k-1)/2 padding keeps the size only for odd kernels.
		return fmt.Errorf("conv_in_kernel %d / conv_out_kernel %d must be odd", c.ConvInKernel, c.ConvOutKernel)
	}
	if err := inRange("downsample_padding", c.DownsamplePadding, 0, MaxKernel); err != nil {
		return err
	}
	if c.NormNumGroups != nil {
		if err := inRange("norm_num_groups", *c.NormNumGroups, 1, MaxWidth); err != nil {
			return fmt.Errorf("%v (or null)", err)
		}
	}
	if c.SampleSize != nil {
		if err := checkRanges(1, MaxSampleSize, intField{"sample_size height", c.SampleSize.H}, intField{"sample_size width", c.SampleSize.W}); err != nil {
			return err
		}
	}
	for _, p := range []struct {
		key string
		v   *int
	}{{"time_embedding_dim", c.TimeEmbeddingDim}, {"addition_time_embed_dim", c.AdditionTimeEmbedDim},
		{"projection_class_embeddings_input_dim", c.ProjectionClassEmbeddingsInputDim}, {"encoder_hid_dim", c.EncoderHidDim},
		{"time_cond_proj_dim", c.TimeCondProjDim}, {"num_class_embeds", c.NumClassEmbeds}} {
		if p.v != nil {
			if err := inRange(p.key, *p.v, 1, MaxWidth); err != nil {
				return fmt.Errorf("%v (or null)", err)
			}
		}
	}
	return inRange("addition_embed_type_num_heads", c.AdditionEmbedTypeNumHeads, 1, MaxWidth)
}

// validateBlocks checks the per-block values and the transformer depths
// (without the up blocks' for an encoder).
func (c *UNetConfig) validateBlocks(encoderOnly bool) error {
	n := len(c.DownBlockTypes)
	up := c.UpTransformerLayers
	if encoderOnly {
		up = nil
	}
	if len(c.LayersPerBlock) != n || len(c.NumAttentionHeads) != n || len(c.CrossAttentionDim) != n ||
		len(c.OnlyCrossAttention) != n || len(c.TransformerLayers) != n || (!encoderOnly && len(up) != n) {
		return fmt.Errorf("per-block lists do not have one entry per block (%d)", n)
	}
	for i := range n {
		idx := func(key string) string { return fmt.Sprintf("%s[%d]", key, i) }
		if err := checkRanges(1, MaxWidth, intField{idx("block_out_channels"), c.BlockOutChannels[i]},
			intField{idx("attention_head_dim"), c.NumAttentionHeads[i]}, intField{idx("cross_attention_dim"), c.CrossAttentionDim[i]}); err != nil {
			return err
		}
		if err := inRange(idx("layers_per_block"), c.LayersPerBlock[i], 1, MaxLayersPerBlock); err != nil {
			return err
		}
		if c.NormNumGroups != nil && c.BlockOutChannels[i]%*c.NormNumGroups != 0 {
			return fmt.Errorf("block_out_channels[%d] = %d is not divisible by norm_num_groups %d", i, c.BlockOutChannels[i], *c.NormNumGroups)
		}
	}
	total := c.MidTransformerLayers
	for _, side := range []struct {
		name   string
		depths [][]int
		extra  int // resnets beyond layers_per_block
	}{{"down block", c.TransformerLayers, 0}, {"up block", up, 1}} {
		for i, ds := range side.depths {
			layers := c.LayersPerBlock[i]
			if side.extra > 0 {
				layers = c.LayersPerBlock[n-1-i]
			}
			if len(ds) != layers+side.extra {
				return fmt.Errorf("%s %d has %d transformer depths for %d resnets", side.name, i, len(ds), layers+side.extra)
			}
			for j, d := range ds {
				if err := inRange(fmt.Sprintf("%s %d resnet %d transformer depth", side.name, i, j), d, 1, MaxTransformerDepth); err != nil {
					return err
				}
				total += d
			}
		}
	}
	if err := inRange("mid block transformer depth", c.MidTransformerLayers, 1, MaxTransformerDepth); err != nil {
		return err
	}
	if total > MaxTransformerBlocks {
		return fmt.Errorf("the transformer depths add up to %d transformer blocks, want at most %d", total, MaxTransformerBlocks)
	}
	return nil
}

// validateNumbers checks the floating-point settings.
func (c *UNetConfig) validateNumbers() error {
	if err := positive("norm_eps", c.NormEps); err != nil {
		return err
	}
	if err := positive("resnet_out_scale_factor", c.ResnetOutScaleFactor); err != nil {
		return err // the resnets divide by it
	}
	if err := allFinite(floatField{"freq_shift", c.FreqShift}, floatField{"mid_block_scale_factor", c.MidBlockScaleFactor}, floatField{"dropout", c.Dropout}); err != nil {
		return err
	}
	if c.Dropout < 0 || c.Dropout > 1 {
		return fmt.Errorf("dropout = %g, want 0 to 1", c.Dropout)
	}
	return nil
}

// validateEmbeddings checks the time, class and addition embeddings.
func (c *UNetConfig) validateEmbeddings() error {
	switch c.TimeEmbeddingType {
	case "positional":
	case "fourier":
		if c.TimeEmbedDim()%2 != 0 {
			return fmt.Errorf("time_embed_dim %d must be even for fourier time embeddings", c.TimeEmbedDim())
		}
	default:
		return fmt.Errorf("time_embedding_type %q does not exist (fourier or positional)", c.TimeEmbeddingType)
	}
	switch c.AdditionEmbedType {
	case "", "text", "text_image", "image", "image_hint":
	case "text_time":
		if c.AdditionTimeEmbedDim == nil {
			return fmt.Errorf("addition_embed_type \"text_time\" needs addition_time_embed_dim > 0")
		}
		if *c.AdditionTimeEmbedDim%2 != 0 {
			// Timesteps() splits the channels into sin and cos halves.
			return fmt.Errorf("addition_time_embed_dim = %d must be even", *c.AdditionTimeEmbedDim)
		}
		if c.ProjectionClassEmbeddingsInputDim == nil {
			return fmt.Errorf("addition_embed_type \"text_time\" needs projection_class_embeddings_input_dim > 0")
		}
	default:
		return fmt.Errorf("addition_embed_type %q must be null, text, text_image, text_time, image or image_hint", c.AdditionEmbedType)
	}
	switch c.ClassEmbedType {
	case "", "timestep", "identity":
	case "projection", "simple_projection":
		if c.ProjectionClassEmbeddingsInputDim == nil {
			return fmt.Errorf("class_embed_type %q requires projection_class_embeddings_input_dim", c.ClassEmbedType)
		}
	default:
		return fmt.Errorf("class_embed_type %q is unknown", c.ClassEmbedType)
	}
	if c.EncoderHidDim == nil && c.EncoderHidDimType != "" {
		return fmt.Errorf("encoder_hid_dim_type %q needs encoder_hid_dim", c.EncoderHidDimType)
	}
	switch c.ResnetTimeScaleShift {
	case "default", "scale_shift", "ada_group", "spatial":
	default:
		return fmt.Errorf("resnet_time_scale_shift %q is unknown", c.ResnetTimeScaleShift)
	}
	return nil
}

// TimeEmbedDim is the width of the time embedding MLP's output (the
// resnets' temb channels): time_embedding_dim, else 4x (positional) or 2x
// (fourier) block_out_channels[0].
func (c *UNetConfig) TimeEmbedDim() int {
	if c.TimeEmbeddingDim != nil {
		return *c.TimeEmbeddingDim
	}
	if c.TimeEmbeddingType == "fourier" {
		return 2 * c.BlockOutChannels[0]
	}
	return 4 * c.BlockOutChannels[0]
}

// TimestepInputDim is the width of the sinusoidal timestep features fed to
// the time embedding MLP.
func (c *UNetConfig) TimestepInputDim() int {
	if c.TimeEmbeddingType == "fourier" {
		return c.TimeEmbedDim()
	}
	return c.BlockOutChannels[0]
}

// SkipChannels lists the channel count of every down-path output, in
// diffusers' down_block_res_samples order: conv_in's, then per down block
// each resnet's (or attention's) and its downsampler's (every block but the
// last). The up path consumes them in reverse; a ControlNet makes one
// residual per entry. The last entry is also the mid block's width.
func (c *UNetConfig) SkipChannels() []int {
	n := len(c.DownBlockTypes)
	out := []int{c.BlockOutChannels[0]}
	for i := range n {
		for range c.LayersPerBlock[i] {
			out = append(out, c.BlockOutChannels[i])
		}
		if i < n-1 {
			out = append(out, c.BlockOutChannels[i])
		}
	}
	return out
}
