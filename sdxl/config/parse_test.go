package config_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/sdxl/unet"
	"github.com/sdxl-go/sdxl/sdxl/vae"
)

// TestUNetDefaults: an empty config is UNet2DConditionModel() with its
// constructor defaults (the SD 1.x layout).
func TestUNetDefaults(t *testing.T) {
	c, err := config.ParseUNetConfig("unet/config.json", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &config.UNetConfig{
		InChannels: 4, OutChannels: 4, FlipSinToCos: true,
		DownBlockTypes:             []string{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"},
		UpBlockTypes:               []string{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"},
		MidBlockType:               "UNetMidBlock2DCrossAttn",
		OnlyCrossAttention:         []bool{false, false, false, false},
		BlockOutChannels:           []int{320, 640, 1280, 1280},
		LayersPerBlock:             []int{2, 2, 2, 2},
		DownsamplePadding:          1,
		MidBlockScaleFactor:        1,
		ActFn:                      "silu",
		NormNumGroups:              ptr(32),
		NormEps:                    1e-5,
		CrossAttentionDim:          []int{1280, 1280, 1280, 1280},
		TransformerLayers:          [][]int{{1, 1}, {1, 1}, {1, 1}, {1, 1}},
		UpTransformerLayers:        [][]int{{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}},
		MidTransformerLayers:       1,
		AttentionHeadDim:           []int{8, 8, 8, 8},
		NumAttentionHeads:          []int{8, 8, 8, 8},
		ResnetTimeScaleShift:       "default",
		ResnetOutScaleFactor:       1,
		TimeEmbeddingType:          "positional",
		ConvInKernel:               3,
		ConvOutKernel:              3,
		AttentionType:              "default",
		AdditionEmbedTypeNumHeads:  64,
		MidBlockOnlyCrossAttention: false,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}
	if c.TimeEmbedDim() != 1280 || c.TimestepInputDim() != 320 {
		t.Errorf("time embed %d / %d", c.TimeEmbedDim(), c.TimestepInputDim())
	}
	// SD 1.x's UNet: 859,520,964 parameters with cross_attention_dim 768.
	c, err = config.ParseUNetConfig("sd15", []byte(`{"cross_attention_dim": 768, "sample_size": 64}`))
	if err != nil {
		t.Fatal(err)
	}
	u, err := unet.New(c)
	if err != nil || nn.CountParams(u) != 859_520_964 {
		t.Errorf("SD 1.5 UNet: %v (%v), want 859520964 parameters", u, err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestUNetNormalisation(t *testing.T) {
	base := `"down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
		"up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
		"block_out_channels": [320, 640, 1280]`
	parse := func(extra string) (*config.UNetConfig, error) {
		return config.ParseUNetConfig("unet/config.json", []byte(`{`+base+extra+`}`))
	}
	// Asymmetric depths (list of lists) with the required reverse list.
	c, err := parse(`, "layers_per_block": [1, 2, 2], "transformer_layers_per_block": [1, [2, 3], [4, 5]],
		"reverse_transformer_layers_per_block": [[6, 7, 8], [9, 9, 9], 1], "attention_head_dim": [5, 10, 20],
		"upcast_attention": null, "mid_block_only_cross_attention": null, "only_cross_attention": false,
		"sample_size": [96, 64], "cross_attention_dim": [2048, 2048, 1024]`)
	if err != nil {
		t.Fatal(err)
	}
	for what, pair := range map[string][2]any{
		"down depths":  {c.TransformerLayers, [][]int{{1}, {2, 3}, {4, 5}}},
		"up depths":    {c.UpTransformerLayers, [][]int{{6, 7, 8}, {9, 9, 9}, {1, 1}}},
		"mid depth":    {c.MidTransformerLayers, 4},
		"heads":        {c.NumAttentionHeads, []int{5, 10, 20}},
		"cross dims":   {c.CrossAttentionDim, []int{2048, 2048, 1024}},
		"sample size":  {*c.SampleSize, config.Size2{H: 96, W: 64}},
		"layers":       {c.LayersPerBlock, []int{1, 2, 2}},
		"upcast(null)": {c.UpcastAttention, false},
	} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			t.Errorf("%s = %v, want %v", what, pair[0], pair[1])
		}
	}
	// A null mid block and a lone only_cross_attention flag.
	c, err = parse(`, "mid_block_type": null, "only_cross_attention": true, "norm_num_groups": null, "time_embedding_dim": 512`)
	if err != nil {
		t.Fatal(err)
	}
	if c.MidBlockType != "" || !c.MidBlockOnlyCrossAttention || !reflect.DeepEqual(c.OnlyCrossAttention, []bool{true, true, true}) ||
		c.NormNumGroups != nil || c.TimeEmbedDim() != 512 {
		t.Errorf("mid %q, mid only-cross %v, only-cross %v, groups %v, temb %d", c.MidBlockType, c.MidBlockOnlyCrossAttention, c.OnlyCrossAttention, c.NormNumGroups, c.TimeEmbedDim())
	}
	// Unknown keys are kept, not refused.
	c, err = parse(`, "_name_or_path": "x", "some_future_option": 3`)
	if err != nil || !reflect.DeepEqual(c.Unused, []string{"some_future_option"}) {
		t.Errorf("unused = %v (%v)", c.Unused, err)
	}
}

// TestUNetErrors: every error names the file and the key or value at fault.
func TestUNetErrors(t *testing.T) {
	three := `"down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
		"up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "block_out_channels": [320, 640, 1280]`
	cases := []struct{ json, want string }{
		{`[1, 2]`, "not a JSON object"},
		{`{"in_channels": 4,}`, "not valid JSON"},
		{`null`, "not a JSON object"},
		{`{} {}`, "trailing data"},
		{`{"in_channels": 2.5}`, "in_channels: must be an integer, got 2.5"},
		{`{"in_channels": null}`, "in_channels: must be an integer, not null"},
		{`{"in_channels": "4"}`, `in_channels: must be an integer, got "4"`},
		{`{"norm_eps": "small"}`, "norm_eps: must be a number"},
		{`{"use_linear_projection": 1}`, "use_linear_projection: must be true, false or null"},
		{`{"act_fn": null}`, "act_fn: must be a string, not null"},
		{`{"down_block_types": null}`, "down_block_types: must be a list of strings, not null"},
		{`{"block_out_channels": [320, "x"]}`, "block_out_channels: entry 1 must be an integer"},
		{`{"down_block_types": []}`, "down_block_types is empty"},
		{`{` + three + `, "up_block_types": ["UpBlock2D"]}`, "3 down_block_types but 1 up_block_types"},
		{`{"down_block_types": ["DownBlock2D"], "up_block_types": ["UpBlock2D"]}`, "4 block_out_channels for 1 down_block_types"},
		{`{` + three + `, "layers_per_block": [2, 2]}`, "layers_per_block: has 2 entries, want one per block (3)"},
		{`{` + three + `, "attention_head_dim": [5, null, 20]}`, "attention_head_dim: entry 1 must be an integer, got null"},
		{`{` + three + `, "attention_head_dim": "five"}`, `attention_head_dim: must be an integer or a list of 3 integers, got "five"`},
		{`{` + three + `, "cross_attention_dim": null}`, "cross_attention_dim: must be an integer or a list of 3 integers, not null"},
		{`{` + three + `, "only_cross_attention": [true]}`, "only_cross_attention: has 1 entries, want one per block (3)"},
		{`{` + three + `, "transformer_layers_per_block": [1, 2]}`, "transformer_layers_per_block has 2 entries, want one per block (3)"},
		{`{` + three + `, "transformer_layers_per_block": [1, [2, 2], 10]}`, "reverse_transformer_layers_per_block is required"},
		{`{` + three + `, "transformer_layers_per_block": [1, [2, 2, 2], 10], "reverse_transformer_layers_per_block": [1, 1, 1]}`, "transformer_layers_per_block[1] has 3 depths, want one per resnet of the block (2)"},
		{`{` + three + `, "transformer_layers_per_block": [1, [2, 2], 10], "reverse_transformer_layers_per_block": [[1, 1], 1, 1]}`, "reverse_transformer_layers_per_block[0] has 2 depths, want one per resnet of the block (3)"},
		{`{` + three + `, "transformer_layers_per_block": [1, 2, 0]}`, "down block 2 resnet 0 transformer depth = 0, want 1 to 64"},
		{`{` + three + `, "transformer_layers_per_block": null}`, "transformer_layers_per_block must be an integer or a list, not null"},
		{`{` + three + `, "num_attention_heads": [5, 10, 20]}`, "num_attention_heads is set, which diffusers rejects"},
		{`{` + three + `, "sample_size": [1, 2, 3]}`, "sample_size: must be an integer, [height, width] or null"},
		{`{` + three + `, "down_block_types": ["DownBlock2D", "CrossAttnDownBlock3D", "CrossAttnDownBlock2D"]}`, `down_block_types[1]: unknown block type "CrossAttnDownBlock3D"`},
		{`{` + three + `, "mid_block_type": "UNetMidBlock3DCrossAttn"}`, `mid_block_type: unknown block type "UNetMidBlock3DCrossAttn"`},
		{`{` + three + `, "norm_num_groups": 48}`, "block_out_channels[0] = 320 is not divisible by norm_num_groups 48"},
		{`{` + three + `, "conv_in_kernel": 4}`, "must be odd"},
		{`{` + three + `, "addition_embed_type": "text_time"}`, "needs addition_time_embed_dim > 0"},
		{`{` + three + `, "addition_embed_type": "text_time", "addition_time_embed_dim": 256}`, "needs projection_class_embeddings_input_dim > 0"},
		{`{` + three + `, "addition_embed_type": "audio"}`, `addition_embed_type "audio" must be`},
		{`{` + three + `, "time_embedding_type": "learned"}`, `time_embedding_type "learned" does not exist`},
		{`{` + three + `, "layers_per_block": 0}`, "layers_per_block[0] = 0, want 1 to 16"},
	}
	for _, c := range cases {
		_, err := config.ParseUNetConfig("/m/unet/config.json", []byte(c.json))
		if err == nil || !strings.HasPrefix(err.Error(), "/m/unet/config.json: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n  error %v\n  want  %q", c.json, err, c.want)
		}
	}
}

func TestVAEConfig(t *testing.T) {
	c, err := config.ParseVAEConfig("vae/config.json", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &config.VAEConfig{InChannels: 3, OutChannels: 3, DownBlockTypes: []string{"DownEncoderBlock2D"}, UpBlockTypes: []string{"UpDecoderBlock2D"},
		BlockOutChannels: []int{64}, LayersPerBlock: 1, ActFn: "silu", LatentChannels: 4, NormNumGroups: 32, SampleSize: &config.Size2{H: 32, W: 32},
		ScalingFactor: 0.18215, ForceUpcast: true, UseQuantConv: true, UsePostQuantConv: true, MidBlockAddAttention: true}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}
	// SD3/Flux-style latents statistics and a shift; quant convs off.
	c, err = config.ParseVAEConfig("vae/config.json", []byte(`{"latent_channels": 2, "latents_mean": [0.1, 0.2], "latents_std": [1, 2],
		"shift_factor": 0.0609, "use_quant_conv": false, "use_post_quant_conv": null, "force_upcast": false, "mid_block_add_attention": false}`))
	if err != nil {
		t.Fatal(err)
	}
	if *c.ShiftFactor != 0.0609 || !reflect.DeepEqual(c.LatentsStd, []float64{1, 2}) || c.UseQuantConv || c.UsePostQuantConv || c.ForceUpcast || c.MidBlockAddAttention {
		t.Errorf("parsed %+v", c)
	}
	v, err := vae.New(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range nn.Params(v, "") {
		if strings.HasPrefix(p.Name, "quant_conv.") || strings.HasPrefix(p.Name, "decoder.mid_block.attentions.") {
			t.Errorf("%s present with use_quant_conv and mid_block_add_attention false", p.Name)
		}
	}
	for _, c := range []struct{ json, want string }{
		{`{"block_out_channels": [64, 128]}`, "2 block_out_channels, 1 down_block_types, 1 up_block_types"},
		{`{"block_out_channels": [48]}`, "block_out_channels[0] = 48, want a positive multiple of norm_num_groups 32"},
		{`{"latents_mean": [1, 2, 3, 4]}`, "latents_mean (4 values) and latents_std (0 values)"},
		{`{"scaling_factor": null}`, "scaling_factor: must be a number, not null"},
		{`{"scaling_factor": 0}`, "scaling_factor = 0, want a finite number > 0"},
		{`{"up_block_types": ["UpDecoderBlock3D"]}`, `up_block_types[0]: unknown block type "UpDecoderBlock3D"`},
		{`{"layers_per_block": [2]}`, "layers_per_block: must be an integer, got [2]"},
	} {
		_, err := config.ParseVAEConfig("/m/vae/config.json", []byte(c.json))
		if err == nil || !strings.HasPrefix(err.Error(), "/m/vae/config.json: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n  error %v\n  want  %q", c.json, err, c.want)
		}
	}
}

func TestTextEncoderConfig(t *testing.T) {
	c, err := config.ParseTextEncoderConfig("te/config.json", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &config.TextEncoderConfig{ModelType: "clip_text_model", VocabSize: 49408, HiddenSize: 512, IntermediateSize: 2048, ProjectionDim: 512,
		NumHiddenLayers: 12, NumAttentionHeads: 8, MaxPositionEmbeddings: 77, HiddenAct: "quick_gelu", LayerNormEps: 1e-5,
		InitializerRange: 0.02, InitializerFactor: 1, PadTokenID: 1, BOSTokenID: 49406, EOSTokenID: 49407}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}
	if c.WithProjection() || c.LegacyArgmaxPooling() || c.HeadDim() != 64 {
		t.Errorf("with projection %v, legacy pooling %v, head dim %d", c.WithProjection(), c.LegacyArgmaxPooling(), c.HeadDim())
	}
	// A full CLIPConfig: its text_config is used.
	c, err = config.ParseTextEncoderConfig("clip/config.json", []byte(`{"model_type": "clip", "architectures": ["CLIPModel"],
		"text_config": {"hidden_size": 768, "num_attention_heads": 12, "torch_dtype": "float32"}, "vision_config": {}}`))
	if err != nil || c.HiddenSize != 768 || c.DType != "float32" {
		t.Errorf("CLIPConfig text_config: %+v %v", c, err)
	}
	for _, c := range []struct{ json, want string }{
		{`{"hidden_size": 100, "num_attention_heads": 8}`, "hidden_size 100 is not divisible by num_attention_heads 8"},
		{`{"eos_token_id": null}`, "eos_token_id: must be an integer, not null"},
		{`{"hidden_act": "mish"}`, `hidden_act "mish"`},
		{`{"architectures": ["T5EncoderModel"]}`, `architectures lists "T5EncoderModel"`},
		{`{"num_hidden_layers": 0}`, "num_hidden_layers = 0, want 1 to 256"},
		{`{"model_type": "clip"}`, "without text_config"},
	} {
		_, err := config.ParseTextEncoderConfig("/m/te/config.json", []byte(c.json))
		if err == nil || !strings.HasPrefix(err.Error(), "/m/te/config.json") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n  error %v\n  want  %q", c.json, err, c.want)
		}
	}
}

func TestModelIndex(t *testing.T) {
	m, err := config.ParseModelIndex("model_index.json", []byte(`{"_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.40.0",
		"unet": ["diffusers", "UNet2DConditionModel"], "text_encoder": [null, null], "add_watermarker": false, "custom_flag": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	if !m.ForceZerosForEmptyPrompt || m.RequiresAestheticsScore || m.AddWatermarker == nil || *m.AddWatermarker ||
		!reflect.DeepEqual(m.ComponentNames(), []string{"unet"}) || m.Components["text_encoder"].Present() || !reflect.DeepEqual(m.Unused, []string{"custom_flag"}) {
		t.Errorf("parsed %+v", m)
	}
	for _, c := range []struct{ json, want string }{
		{`{"unet": ["diffusers", "UNet2DConditionModel"]}`, "no _class_name"},
		{`{"_class_name": "P", "unet": ["diffusers"]}`, "unet: want [library, class]"},
		{`{"_class_name": "P", "unet": ["diffusers", null]}`, "library and class must both be set or both null"},
		{`{"_class_name": "P", "unet": [1, 2]}`, "unet: want [library, class]"},
		{`{"_class_name": "P", "force_zeros_for_empty_prompt": "yes"}`, "force_zeros_for_empty_prompt: must be true, false or null"},
	} {
		_, err := config.ParseModelIndex("/m/model_index.json", []byte(c.json))
		if err == nil || !strings.HasPrefix(err.Error(), "/m/model_index.json: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n  error %v\n  want  %q", c.json, err, c.want)
		}
	}
}
