// Package singlefile reads SDXL checkpoints in the original Stability AI
// ("sgm") single-file layout, such as sd_xl_base_1.0.safetensors, by mapping
// every diffusers parameter name of our models to its single-file name.
//
// The mapping is the one diffusers' scripts/convert_diffusers_to_original_sdxl.py
// applies, run forwards on our own parameter names (so it is exact for the
// names that script produces), generalised from its hard-coded three-level
// UNet to any level count so the four-level refiner maps too:
//
//   - UNet: model.diffusion_model.{input_blocks,middle_block,output_blocks,...}
//   - VAE: first_stage_model.*, mid-block attention stored as 1x1 convs
//   - CLIP ViT-L: conditioner.embedders.0.transformer.* (with or without
//     "text_model.", as transformers 4 or 5 saved it)
//   - OpenCLIP bigG: conditioner.embedders.1.model.* (conditioner.embedders.0
//     in the refiner) with q/k/v fused into in_proj_weight and the projection
//     stored transposed.
package singlefile

import (
	"fmt"
	"strings"
)

// Kind says which model a single file holds.
type Kind int

const (
	Unknown Kind = iota
	Base
	Refiner
)

func (k Kind) String() string {
	switch k {
	case Base:
		return "base"
	case Refiner:
		return "refiner"
	}
	return "unknown"
}

// Prefixes of the components inside a single file.
const (
	UNetPrefix = "model.diffusion_model."
	VAEPrefix  = "first_stage_model."
)

// OpenCLIPPrefix returns where OpenCLIP bigG lives: embedder 1 in the base
// (after CLIP ViT-L), embedder 0 in the refiner (its only text encoder).
func OpenCLIPPrefix(k Kind) string {
	if k == Refiner {
		return "conditioner.embedders.0.model."
	}
	return "conditioner.embedders.1.model."
}

// CLIPPrefix is where the base's CLIP ViT-L lives.
const CLIPPrefix = "conditioner.embedders.0.transformer."

// Detect tells base from refiner by their text encoders' keys.
func Detect(has func(name string) bool) (Kind, error) {
	switch {
	case has("conditioner.embedders.1.model.ln_final.weight") && has(CLIPPrefix+"text_model.final_layer_norm.weight"),
		has("conditioner.embedders.1.model.ln_final.weight") && has(CLIPPrefix+"final_layer_norm.weight"):
		return Base, nil
	case has("conditioner.embedders.0.model.ln_final.weight"):
		return Refiner, nil
	}
	if !has(UNetPrefix + "input_blocks.0.0.weight") {
		return Unknown, fmt.Errorf("not an SDXL single-file checkpoint: no %sinput_blocks.0.0.weight", UNetPrefix)
	}
	return Unknown, fmt.Errorf("SDXL single file without recognisable text encoders (no conditioner.embedders.*.model.ln_final.weight)")
}

// UNetInChannels is the input channel count of a single file's UNet, read
// from its conv_in (input_blocks.0.0.weight, [out, in, 3, 3]): 4, or 9 for
// an inpainting UNet such as sd_xl_base_1.0_inpainting_0.1; 0 when the file
// has no such weight.
func UNetInChannels(shape func(name string) ([]int, bool)) int {
	s, ok := shape(UNetPrefix + "input_blocks.0.0.weight")
	if !ok || len(s) != 4 {
		return 0
	}
	return s[1]
}

// UNetLayout is the block structure the UNet mapping needs.
type UNetLayout struct {
	// DownAttn and UpAttn say, per level, whether the block has attentions
	// (CrossAttnDownBlock2D / CrossAttnUpBlock2D).
	DownAttn, UpAttn []bool
	// LayersPerBlock is the number of resnets of a down block; up blocks
	// have one more.
	LayersPerBlock int
}

// LayoutFromBlockTypes builds a layout from the config's block type names.
func LayoutFromBlockTypes(down, up []string, layersPerBlock int) UNetLayout {
	l := UNetLayout{LayersPerBlock: layersPerBlock}
	for _, t := range down {
		l.DownAttn = append(l.DownAttn, strings.HasPrefix(t, "CrossAttn"))
	}
	for _, t := range up {
		l.UpAttn = append(l.UpAttn, strings.HasPrefix(t, "CrossAttn"))
	}
	return l
}

