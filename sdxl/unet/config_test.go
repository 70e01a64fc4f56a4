package unet

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sdxl-go/sdxl/sdxl/config"
)

func TestArchFromSDXLConfigs(t *testing.T) {
	a, err := archFromConfig(config.SDXLRefinerUNet(), false)
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]int{{4, 4}, {4, 4}, {4, 4}, {4, 4}}; !cmp.Equal(a.tLayersDown, want) {
		t.Errorf("refiner down transformer layers %v", a.tLayersDown)
	}
	if want := []int{6, 12, 24, 24}; !cmp.Equal(a.heads, want) {
		t.Errorf("refiner heads %v", a.heads)
	}
	a, err = archFromConfig(config.SDXLBaseUNet(), false)
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]int{{10, 10, 10}, {2, 2, 2}, {1, 1, 1}}; !cmp.Equal(a.tLayersUp, want) {
		t.Errorf("base up transformer layers %v, want %v", a.tLayersUp, want)
	}
	if want := []int{10}; !cmp.Equal(a.tLayersMid, want) {
		t.Errorf("base mid transformer layers %v", a.tLayersMid)
	}
	if a.timeEmbedDim != 1280 || a.timeInputDim != 320 || a.crossDim[2] != 2048 || a.midType != "UNetMidBlock2DCrossAttn" {
		t.Errorf("time embed %d/%d, cross %v, mid %q", a.timeEmbedDim, a.timeInputDim, a.crossDim, a.midType)
	}
}

// modified returns the SDXL base config with one key changed.
func modified(t *testing.T, key string, val any) (*config.UNetConfig, error) {
	t.Helper()
	data, err := config.RealConfigJSON(config.SDXLBaseName, "unet/config.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	m[key] = val
	data, _ = json.Marshal(m)
	return config.ParseUNetConfig("test", data)
}

func TestUnsupportedConfigs(t *testing.T) {
	for _, c := range []struct {
		key  string
		val  any
		want string
	}{
		{"down_block_types", []string{"DownBlock2D", "AttnDownBlock2D", "CrossAttnDownBlock2D"}, `down_block_types[1] = "AttnDownBlock2D"`},
		{"class_embed_type", "timestep", "class_embed_type"},
		{"attention_head_dim", []int{5, 10, 7}, "does not split into 7 attention heads"},
		{"addition_embed_type", "text", `addition_embed_type = "text"`},
		{"resnet_time_scale_shift", "scale_shift", "resnet_time_scale_shift"},
		{"time_embedding_act_fn", "silu", "time_embedding_act_fn"},
	} {
		cfg, err := modified(t, c.key, c.val)
		if err == nil {
			_, err = New(cfg)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s = %v: err = %v, want %q", c.key, c.val, err, c.want)
		}
	}
	// Supported variations build.
	for _, c := range []struct {
		key string
		val any
	}{
		{"only_cross_attention", true},
		{"use_linear_projection", false},
		{"resnet_out_scale_factor", 2.0},
		{"mid_block_type", nil},
		{"mid_block_type", "UNetMidBlock2D"},
		{"down_block_types", []string{"DownBlock2D", "UNetResCrossAttnDownBlock2D", "CrossAttnDownBlock2D"}},
	} {
		cfg, err := modified(t, c.key, c.val)
		if err != nil {
			t.Fatalf("%s = %v: %v", c.key, c.val, err)
		}
		if _, err := New(cfg); err != nil {
			t.Errorf("%s = %v: %v", c.key, c.val, err)
		}
	}
}
