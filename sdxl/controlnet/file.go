package controlnet

import (
	"fmt"
	"os"
	"strings"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/sdxl/singlefile"
	"github.com/sdxl-go/sdxl/tensor"
)

// Open loads the ControlNet at path for a UNet with config u: a diffusers
// folder (LoadDir) or one .safetensors file (LoadFile). It fails, before
// reading any weight, when the ControlNet does not fit the UNet (CheckUNet).
func Open(b tensor.Backend, path string, u *config.UNetConfig, opt LoadOptions) (*ControlNet, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return LoadFile(b, path, u, opt)
	}
	return loadDir(b, path, u, opt)
}

// LoadFile loads a ControlNet from one .safetensors file, with diffusers
// names (controlnet_cond_embedding.*, ...) or in the original layout
// (input_hint_block, zero_convs, middle_block_out, under control_model. or
// not). Such files carry no config: it is derived from the UNet config u as
// ControlNetModel.from_unet does, with the conditioning embedding's sizes
// and each transformer's depth read from the file's shapes and keys (a
// config of other block types or widths is reported by the strict load,
// naming the weight).
func LoadFile(b tensor.Backend, path string, u *config.UNetConfig, opt LoadOptions) (*ControlNet, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	src, err := config.NewWeightSet(f)
	if err != nil {
		return nil, err
	}
	has := func(n string) bool { _, ok := src.Shape(n); return ok }
	prefix, original := singlefile.ControlNetLayoutPrefix(has)
	if !original && !has("controlnet_cond_embedding.conv_in.weight") {
		return nil, fmt.Errorf("%s: not a ControlNet (neither controlnet_cond_embedding.conv_in.weight nor input_hint_block.0.weight)", path)
	}
	layout := singlefile.LayoutFromBlockTypes(u.DownBlockTypes, nil, u.LayersPerBlock[0])
	name := func(n string) string { return n }
	if original {
		hint := hintBlocks(has, prefix)
		name = func(n string) string { return prefix + singlefile.ControlNetName(n, layout, hint) }
	}
	cfg, err := inferConfig(src, name, u)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c, err := New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.CheckUNet(u); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var s nn.Source = src
	if original {
		if s, err = singlefile.ControlNet(src, nn.Params(c, ""), prefix, layout, len(c.ControlNetCondEmbedding.Blocks)); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := c.Load(b, s, opt); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.Files = []string{path}
	return c, nil
}

// hintBlocks counts the convolutions of input_hint_block between the
// first and the last (a SiLU follows each, so they sit at even indexes).
func hintBlocks(has func(string) bool, prefix string) int {
	n := 0
	for has(fmt.Sprintf("%sinput_hint_block.%d.weight", prefix, 2*(n+1))) {
		n++
	}
	return max(n-1, 0) // the last one is conv_out
}

// inferConfig derives a file's config from the UNet's (from_unet) and the
// file itself; name maps a diffusers parameter name to the file's.
func inferConfig(src nn.Source, name func(string) string, u *config.UNetConfig) (*config.ControlNetConfig, error) {
	shape := func(n string) []int { s, _ := src.Shape(name(n)); return s }
	in := shape("controlnet_cond_embedding.conv_in.weight")
	if len(in) != 4 {
		return nil, fmt.Errorf("the conditioning embedding's first convolution has shape %v, want [out, channels, 3, 3]", in)
	}
	widths := []int{in[0]}
	for i := 1; ; i += 2 { // blocks.1, .3, ... are the stride-2 convolutions
		s := shape(fmt.Sprintf("controlnet_cond_embedding.blocks.%d.weight", i))
		if s == nil {
			break
		}
		widths = append(widths, s[0])
	}
	cfg, err := config.ControlNetFromUNet(u, in[1], widths)
	if err != nil {
		return nil, err
	}
	// Transformer depths: count the transformer blocks the file has.
	has := func(n string) bool { return shape(n) != nil }
	depth := func(attn string) int {
		d := 0
		for has(fmt.Sprintf("%s.transformer_blocks.%d.norm1.weight", attn, d)) {
			d++
		}
		return d
	}
	e := cfg.Encoder
	for i := range e.TransformerLayers {
		if !strings.HasPrefix(e.DownBlockTypes[i], "CrossAttn") {
			continue
		}
		for j := range e.TransformerLayers[i] {
			if d := depth(fmt.Sprintf("down_blocks.%d.attentions.%d", i, j)); d > 0 {
				e.TransformerLayers[i][j] = d
			}
		}
	}
	if d := depth("mid_block.attentions.0"); d > 0 {
		e.MidTransformerLayers = d
	}
	return cfg, cfg.Validate()
}