type pair struct{ sd, hf string }

// UNetName maps a diffusers UNet parameter name to its single-file name
// (without UNetPrefix).
func (l UNetLayout) UNetName(name string) string {
	top := []pair{
		{"time_embed.0.", "time_embedding.linear_1."},
		{"time_embed.2.", "time_embedding.linear_2."},
		{"input_blocks.0.0.", "conv_in."},
		{"out.0.", "conv_norm_out."},
		{"out.2.", "conv_out."},
		{"label_emb.0.0.", "add_embedding.linear_1."},
		{"label_emb.0.2.", "add_embedding.linear_2."},
	}
	for _, p := range top {
		if strings.HasPrefix(name, p.hf) {
			return p.sd + name[len(p.hf):]
		}
	}
	if strings.Contains(name, "resnets") {
		for _, p := range []pair{
			{"in_layers.0", "norm1"}, {"in_layers.2", "conv1"}, {"out_layers.0", "norm2"},
			{"out_layers.3", "conv2"}, {"emb_layers.1", "time_emb_proj"}, {"skip_connection", "conv_shortcut"},
		} {
			name = strings.Replace(name, p.hf, p.sd, 1)
		}
	}
	for _, p := range l.blockPairs() {
		if strings.HasPrefix(name, p.hf) {
			return p.sd + name[len(p.hf):]
		}
	}
	return name
}

// blockPairs lists (single-file, diffusers) block prefixes. Single files
// number input blocks consecutively: conv_in is 0, then each level's
// resnets (with their attention as sub-module 1) and its downsampler; output
// blocks hold one resnet each (attention at 1), the level's upsampler being
// the last sub-module of its last block.
func (l UNetLayout) blockPairs() []pair {
	var ps []pair
	idx := 1
	n := len(l.DownAttn)
	for i := 0; i < n; i++ {
		for j := 0; j < l.LayersPerBlock; j++ {
			ps = append(ps, pair{fmt.Sprintf("input_blocks.%d.0.", idx), fmt.Sprintf("down_blocks.%d.resnets.%d.", i, j)})
			if l.DownAttn[i] {
				ps = append(ps, pair{fmt.Sprintf("input_blocks.%d.1.", idx), fmt.Sprintf("down_blocks.%d.attentions.%d.", i, j)})
			}
			idx++
		}
		if i < n-1 {
			ps = append(ps, pair{fmt.Sprintf("input_blocks.%d.0.op.", idx), fmt.Sprintf("down_blocks.%d.downsamplers.0.conv.", i)})
			idx++
		}
	}
	idx = 0
	for i := 0; i < len(l.UpAttn); i++ {
		for j := 0; j <= l.LayersPerBlock; j++ {
			ps = append(ps, pair{fmt.Sprintf("output_blocks.%d.0.", idx), fmt.Sprintf("up_blocks.%d.resnets.%d.", i, j)})
			if l.UpAttn[i] {
				ps = append(ps, pair{fmt.Sprintf("output_blocks.%d.1.", idx), fmt.Sprintf("up_blocks.%d.attentions.%d.", i, j)})
			}
			if j == l.LayersPerBlock && i < len(l.UpAttn)-1 {
				sub := 1
				if l.UpAttn[i] {
					sub = 2
				}
				ps = append(ps, pair{fmt.Sprintf("output_blocks.%d.%d.", idx, sub), fmt.Sprintf("up_blocks.%d.upsamplers.0.", i)})
			}
			idx++
		}
	}
	ps = append(ps,
		pair{"middle_block.0.", "mid_block.resnets.0."},
		pair{"middle_block.1.", "mid_block.attentions.0."},
		pair{"middle_block.2.", "mid_block.resnets.1."},
	)
	return ps
}

