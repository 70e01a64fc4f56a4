package controlnet

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/sdxl/singlefile"
)

// TestOriginalNames checks the mapping onto the original ControlNet layout
// against names worked out by hand from diffusers'
// convert_controlnet_checkpoint (SDXL: 2 layers per block, attention from
// level 1, 6 hint blocks).
func TestOriginalNames(t *testing.T) {
	u := config.SDXLBaseUNet()
	layout := singlefile.LayoutFromBlockTypes(u.DownBlockTypes, nil, 2)
	for ours, want := range map[string]string{
		"controlnet_down_blocks.3.weight":           "zero_convs.3.0.weight",
		"controlnet_down_blocks.8.bias":             "zero_convs.8.0.bias",
		"controlnet_mid_block.bias":                 "middle_block_out.0.bias",
		"controlnet_cond_embedding.conv_in.weight":  "input_hint_block.0.weight",
		"controlnet_cond_embedding.blocks.0.weight": "input_hint_block.2.weight",
		"controlnet_cond_embedding.blocks.5.bias":   "input_hint_block.12.bias",
		"controlnet_cond_embedding.conv_out.weight": "input_hint_block.14.weight",
		"conv_in.bias":                                                      "input_blocks.0.0.bias",
		"time_embedding.linear_2.weight":                                    "time_embed.2.weight",
		"add_embedding.linear_1.bias":                                       "label_emb.0.0.bias",
		"down_blocks.0.resnets.1.conv1.weight":                              "input_blocks.2.0.in_layers.2.weight",
		"down_blocks.0.downsamplers.0.conv.weight":                          "input_blocks.3.0.op.weight",
		"down_blocks.1.attentions.0.proj_in.weight":                         "input_blocks.4.1.proj_in.weight",
		"down_blocks.2.resnets.0.conv_shortcut.weight":                      "input_blocks.7.0.skip_connection.weight",
		"down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_k.weight": "input_blocks.8.1.transformer_blocks.9.attn2.to_k.weight",
		"mid_block.resnets.1.time_emb_proj.bias":                            "middle_block.2.emb_layers.1.bias",
		"mid_block.attentions.0.norm.weight":                                "middle_block.1.norm.weight",
	} {
		if got := singlefile.ControlNetName(ours, layout, 6); got != want {
			t.Errorf("%s -> %s, want %s", ours, got, want)
		}
	}
}

// TestSingleFiles writes the small golden ControlNet as single files (its
// own diffusers names; the original layout with and without
// control_model.) and loads them without a config, derived from the small
// base UNet's: every parameter must equal the folder's.
func TestSingleFiles(t *testing.T) {
	b := cpu.New()
	dir := golden.Path(t, smallDir)
	want, err := LoadDir(b, dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := config.ReadUNetConfig(golden.Path(t, "small/models/sdxl-small-base/unet/config.json"))
	if err != nil {
		t.Fatal(err)
	}
	layout := singlefile.LayoutFromBlockTypes(u.DownBlockTypes, nil, u.LayersPerBlock[0])
	write := func(file string, rename func(string) string) string {
		var ts []safetensors.Tensor
		for _, p := range nn.Params(want, "") {
			ts = append(ts, safetensors.Tensor{Name: rename(p.Name), Shape: p.Tensor().Shape(), Data: b.ToFloat32(p.Tensor())})
		}
		path := filepath.Join(t.TempDir(), file)
		if err := safetensors.WriteFile(path, ts, nil); err != nil {
			t.Fatal(err)
		}
		return path
	}
	hint := len(want.ControlNetCondEmbedding.Blocks)
	files := map[string]string{
		"diffusers names": filepath.Join(dir, "diffusion_pytorch_model.safetensors"),
		"original":        write("a.safetensors", func(n string) string { return singlefile.ControlNetName(n, layout, hint) }),
		"control_model.":  write("b.safetensors", func(n string) string { return "control_model." + singlefile.ControlNetName(n, layout, hint) }),
	}
	for name, path := range files {
		got, err := Open(b, path, u, LoadOptions{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(got.Config().Encoder.TransformerLayers[2], []int{2, 2}) || got.Config().ConditioningChannels != 3 {
			t.Errorf("%s: inferred config %+v", name, got.Config())
		}
		gp := nn.Params(got, "")
		for i, p := range nn.Params(want, "") {
			if gp[i].Name != p.Name || !slices.Equal(b.ToFloat32(gp[i].Tensor()), b.ToFloat32(p.Tensor())) {
				t.Fatalf("%s: %s differs from the folder's", name, p.Name)
			}
		}
	}
	// A ControlNet for another UNet is refused before its weights are read.
	if _, err := Open(b, files["original"], config.SDXLBaseUNet(), LoadOptions{}); err == nil {
		t.Error("the small ControlNet loaded for the full-size UNet")
	}
	if _, err := Open(b, dir, config.SDXLBaseUNet(), LoadOptions{}); err == nil || !strings.Contains(err.Error(), "cross_attention_dim is 48, the UNet's 2048") {
		t.Errorf("folder for the full-size UNet: err = %v", err)
	}
	notCN := write("c.safetensors", func(n string) string { return "model.diffusion_model." + n })
	if _, err := Open(b, notCN, u, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "not a ControlNet") {
		t.Errorf("not a ControlNet: err = %v", err)
	}
}
