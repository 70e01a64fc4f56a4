package config

import (
	"encoding/json"
	"fmt"
	"os"
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
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseUNetConfig(path, data)
}

// ParseUNetConfig parses and validates a UNet config; name identifies it in
// errors (usually its path).
func ParseUNetConfig(name string, data []byte) (*UNetConfig, error) {
	o, err := parseObject(name, data)
	if err != nil {
		return nil, err
	}
	c := &UNetConfig{}
	c.SampleSize = o.size2("sample_size")
	c.InChannels = o.int("in_channels", 4)
	c.OutChannels = o.int("out_channels", 4)
	c.CenterInputSample = o.bool("center_input_sample", false)
	c.FlipSinToCos = o.bool("flip_sin_to_cos", true)
	c.FreqShift = o.float("freq_shift", 0)
	c.DownBlockTypes = o.strs("down_block_types", []string{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"})
	c.MidBlockType = o.str("mid_block_type", "UNetMidBlock2DCrossAttn")
	c.UpBlockTypes = o.strs("up_block_types", []string{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"})
	c.BlockOutChannels = o.ints("block_out_channels", []int{320, 640, 1280, 1280})
	c.DownsamplePadding = o.int("downsample_padding", 1)
	c.MidBlockScaleFactor = o.float("mid_block_scale_factor", 1)
	c.Dropout = o.float("dropout", 0)
	c.ActFn = o.reqStr("act_fn", "silu")
	c.NormNumGroups = o.optInt("norm_num_groups", ptr(32))
	c.NormEps = o.float("norm_eps", 1e-5)
	c.EncoderHidDim = o.optInt("encoder_hid_dim", nil)
	c.EncoderHidDimType = o.str("encoder_hid_dim_type", "")
	c.DualCrossAttention = o.bool("dual_cross_attention", false)
	c.UseLinearProjection = o.bool("use_linear_projection", false)
	c.ClassEmbedType = o.str("class_embed_type", "")
	c.AdditionEmbedType = o.str("addition_embed_type", "")
	c.AdditionTimeEmbedDim = o.optInt("addition_time_embed_dim", nil)
	c.NumClassEmbeds = o.optInt("num_class_embeds", nil)
	c.UpcastAttention = o.bool("upcast_attention", false)
	c.ResnetTimeScaleShift = o.reqStr("resnet_time_scale_shift", "default")
	c.ResnetSkipTimeAct = o.bool("resnet_skip_time_act", false)
	c.ResnetOutScaleFactor = o.float("resnet_out_scale_factor", 1)
	c.TimeEmbeddingType = o.reqStr("time_embedding_type", "positional")
	c.TimeEmbeddingDim = o.optInt("time_embedding_dim", nil)
	c.TimeEmbeddingActFn = o.str("time_embedding_act_fn", "")
	c.TimestepPostAct = o.str("timestep_post_act", "")
	c.TimeCondProjDim = o.optInt("time_cond_proj_dim", nil)
	c.ConvInKernel = o.int("conv_in_kernel", 3)
	c.ConvOutKernel = o.int("conv_out_kernel", 3)
	c.ProjectionClassEmbeddingsInputDim = o.optInt("projection_class_embeddings_input_dim", nil)
	c.AttentionType = o.reqStr("attention_type", "default")
	c.ClassEmbeddingsConcat = o.bool("class_embeddings_concat", false)
	c.CrossAttentionNorm = o.str("cross_attention_norm", "")
	c.AdditionEmbedTypeNumHeads = o.int("addition_embed_type_num_heads", 64)
	if o.err != nil {
		return nil, o.err
	}

	n := len(c.DownBlockTypes)
	switch {
	case n == 0:
		return nil, fmt.Errorf("%s: down_block_types is empty", name)
	case len(c.UpBlockTypes) != n:
		// The constructor's own check (_check_config).
		return nil, fmt.Errorf("%s: %d down_block_types but %d up_block_types (want the same number)", name, n, len(c.UpBlockTypes))
	case len(c.BlockOutChannels) != n:
		return nil, fmt.Errorf("%s: %d block_out_channels for %d down_block_types (want one per block)", name, len(c.BlockOutChannels), n)
	}
	if _, present, null := o.get("num_attention_heads"); present && !null {
		// diffusers raises here: the key's meaning was never settled
		// (https://github.com/huggingface/diffusers/issues/2011).
		return nil, fmt.Errorf("%s: num_attention_heads is set, which diffusers rejects; attention_head_dim holds the head count", name)
	}
	c.LayersPerBlock = o.perBlock("layers_per_block", 2, n)
	c.CrossAttentionDim = o.perBlock("cross_attention_dim", 1280, n)
	c.AttentionHeadDim = o.perBlock("attention_head_dim", 8, n)
	c.NumAttentionHeads = append([]int(nil), c.AttentionHeadDim...)
	c.OnlyCrossAttention = o.perBlockBool("only_cross_attention", false, n)
	// mid_block_only_cross_attention follows a single only_cross_attention
	// flag when it is null or absent.
	mid := o.optBool("mid_block_only_cross_attention", nil)
	if mid == nil {
		if v, present, _ := o.get("only_cross_attention"); present && !isList(v) {
			c.MidBlockOnlyCrossAttention = c.OnlyCrossAttention[0]
		}
	} else {
		c.MidBlockOnlyCrossAttention = *mid
	}
	if o.err != nil {
		return nil, o.err
	}
	if err := c.transformerLayers(o); err != nil {
		return nil, err
	}
	c.Unused = o.unused()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	return c, nil
}

func ptr[T any](v T) *T { return &v }

// ints reads a list of integers.
func (o *object) ints(key string, def []int) []int {
	v, present, null := o.get(key)
	switch {
	case !present:
		return append([]int(nil), def...)
	case null:
		o.fail(key, "must be a list of integers, not null")
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(v, &items); err != nil {
		o.fail(key, "must be a list of integers, got %s", describe(v))
		return nil
	}
	out := make([]int, len(items))
	for i, it := range items {
		x, ok := decodeInt(it)
		if !ok {
			o.fail(key, "entry %d must be an integer, got %s", i, describe(it))
			return nil
		}
		out[i] = x
	}
	return out
}

// size2 reads sample_size: null, an int or [h, w].
func (o *object) size2(key string) *Size2 {
	v, present, null := o.get(key)
	if !present || null {
		return nil
	}
	if i, ok := decodeInt(v); ok {
		return &Size2{i, i}
	}
	var hw []int
	if err := json.Unmarshal(v, &hw); err != nil || len(hw) != 2 {
		o.fail(key, "must be an integer, [height, width] or null, got %s", describe(v))
		return nil
	}
	return &Size2{hw[0], hw[1]}
}

// transformerLayers normalises transformer_layers_per_block and
// reverse_transformer_layers_per_block to per-block, per-resnet depths,
// following the constructor and the blocks: an int applies to every block
// and resnet; a list has one entry per block, each an int (every resnet of
// the block) or a list with one depth per resnet. A list of lists needs
// reverse_transformer_layers_per_block (diffusers raises otherwise). The
// mid block takes the last block's entry (its first value if a list).
func (c *UNetConfig) transformerLayers(o *object) error {
	n := len(c.DownBlockTypes)
	const key = "transformer_layers_per_block"
	v, present, null := o.get(key)
	if null {
		return fmt.Errorf("%s: %s must be an integer or a list, not null", o.file, key)
	}
	if !present {
		v = json.RawMessage("1")
	}
	perBlock := make([]json.RawMessage, n)
	nested := false
	if isList(v) {
		var items []json.RawMessage
		if err := json.Unmarshal(v, &items); err != nil {
			return fmt.Errorf("%s: %s must be an integer or a list, got %s", o.file, key, describe(v))
		}
		if len(items) != n {
			return fmt.Errorf("%s: %s has %d entries, want one per block (%d)", o.file, key, len(items), n)
		}
		for i, it := range items {
			perBlock[i] = it
			nested = nested || isList(it)
		}
	} else {
		for i := range perBlock {
			perBlock[i] = v
		}
	}
	c.TransformerLayers = make([][]int, n)
	for i := range n {
		d, err := perLayer(o.file, fmt.Sprintf("%s[%d]", key, i), perBlock[i], c.LayersPerBlock[i])
		if err != nil {
			return err
		}
		c.TransformerLayers[i] = d
	}
	midEntry, err := perLayerPrefix(o.file, fmt.Sprintf("%s[%d] (mid block)", key, n-1), perBlock[n-1])
	if err != nil {
		return err
	}
	c.MidTransformerLayers = midEntry

	const rkey = "reverse_transformer_layers_per_block"
	rv, rpresent, rnull := o.get(rkey)
	hasRev := rpresent && !rnull
	if nested && !hasRev {
		return fmt.Errorf("%s: %s is a list of lists (an asymmetric UNet), so %s is required (as diffusers requires)", o.file, key, rkey)
	}
	upEntries := make([]json.RawMessage, n)
	if hasRev {
		var items []json.RawMessage
		if err := json.Unmarshal(rv, &items); err != nil || !isList(rv) {
			return fmt.Errorf("%s: %s must be a list with one entry per up block, got %s", o.file, rkey, describe(rv))
		}
		if len(items) != n {
			return fmt.Errorf("%s: %s has %d entries, want one per up block (%d)", o.file, rkey, len(items), n)
		}
		copy(upEntries, items)
	} else {
		for i := range n {
			upEntries[i] = perBlock[n-1-i]
		}
	}
	c.UpTransformerLayers = make([][]int, n)
	name := key + " reversed"
	if hasRev {
		name = rkey
	}
	for i := range n {
		d, err := perLayer(o.file, fmt.Sprintf("%s[%d]", name, i), upEntries[i], c.LayersPerBlock[n-1-i]+1)
		if err != nil {
			return err
		}
		c.UpTransformerLayers[i] = d
	}
	return nil
}

// perLayer expands one block's entry: an int for every one of count
// resnets, or a list with exactly count depths.
func perLayer(file, key string, v json.RawMessage, count int) ([]int, error) {
	if !isList(v) {
		d, ok := decodeInt(v)
		if !ok {
			return nil, fmt.Errorf("%s: %s must be an integer or a list of integers, got %s", file, key, describe(v))
		}
		return repeat(d, count), nil
	}
	var ds []json.RawMessage
	if err := json.Unmarshal(v, &ds); err != nil {
		return nil, fmt.Errorf("%s: %s must be a list of integers, got %s", file, key, describe(v))
	}
	if len(ds) != count {
		return nil, fmt.Errorf("%s: %s has %d depths, want one per resnet of the block (%d)", file, key, len(ds), count)
	}
	out := make([]int, count)
	for j, it := range ds {
		d, ok := decodeInt(it)
		if !ok {
			return nil, fmt.Errorf("%s: %s entry %d must be an integer, got %s", file, key, j, describe(it))
		}
		out[j] = d
	}
	return out, nil
}

// perLayerPrefix returns an entry's int, or its first depth if a list.
func perLayerPrefix(file, key string, v json.RawMessage) (int, error) {
	if !isList(v) {
		d, ok := decodeInt(v)
		if !ok {
			return 0, fmt.Errorf("%s: %s must be an integer, got %s", file, key, describe(v))
		}
		return d, nil
	}
	var ds []json.RawMessage
	if err := json.Unmarshal(v, &ds); err != nil || len(ds) == 0 {
		return 0, fmt.Errorf("%s: %s must be a non-empty list of integers, got %s", file, key, describe(v))
	}
	d, ok := decodeInt(ds[0])
	if !ok {
		return 0, fmt.Errorf("%s: %s entry 0 must be an integer, got %s", file, key, describe(ds[0]))
	}
	return d, nil
}

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

// Validate checks what the constructor would refuse or could not build:
// unknown block types, non-positive sizes, bad kernels and options.
func (c *UNetConfig) Validate() error {
	n := len(c.DownBlockTypes)
	if n == 0 || len(c.UpBlockTypes) != n || len(c.BlockOutChannels) != n {
		return fmt.Errorf("%d down_block_types, %d up_block_types, %d block_out_channels (want the same non-zero number)", n, len(c.UpBlockTypes), len(c.BlockOutChannels))
	}
	for i, t := range c.DownBlockTypes {
		if !knownDown[trimUNetRes(t)] {
			return fmt.Errorf("down_block_types[%d]: unknown block type %q", i, t)
		}
	}
	for i, t := range c.UpBlockTypes {
		if !knownUp[trimUNetRes(t)] {
			return fmt.Errorf("up_block_types[%d]: unknown block type %q", i, t)
		}
	}
	if !knownMid[c.MidBlockType] {
		return fmt.Errorf("mid_block_type: unknown block type %q", c.MidBlockType)
	}
	for _, f := range []struct {
		key string
		v   int
	}{{"in_channels", c.InChannels}, {"out_channels", c.OutChannels}, {"conv_in_kernel", c.ConvInKernel}, {"conv_out_kernel", c.ConvOutKernel}} {
		if f.v <= 0 {
			return fmt.Errorf("%s = %d, want > 0", f.key, f.v)
		}
	}
	if c.ConvInKernel%2 == 0 || c.ConvOutKernel%2 == 0 {
		// (k-1)/2 padding keeps the size only for odd kernels.
		return fmt.Errorf("conv_in_kernel %d / conv_out_kernel %d must be odd", c.ConvInKernel, c.ConvOutKernel)
	}
	if c.DownsamplePadding < 0 {
		return fmt.Errorf("downsample_padding = %d, want >= 0", c.DownsamplePadding)
	}
	if c.NormNumGroups != nil && *c.NormNumGroups <= 0 {
		return fmt.Errorf("norm_num_groups = %d, want > 0 or null", *c.NormNumGroups)
	}
	if !(c.NormEps > 0) {
		return fmt.Errorf("norm_eps = %g, want > 0", c.NormEps)
	}
	if c.SampleSize != nil && (c.SampleSize.H <= 0 || c.SampleSize.W <= 0) {
		return fmt.Errorf("sample_size %dx%d, want > 0", c.SampleSize.H, c.SampleSize.W)
	}
	for i := range n {
		if c.BlockOutChannels[i] <= 0 {
			return fmt.Errorf("block_out_channels[%d] = %d, want > 0", i, c.BlockOutChannels[i])
		}
		if c.NormNumGroups != nil && c.BlockOutChannels[i]%*c.NormNumGroups != 0 {
			return fmt.Errorf("block_out_channels[%d] = %d is not divisible by norm_num_groups %d", i, c.BlockOutChannels[i], *c.NormNumGroups)
		}
		if c.LayersPerBlock[i] <= 0 {
			return fmt.Errorf("layers_per_block[%d] = %d, want > 0", i, c.LayersPerBlock[i])
		}
		if c.NumAttentionHeads[i] <= 0 {
			return fmt.Errorf("attention_head_dim[%d] = %d heads, want > 0", i, c.NumAttentionHeads[i])
		}
		if c.CrossAttentionDim[i] <= 0 {
			return fmt.Errorf("cross_attention_dim[%d] = %d, want > 0", i, c.CrossAttentionDim[i])
		}
		for j, d := range c.TransformerLayers[i] {
			if d <= 0 {
				return fmt.Errorf("transformer_layers_per_block: block %d resnet %d has depth %d, want > 0", i, j, d)
			}
		}
	}
	for i := range n {
		for j, d := range c.UpTransformerLayers[i] {
			if d <= 0 {
				return fmt.Errorf("up block %d resnet %d has transformer depth %d, want > 0", i, j, d)
			}
		}
	}
	if c.MidTransformerLayers <= 0 {
		return fmt.Errorf("mid block transformer depth %d, want > 0", c.MidTransformerLayers)
	}
	switch c.TimeEmbeddingType {
	case "positional":
	case "fourier":
		if c.TimeEmbedDim()%2 != 0 {
			return fmt.Errorf("time_embed_dim %d must be even for fourier time embeddings", c.TimeEmbedDim())
		}
	default:
		return fmt.Errorf("time_embedding_type %q does not exist (fourier or positional)", c.TimeEmbeddingType)
	}
	if c.TimeEmbeddingDim != nil && *c.TimeEmbeddingDim <= 0 {
		return fmt.Errorf("time_embedding_dim = %d, want > 0 or null", *c.TimeEmbeddingDim)
	}
	switch c.AdditionEmbedType {
	case "", "text", "text_image", "image", "image_hint":
	case "text_time":
		if c.AdditionTimeEmbedDim == nil || *c.AdditionTimeEmbedDim <= 0 {
			return fmt.Errorf("addition_embed_type \"text_time\" needs addition_time_embed_dim > 0")
		}
		if *c.AdditionTimeEmbedDim%2 != 0 {
			// Timesteps() splits the channels into sin and cos halves.
			return fmt.Errorf("addition_time_embed_dim = %d must be even", *c.AdditionTimeEmbedDim)
		}
		if c.ProjectionClassEmbeddingsInputDim == nil || *c.ProjectionClassEmbeddingsInputDim <= 0 {
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

// NonSDXL lists the settings of c that lie outside what the SDXL family
// (base, refiner and their fine-tunes) uses, one "key = value" string each;
// an engine implementing only SDXL's blocks should refuse a config for which
// it is non-empty rather than build a different model.
func (c *UNetConfig) NonSDXL() []string {
	var out []string
	add := func(cond bool, format string, args ...any) {
		if cond {
			out = append(out, fmt.Sprintf(format, args...))
		}
	}
	for i, t := range c.DownBlockTypes {
		add(t != "DownBlock2D" && t != "CrossAttnDownBlock2D", "down_block_types[%d] = %q", i, t)
	}
	for i, t := range c.UpBlockTypes {
		add(t != "UpBlock2D" && t != "CrossAttnUpBlock2D", "up_block_types[%d] = %q", i, t)
	}
	add(c.MidBlockType != "UNetMidBlock2DCrossAttn" && c.MidBlockType != "UNetMidBlock2D" && c.MidBlockType != "", "mid_block_type = %q", c.MidBlockType)
	for i, b := range c.OnlyCrossAttention {
		add(b, "only_cross_attention[%d] = true", i)
	}
	add(c.MidBlockOnlyCrossAttention, "mid_block_only_cross_attention = true")
	add(c.ActFn != "silu" && c.ActFn != "swish", "act_fn = %q", c.ActFn)
	add(c.NormNumGroups == nil, "norm_num_groups = null")
	add(c.DualCrossAttention, "dual_cross_attention = true")
	add(c.ClassEmbedType != "", "class_embed_type = %q", c.ClassEmbedType)
	add(c.NumClassEmbeds != nil, "num_class_embeds = %v", deref(c.NumClassEmbeds))
	add(c.AdditionEmbedType != "text_time" && c.AdditionEmbedType != "", "addition_embed_type = %q", c.AdditionEmbedType)
	add(c.ResnetTimeScaleShift != "default", "resnet_time_scale_shift = %q", c.ResnetTimeScaleShift)
	add(c.ResnetSkipTimeAct, "resnet_skip_time_act = true")
	add(c.ResnetOutScaleFactor != 1, "resnet_out_scale_factor = %g", c.ResnetOutScaleFactor)
	add(c.TimeEmbeddingType != "positional", "time_embedding_type = %q", c.TimeEmbeddingType)
	add(c.TimeEmbeddingActFn != "", "time_embedding_act_fn = %q", c.TimeEmbeddingActFn)
	add(c.TimestepPostAct != "", "timestep_post_act = %q", c.TimestepPostAct)
	add(c.TimeCondProjDim != nil, "time_cond_proj_dim = %v", deref(c.TimeCondProjDim))
	add(c.AttentionType != "default", "attention_type = %q", c.AttentionType)
	add(c.ClassEmbeddingsConcat, "class_embeddings_concat = true")
	add(c.CrossAttentionNorm != "", "cross_attention_norm = %q", c.CrossAttentionNorm)
	add(c.EncoderHidDim != nil || c.EncoderHidDimType != "", "encoder_hid_dim = %v / encoder_hid_dim_type = %q", deref(c.EncoderHidDim), c.EncoderHidDimType)
	return out
}

func deref(p *int) any {
	if p == nil {
		return "null"
	}
	return *p
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

// NumAddTimeIDs is how many micro-conditioning numbers the "text_time"
// addition embedding expects beside a pooled text embedding of width
// pooledDim: (projection_class_embeddings_input_dim - pooledDim) /
// addition_time_embed_dim; 6 for the base (original size, crop, target
// size), 5 for the refiner (aesthetic score instead of the target size).
func (c *UNetConfig) NumAddTimeIDs(pooledDim int) (int, error) {
	if c.AdditionEmbedType != "text_time" {
		return 0, fmt.Errorf("addition_embed_type is %q, not text_time", c.AdditionEmbedType)
	}
	rest := *c.ProjectionClassEmbeddingsInputDim - pooledDim
	if rest <= 0 || rest%*c.AdditionTimeEmbedDim != 0 {
		return 0, fmt.Errorf("projection_class_embeddings_input_dim %d minus the pooled text width %d is not a positive multiple of addition_time_embed_dim %d",
			*c.ProjectionClassEmbeddingsInputDim, pooledDim, *c.AdditionTimeEmbedDim)
	}
	return rest / *c.AdditionTimeEmbedDim, nil
}

// UNetBlock describes one down or up block as the constructor builds it.
type UNetBlock struct {
	Type  string
	Index int
	// InChannels is the block's input width for down blocks; for up
	// blocks it is the width of the skip connection of the last resnet
	// (diffusers' in_channels argument).
	InChannels  int
	OutChannels int
	// PrevOutputChannels is the up block's input width (the previous up
	// block's or the mid block's output); 0 for down blocks.
	PrevOutputChannels int
	// NumLayers is the number of resnets (layers_per_block, +1 for up
	// blocks).
	NumLayers int
	// ResnetIn[j] is the input width of resnet j (for up blocks including
	// the concatenated skip connection).
	ResnetIn []int
	// HasCrossAttention is true for the CrossAttn* types; then
	// TransformerLayers[j] is the depth of the transformer after resnet j.
	HasCrossAttention  bool
	TransformerLayers  []int
	NumHeads           int
	HeadDim            int // OutChannels / NumHeads, floored as diffusers does
	CrossAttentionDim  int
	OnlyCrossAttention bool
	// AddDownsample / AddUpsample: every block but the last one.
	AddDownsample bool
	AddUpsample   bool
}

// DownBlocks describes the down blocks.
func (c *UNetConfig) DownBlocks() []UNetBlock {
	n := len(c.DownBlockTypes)
	out := make([]UNetBlock, n)
	outCh := c.BlockOutChannels[0]
	for i := range n {
		in := outCh
		outCh = c.BlockOutChannels[i]
		b := UNetBlock{
			Type: c.DownBlockTypes[i], Index: i, InChannels: in, OutChannels: outCh,
			NumLayers: c.LayersPerBlock[i], AddDownsample: i != n-1,
			HasCrossAttention: trimUNetRes(c.DownBlockTypes[i]) == "CrossAttnDownBlock2D",
			NumHeads:          c.NumAttentionHeads[i], HeadDim: outCh / c.NumAttentionHeads[i],
			CrossAttentionDim: c.CrossAttentionDim[i], OnlyCrossAttention: c.OnlyCrossAttention[i],
		}
		for j := range b.NumLayers {
			if j == 0 {
				b.ResnetIn = append(b.ResnetIn, in)
			} else {
				b.ResnetIn = append(b.ResnetIn, outCh)
			}
		}
		if b.HasCrossAttention {
			b.TransformerLayers = append([]int(nil), c.TransformerLayers[i]...)
		}
		out[i] = b
	}
	return out
}

// UpBlocks describes the up blocks, with the per-block lists reversed as the
// constructor does (heads, cross-attention widths, layers, only-cross).
func (c *UNetConfig) UpBlocks() []UNetBlock {
	n := len(c.UpBlockTypes)
	rev := func(s []int, i int) int { return s[n-1-i] }
	out := make([]UNetBlock, n)
	outCh := rev(c.BlockOutChannels, 0)
	for i := range n {
		prev := outCh
		outCh = rev(c.BlockOutChannels, i)
		in := rev(c.BlockOutChannels, min(i+1, n-1))
		b := UNetBlock{
			Type: c.UpBlockTypes[i], Index: i, InChannels: in, OutChannels: outCh, PrevOutputChannels: prev,
			NumLayers: rev(c.LayersPerBlock, i) + 1, AddUpsample: i != n-1,
			HasCrossAttention: trimUNetRes(c.UpBlockTypes[i]) == "CrossAttnUpBlock2D",
			NumHeads:          rev(c.NumAttentionHeads, i), HeadDim: outCh / rev(c.NumAttentionHeads, i),
			CrossAttentionDim: rev(c.CrossAttentionDim, i), OnlyCrossAttention: c.OnlyCrossAttention[n-1-i],
		}
		for j := range b.NumLayers {
			skip := outCh
			if j == b.NumLayers-1 {
				skip = in
			}
			resIn := outCh
			if j == 0 {
				resIn = prev
			}
			b.ResnetIn = append(b.ResnetIn, resIn+skip)
		}
		if b.HasCrossAttention {
			b.TransformerLayers = append([]int(nil), c.UpTransformerLayers[i]...)
		}
		out[i] = b
	}
	return out
}

// UNetMid describes the mid block.
type UNetMid struct {
	Type     string // "" when there is none
	Channels int
	// HasCrossAttention: UNetMidBlock2DCrossAttn (two resnets around one
	// transformer of depth TransformerLayers); UNetMidBlock2D in a UNet has
	// a single resnet and no attention.
	HasCrossAttention bool
	NumResnets        int
	TransformerLayers int
	NumHeads          int
	HeadDim           int
	CrossAttentionDim int
}

// MidBlock describes the mid block.
func (c *UNetConfig) MidBlock() UNetMid {
	n := len(c.BlockOutChannels)
	m := UNetMid{Type: c.MidBlockType, Channels: c.BlockOutChannels[n-1]}
	switch c.MidBlockType {
	case "UNetMidBlock2DCrossAttn":
		m.HasCrossAttention = true
		m.NumResnets = 2
		m.TransformerLayers = c.MidTransformerLayers
		m.NumHeads = c.NumAttentionHeads[n-1]
		m.HeadDim = m.Channels / m.NumHeads
		m.CrossAttentionDim = c.CrossAttentionDim[n-1]
	case "UNetMidBlock2D":
		m.NumResnets = 1 // get_mid_block builds it with num_layers=0
	case "UNetMidBlock2DSimpleCrossAttn":
		m.NumResnets = 2
	}
	return m
}