// VAEName maps a diffusers AutoencoderKL parameter name to its single-file
// name (without VAEPrefix) for a VAE with the given number of levels. The
// boolean reports a mid-block attention projection weight, which single
// files store as a 1x1 convolution ([C, C, 1, 1] instead of [C, C]).
func VAEName(name string, levels int) (string, bool) {
	var ps []pair
	for i := 0; i < levels; i++ {
		for j := 0; j < 2; j++ {
			ps = append(ps, pair{fmt.Sprintf("encoder.down.%d.block.%d.", i, j), fmt.Sprintf("encoder.down_blocks.%d.resnets.%d.", i, j)})
		}
		if i < levels-1 {
			ps = append(ps, pair{fmt.Sprintf("encoder.down.%d.downsample.", i), fmt.Sprintf("encoder.down_blocks.%d.downsamplers.0.", i)})
			ps = append(ps, pair{fmt.Sprintf("decoder.up.%d.upsample.", levels-1-i), fmt.Sprintf("decoder.up_blocks.%d.upsamplers.0.", i)})
		}
		for j := 0; j < 3; j++ {
			ps = append(ps, pair{fmt.Sprintf("decoder.up.%d.block.%d.", levels-1-i, j), fmt.Sprintf("decoder.up_blocks.%d.resnets.%d.", i, j)})
		}
	}
	for i := 0; i < 2; i++ {
		for _, side := range []string{"encoder.", "decoder."} {
			ps = append(ps, pair{fmt.Sprintf("%smid.block_%d.", side, i+1), fmt.Sprintf("%smid_block.resnets.%d.", side, i)})
		}
	}
	for _, side := range []string{"encoder.", "decoder."} {
		ps = append(ps, pair{side + "mid.attn_1.", side + "mid_block.attentions.0."})
		ps = append(ps, pair{side + "norm_out.", side + "conv_norm_out."})
	}
	for _, p := range ps {
		if strings.HasPrefix(name, p.hf) {
			name = p.sd + name[len(p.hf):]
			break
		}
	}
	name = strings.Replace(name, "conv_shortcut", "nin_shortcut", 1)
	conv := false
	if i := strings.Index(name, "mid.attn_1."); i >= 0 {
		rest := name[i+len("mid.attn_1."):]
		for _, p := range []pair{{"norm.", "group_norm."}, {"q.", "to_q."}, {"k.", "to_k."}, {"v.", "to_v."}, {"proj_out.", "to_out.0."}} {
			if strings.HasPrefix(rest, p.hf) {
				rest = p.sd + rest[len(p.hf):]
				conv = p.sd != "norm." && strings.HasSuffix(rest, ".weight")
				break
			}
		}
		name = name[:i+len("mid.attn_1.")] + rest
	}
	return name, conv
}

// OpenCLIPName maps a transformers CLIPTextModelWithProjection parameter
// name (with or without "text_model.") to its OpenCLIP name. For q/k/v
// projections it returns the fused in_proj name and which third (0, 1, 2)
// of its rows holds the parameter; otherwise part is -1. transposed reports
// the text projection, stored as [in, out].
func OpenCLIPName(name string) (src string, part int, transposed bool) {
	n := strings.TrimPrefix(name, "text_model.")
	if n == "text_projection.weight" {
		return "text_projection", -1, true
	}
	switch n {
	case "embeddings.token_embedding.weight":
		return "token_embedding.weight", -1, false
	case "embeddings.position_embedding.weight":
		return "positional_embedding", -1, false
	}
	if strings.HasPrefix(n, "final_layer_norm.") {
		return "ln_final." + strings.TrimPrefix(n, "final_layer_norm."), -1, false
	}
	if !strings.HasPrefix(n, "encoder.layers.") {
		return n, -1, false
	}
	n = "transformer.resblocks." + strings.TrimPrefix(n, "encoder.layers.")
	for i, qkv := range []string{".self_attn.q_proj.", ".self_attn.k_proj.", ".self_attn.v_proj."} {
		if j := strings.Index(n, qkv); j >= 0 {
			return n[:j] + ".attn.in_proj_" + n[j+len(qkv):], i, false
		}
	}
	for _, p := range []pair{{"ln_1", "layer_norm1"}, {"ln_2", "layer_norm2"}, {".mlp.c_fc.", ".mlp.fc1."}, {".mlp.c_proj.", ".mlp.fc2."}, {".attn.", ".self_attn."}} {
		n = strings.Replace(n, p.hf, p.sd, 1)
	}
	return n, -1, false
}
