package unet

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseConfigNormalisation(t *testing.T) {
	a, err := parseConfig(readTestConfig(t, "sdxl-refiner-unet-config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]int{{4, 4}, {4, 4}, {4, 4}, {4, 4}}; !cmp.Equal(a.tLayersDown, want) {
		t.Errorf("down transformer layers %v", a.tLayersDown)
	}
	if want := []int{6, 12, 24, 24}; !cmp.Equal(a.heads, want) {
		t.Errorf("heads %v", a.heads)
	}
	a, err = parseConfig(readTestConfig(t, "sdxl-base-unet-config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]int{{10, 10, 10}, {2, 2, 2}, {1, 1, 1}}; !cmp.Equal(a.tLayersUp, want) {
		t.Errorf("up transformer layers %v, want %v", a.tLayersUp, want)
	}
	if want := []int{10}; !cmp.Equal(a.tLayersMid, want) {
		t.Errorf("mid transformer layers %v", a.tLayersMid)
	}
	if a.timeEmbedDim != 1280 || a.crossDim[2] != 2048 || a.midType != "UNetMidBlock2DCrossAttn" {
		t.Errorf("time embed %d, cross %v, mid %q", a.timeEmbedDim, a.crossDim, a.midType)
	}
	// Asymmetric per-resnet layer counts with an explicit reverse list.
	var m map[string]any
	if err := json.Unmarshal(readTestConfig(t, "sdxl-base-unet-config.json"), &m); err != nil {
		t.Fatal(err)
	}
	m["transformer_layers_per_block"] = []any{[]int{1, 1}, []int{2, 3}, []int{4, 5}}
	m["reverse_transformer_layers_per_block"] = []any{[]int{6, 6, 7}, []int{2, 2, 2}, 1}
	data, _ := json.Marshal(m)
	a, err = parseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(a.tLayersDown, [][]int{{1, 1}, {2, 3}, {4, 5}}) || !cmp.Equal(a.tLayersUp, [][]int{{6, 6, 7}, {2, 2, 2}, {1, 1, 1}}) ||
		!cmp.Equal(a.tLayersMid, []int{4}) {
		t.Errorf("asymmetric: down %v up %v mid %v", a.tLayersDown, a.tLayersUp, a.tLayersMid)
	}
}

func TestParseConfigErrors(t *testing.T) {
	base := readTestConfig(t, "sdxl-base-unet-config.json")
	for _, c := range []struct {
		key  string
		val  any
		want string
	}{
		{"num_attention_heads", 8, "num_attention_heads is set"},
		{"up_block_types", []string{"UpBlock2D"}, "3 down_block_types but 1 up_block_types"},
		{"down_block_types", []string{"DownBlock2D", "AttnDownBlock2D", "CrossAttnDownBlock2D"}, `"AttnDownBlock2D" is not supported`},
		{"class_embed_type", "timestep", "class_embed_type"},
		{"attention_head_dim", []int{5, 10}, "attention_head_dim has 2 values"},
		{"attention_head_dim", []int{5, 10, 7}, "does not split into 7 attention heads"},
		{"transformer_layers_per_block", []any{[]int{1, 1}, 2, 3}, "reverse_transformer_layers_per_block is required"},
		{"layers_per_block", "two", "layers_per_block"},
		{"addition_embed_type", "text", `addition_embed_type "text"`},
		{"time_embedding_type", "fourier", "fourier"},
	} {
		var m map[string]any
		if err := json.Unmarshal(base, &m); err != nil {
			t.Fatal(err)
		}
		m[c.key] = c.val
		data, _ := json.Marshal(m)
		_, err := New(data)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s = %v: err = %v, want %q", c.key, c.val, err, c.want)
		}
	}
}
