package singlefile

import (
	"fmt"
	"strings"

	"github.com/sdxl-go/sdxl/nn"
)

// ControlNetPrefix is where the original ControlNet code (cldm) keeps a
// ControlNet inside a checkpoint; stand-alone files often drop it.
const ControlNetPrefix = "control_model."

// ControlNetLayoutPrefix tells whether a checkpoint holds a ControlNet in
// the original layout (input_hint_block, zero_convs, middle_block_out) and
// under which prefix: "control_model." or "" for the stand-alone files.
func ControlNetLayoutPrefix(has func(name string) bool) (prefix string, ok bool) {
	for _, p := range []string{ControlNetPrefix, ""} {
		if has(p+"input_hint_block.0.weight") && has(p+"middle_block_out.0.weight") {
			return p, true
		}
	}
	return "", false
}

// ControlNetName maps a diffusers ControlNetModel parameter name to its
// original name (without the prefix), the inverse of diffusers'
// convert_controlnet_checkpoint: the UNet-shared modules as in the UNet
// (input_blocks, middle_block, time_embed, label_emb),
// controlnet_down_blocks.k as zero_convs.k.0, controlnet_mid_block as
// middle_block_out.0, and the conditioning embedding as the convolutions
// of input_hint_block (a Sequential with a SiLU after each convolution:
// conv_in at 0, blocks.i at 2(i+1), conv_out after the last block).
// hintBlocks is the number of convolutions in
// controlnet_cond_embedding.blocks.
func ControlNetName(name string, layout UNetLayout, hintBlocks int) string {
	const cond = "controlnet_cond_embedding."
	switch {
	case strings.HasPrefix(name, "controlnet_down_blocks."):
		rest := strings.TrimPrefix(name, "controlnet_down_blocks.")
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			return name
		}
		return "zero_convs." + rest[:i] + ".0" + rest[i:]
	case strings.HasPrefix(name, "controlnet_mid_block."):
		return "middle_block_out.0." + strings.TrimPrefix(name, "controlnet_mid_block.")
	case strings.HasPrefix(name, cond+"conv_in."):
		return "input_hint_block.0." + strings.TrimPrefix(name, cond+"conv_in.")
	case strings.HasPrefix(name, cond+"conv_out."):
		return fmt.Sprintf("input_hint_block.%d.", 2*(hintBlocks+1)) + strings.TrimPrefix(name, cond+"conv_out.")
	case strings.HasPrefix(name, cond+"blocks."):
		rest := strings.TrimPrefix(name, cond+"blocks.")
		var i int
		var tail string
		if _, err := fmt.Sscanf(rest, "%d.%s", &i, &tail); err != nil {
			return name
		}
		return fmt.Sprintf("input_hint_block.%d.%s", 2*(i+1), tail)
	}
	return layout.UNetName(name)
}

// ControlNet maps a ControlNet's parameters (diffusers names) onto the
// original layout under prefix (see ControlNetLayoutPrefix). layout
// describes its down blocks (it has no up blocks); hintBlocks is the number
// of convolutions in controlnet_cond_embedding.blocks.
func ControlNet(src nn.Source, params []nn.Param, prefix string, layout UNetLayout, hintBlocks int) (*View, error) {
	return newView(src, prefix, params, func(n string) entry { return entry{src: ControlNetName(n, layout, hintBlocks)} })
}
