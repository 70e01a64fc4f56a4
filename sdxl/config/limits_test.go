package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/clip"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/sdxl/unet"
)

// atLimits is a UNet config at this package's limits: MaxBlocks blocks of
// MaxLayersPerBlock resnets, MaxWidth channels, and transformer depths
// adding up to at most MaxTransformerBlocks.
func atLimits() string {
	n := config.MaxBlocks
	list := func(v string) string { return "[" + strings.TrimSuffix(strings.Repeat(v+", ", n), ", ") + "]" }
	return fmt.Sprintf(`{"down_block_types": %s, "up_block_types": %s, "block_out_channels": %s, "layers_per_block": %d,
		"transformer_layers_per_block": 3, "attention_head_dim": 1024, "cross_attention_dim": %d,
		"addition_embed_type": "text_time", "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": %d}`,
		list(`"CrossAttnDownBlock2D"`), list(`"CrossAttnUpBlock2D"`), list(fmt.Sprint(config.MaxWidth)),
		config.MaxLayersPerBlock, config.MaxWidth, config.MaxWidth)
}

// allocated runs f and returns the bytes it allocated.
func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// TestConfigAtLimitsIsCheap: the largest meta UNet the limits allow
// builds with little memory, so a hostile config costs nothing before the
// loader compares it with the weight file (or the memory estimate refuses
// random weights of that size).
func TestConfigAtLimitsIsCheap(t *testing.T) {
	var params int64
	bytes := allocated(func() {
		c, err := config.ParseUNetConfig("limits", []byte(atLimits()))
		if err != nil {
			t.Fatal(err)
		}
		u, err := unet.New(c)
		if err != nil {
			t.Fatal(err)
		}
		params = nn.CountParams(u)
	})
	t.Logf("meta UNet at the limits: %d parameters described, %.1f MB allocated", params, float64(bytes)/(1<<20))
	if bytes > 200<<20 {
		t.Errorf("building the meta UNet at the limits allocated %d MB, want < 200", bytes>>20)
	}
	// One more of anything is refused.
	over := strings.Replace(atLimits(), fmt.Sprintf(`"layers_per_block": %d`, config.MaxLayersPerBlock), `"layers_per_block": 17`, 1)
	if _, err := config.ParseUNetConfig("over", []byte(over)); err == nil || !strings.Contains(err.Error(), "layers_per_block[0] = 17, want 1 to 16") {
		t.Errorf("over the limit: %v", err)
	}
}

// BenchmarkConfigAtLimits times parsing the config at the limits and
// building its meta UNet.
func BenchmarkConfigAtLimits(b *testing.B) {
	data := []byte(atLimits())
	b.ReportAllocs()
	for b.Loop() {
		c, err := config.ParseUNetConfig("limits", data)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := unet.New(c); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHostileConfigValues: the values that crashed or exhausted memory
// before are errors naming the file and key (issue 11 item 2 and 4).
func TestHostileConfigValues(t *testing.T) {
	for _, c := range []struct {
		parse func(string, []byte) error
		json  string
		want  string
	}{
		{unetParse, `{"layers_per_block": -1}`, "layers_per_block[0] = -1, want 1 to 16"},
		{unetParse, `{"layers_per_block": [2, -1, 2, 2]}`, "layers_per_block[1] = -1"},
		{unetParse, `{"layers_per_block": 2147483647}`, "layers_per_block[0] = 2147483647"},
		{unetParse, `{"layers_per_block": 1e300}`, "layers_per_block: must be an integer or a list of 4 integers, got 1e300"},
		{unetParse, `{"transformer_layers_per_block": 100000}`, "transformer depth = 100000, want 1 to 64"},
		{unetParse, `{"transformer_layers_per_block": 60, "layers_per_block": 16}`, "add up to"},
		{unetParse, `{"block_out_channels": [320, 640, 1280, 2147483647]}`, "block_out_channels[3] = 2147483647, want 1 to 65536"},
		{unetParse, `{"norm_eps": NaN}`, "norm_eps = NaN, want a finite number > 0"},
		{unetParse, `{"freq_shift": Infinity}`, "freq_shift = +Inf"},
		{unetParse, `{"sample_size": -5}`, "sample_size height = -5"},
		{unetParse, `{"down_block_types": ["DownBlock2D","DownBlock2D","DownBlock2D","DownBlock2D","DownBlock2D","DownBlock2D","DownBlock2D","DownBlock2D","DownBlock2D"]}`, "9 down_block_types, want at most 8"},
		{vaeParse, `{"layers_per_block": -1}`, "layers_per_block = -1"},
		{vaeParse, `{"scaling_factor": NaN}`, "scaling_factor = NaN"},
		{vaeParse, `{"latent_channels": 1, "latents_mean": [0], "latents_std": [0]}`, "latents_std[0] = 0"},
		{teParse, `{"num_hidden_layers": 1000000000}`, "num_hidden_layers = 1000000000, want 1 to 256"},
		{teParse, `{"vocab_size": 2147483647}`, "vocab_size = 2147483647"},
		{teParse, `{"max_position_embeddings": 0}`, "max_position_embeddings = 0"},
		{teParse, `{"eos_token_id": 50000}`, "eos_token_id = 50000, want 0 to 49407"},
		{teParse, `{"layer_norm_eps": -Infinity}`, "layer_norm_eps = -Inf"},
	} {
		err := c.parse("/m/config.json", []byte(c.json))
		if err == nil || !strings.HasPrefix(err.Error(), "/m/config.json") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.json, err, c.want)
		}
	}
}

func unetParse(name string, data []byte) error {
	_, err := config.ParseUNetConfig(name, data)
	return err
}

func vaeParse(name string, data []byte) error {
	_, err := config.ParseVAEConfig(name, data)
	return err
}

func teParse(name string, data []byte) error {
	_, err := config.ParseTextEncoderConfig(name, data)
	return err
}

// TestConfigClaimsMoreThanWeights: a text encoder config that claims more
// layers than its weight file holds is refused by the strict loader's key
// check before any weight is allocated (the meta model is all it builds).
func TestConfigClaimsMoreThanWeights(t *testing.T) {
	src := golden.Path(t, "small/models/sdxl-small-base/text_encoder")
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.Replace(string(data), `"num_hidden_layers": 3`, `"num_hidden_layers": 256`, 1))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(src, "model.safetensors"), filepath.Join(dir, "model.safetensors")); err != nil {
		t.Fatal(err)
	}
	var lerr error
	bytes := allocated(func() { _, lerr = clip.LoadDir(cpu.New(), dir, clip.LoadOptions{}) })
	if lerr == nil || !strings.Contains(lerr.Error(), `missing weight "encoder.layers.3.`) {
		t.Errorf("256 layers for a 3-layer file: %v", lerr)
	}
	t.Logf("refused after allocating %.1f MB: %v", float64(bytes)/(1<<20), lerr)
	if bytes > 50<<20 {
		t.Errorf("allocated %d MB before refusing", bytes>>20)
	}
}
