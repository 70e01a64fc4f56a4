package unet

import "fmt"

// arch is a UNet2DConditionModel config normalised the way diffusers'
// constructor does it: every int-or-list field expanded to one value per
// level, attention_head_dim read as the number of heads (diffusers' naming
// quirk), transformer layer counts per level and per resnet for the down,
// mid and up paths. Building the model only reads arch.
type arch struct {
	inChannels, outChannels int
	centerInput             bool
	flipSinToCos            bool
	freqShift               float64

	downTypes, upTypes []string
	midType            string // "UNetMidBlock2DCrossAttn", "UNetMidBlock2D" or "" (none)

	blockOut       []int
	layersPerBlock []int
	heads          []int // per level (num_attention_heads, or attention_head_dim)
	crossDim       []int
	onlyCross      []bool
	midOnlyCross   bool
	tLayersDown    [][]int // [level][resnet]
	tLayersUp      [][]int // [up level][resnet]
	tLayersMid     []int

	downsamplePadding int
	midScale          float32
	groups            int
	eps               float32
	linearProj        bool
	resnetOutScale    float32

	timeEmbedDim  int // time_embedding_dim or 4*block_out_channels[0]
	timeInputDim  int // block_out_channels[0]
	convInKernel  int
	convOutKernel int

	addEmbedType   string // "text_time" or ""
	addTimeDim     int
	projClassInDim int
}

// validate checks the structural consistency diffusers checks in
// _check_config, plus what this implementation supports. An encoder-only
// arch (a ControlNet's) has no up blocks and no conv_out.
func (a *arch) validate(encoderOnly bool) error {
	n := len(a.downTypes)
	if n == 0 {
		return fmt.Errorf("down_block_types is empty")
	}
	if !encoderOnly && len(a.upTypes) != n {
		return fmt.Errorf("%d down_block_types but %d up_block_types", n, len(a.upTypes))
	}
	if len(a.blockOut) != n {
		return fmt.Errorf("%d block_out_channels for %d down blocks", len(a.blockOut), n)
	}
	for i, t := range a.downTypes {
		if t != "DownBlock2D" && t != "CrossAttnDownBlock2D" {
			return fmt.Errorf("down_block_types[%d] = %q is not supported (DownBlock2D, CrossAttnDownBlock2D)", i, t)
		}
	}
	for i, t := range a.upTypes {
		if t != "UpBlock2D" && t != "CrossAttnUpBlock2D" {
			return fmt.Errorf("up_block_types[%d] = %q is not supported (UpBlock2D, CrossAttnUpBlock2D)", i, t)
		}
	}
	switch a.midType {
	case "UNetMidBlock2DCrossAttn", "UNetMidBlock2D", "":
	default:
		return fmt.Errorf("mid_block_type %q is not supported (UNetMidBlock2DCrossAttn, UNetMidBlock2D, null)", a.midType)
	}
	if a.groups <= 0 {
		return fmt.Errorf("norm_num_groups = %d is not supported (must be set)", a.groups)
	}
	for i, c := range a.blockOut {
		if c <= 0 || c%a.groups != 0 {
			return fmt.Errorf("block_out_channels[%d] = %d does not split into norm_num_groups = %d", i, c, a.groups)
		}
		if a.heads[i] <= 0 || c%a.heads[i] != 0 {
			return fmt.Errorf("block_out_channels[%d] = %d does not split into %d attention heads", i, c, a.heads[i])
		}
	}
	for i, d := range a.crossDim {
		if d != a.crossDim[0] {
			// One context tensor cannot feed levels of different widths.
			return fmt.Errorf("cross_attention_dim %v differs between levels (%d at level %d): not supported", a.crossDim, d, i)
		}
	}
	if a.addEmbedType != "" && a.addEmbedType != "text_time" {
		return fmt.Errorf("addition_embed_type %q is not supported (text_time or null)", a.addEmbedType)
	}
	if a.addEmbedType == "text_time" && (a.addTimeDim <= 0 || a.projClassInDim <= 0) {
		return fmt.Errorf("addition_embed_type text_time needs addition_time_embed_dim and projection_class_embeddings_input_dim")
	}
	if a.convInKernel%2 == 0 || (!encoderOnly && a.convOutKernel%2 == 0) {
		return fmt.Errorf("conv_in_kernel %d / conv_out_kernel %d must be odd", a.convInKernel, a.convOutKernel)
	}
	return nil
}

// hasCrossAttention reports whether any block attends to a text context.
func (a *arch) hasCrossAttention() bool {
	if a.midType == "UNetMidBlock2DCrossAttn" {
		return true
	}
	for _, t := range a.downTypes {
		if t == "CrossAttnDownBlock2D" {
			return true
		}
	}
	for _, t := range a.upTypes {
		if t == "CrossAttnUpBlock2D" {
			return true
		}
	}
	return false
}
