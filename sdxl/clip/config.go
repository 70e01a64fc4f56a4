package clip

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// Config is the part of a transformers CLIPTextConfig (text_encoder*/config.json)
// that the text transformer needs.
type Config struct {
	VocabSize             int     `json:"vocab_size"`
	HiddenSize            int     `json:"hidden_size"`
	IntermediateSize      int     `json:"intermediate_size"`
	NumAttentionHeads     int     `json:"num_attention_heads"`
	NumHiddenLayers       int     `json:"num_hidden_layers"`
	MaxPositionEmbeddings int     `json:"max_position_embeddings"`
	HiddenAct             string  `json:"hidden_act"`
	LayerNormEps          float64 `json:"layer_norm_eps"`
	ProjectionDim         int     `json:"projection_dim"`
	BOSTokenID            int     `json:"bos_token_id"`
	EOSTokenID            int     `json:"eos_token_id"`
	PadTokenID            int     `json:"pad_token_id"`
	// WithProjection selects CLIPTextModelWithProjection (a bias-free
	// text_projection after pooling, SDXL's text_encoder_2) over
	// CLIPTextModel. ParseConfig sets it from "architectures".
	WithProjection bool `json:"-"`
}

// defaults are CLIPTextConfig's constructor defaults, which
// PretrainedConfig.from_pretrained applies to keys a file leaves out.
func defaults() Config {
	return Config{
		VocabSize:             49408,
		HiddenSize:            512,
		IntermediateSize:      2048,
		NumAttentionHeads:     8,
		NumHiddenLayers:       12,
		MaxPositionEmbeddings: 77,
		HiddenAct:             "quick_gelu",
		LayerNormEps:          1e-5,
		ProjectionDim:         512,
		BOSTokenID:            49406,
		EOSTokenID:            49407,
		PadTokenID:            1,
	}
}

// ParseConfig reads a text encoder's config.json. Unknown keys are ignored
// (as transformers keeps them as attributes without using them); missing
// keys take CLIPTextConfig's defaults.
func ParseConfig(data []byte) (Config, error) {
	c := defaults()
	if err := json.Unmarshal(data, &c); err != nil {
		return Config{}, fmt.Errorf("clip config: %w", err)
	}
	var arch struct {
		Architectures []string `json:"architectures"`
	}
	if err := json.Unmarshal(data, &arch); err != nil {
		return Config{}, fmt.Errorf("clip config: %w", err)
	}
	c.WithProjection = slices.Contains(arch.Architectures, "CLIPTextModelWithProjection")
	return c, c.Validate()
}

// ReadConfig reads dir/config.json.
func ReadConfig(dir string) (Config, error) {
	p := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(p)
	if err != nil {
		return Config{}, err
	}
	c, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", p, err)
	}
	return c, nil
}

// Validate checks the sizes and the activation.
func (c Config) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"vocab_size", c.VocabSize}, {"hidden_size", c.HiddenSize}, {"intermediate_size", c.IntermediateSize},
		{"num_attention_heads", c.NumAttentionHeads}, {"num_hidden_layers", c.NumHiddenLayers},
		{"max_position_embeddings", c.MaxPositionEmbeddings},
	} {
		if f.v <= 0 {
			return fmt.Errorf("clip config: %s = %d, want > 0", f.name, f.v)
		}
	}
	if c.HiddenSize%c.NumAttentionHeads != 0 {
		return fmt.Errorf("clip config: hidden_size %d is not divisible by num_attention_heads %d", c.HiddenSize, c.NumAttentionHeads)
	}
	if c.WithProjection && c.ProjectionDim <= 0 {
		return fmt.Errorf("clip config: projection_dim = %d, want > 0", c.ProjectionDim)
	}
	if _, err := activationOf(c.HiddenAct); err != nil {
		return err
	}
	if !(c.LayerNormEps > 0) {
		return fmt.Errorf("clip config: layer_norm_eps = %g, want > 0", c.LayerNormEps)
	}
	return nil
}

// activation names the MLP non-linearity.
type activation uint8

const (
	actQuickGELU activation = iota
	actGELU
)

// activationOf maps transformers' ACT2FN names that CLIP checkpoints use.
func activationOf(name string) (activation, error) {
	switch name {
	case "quick_gelu":
		return actQuickGELU, nil
	case "gelu": // torch's exact erf GELU (transformers GELUActivation)
		return actGELU, nil
	}
	return 0, fmt.Errorf("clip config: hidden_act %q is not supported (want quick_gelu or gelu)", name)
}

// The text encoder configs of stabilityai/stable-diffusion-xl-base-1.0
// (text_encoder/config.json, CLIP ViT-L, and text_encoder_2/config.json,
// OpenCLIP bigG; the refiner's text_encoder_2 is the same), for building
// full-size models with random weights (benchmarks, loader shape checks).
const (
	sdxlTextEncoderJSON = `{"architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0,
		"dropout": 0.0, "eos_token_id": 2, "hidden_act": "quick_gelu", "hidden_size": 768, "initializer_factor": 1.0,
		"initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
		"model_type": "clip_text_model", "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1,
		"projection_dim": 768, "torch_dtype": "float16", "vocab_size": 49408}`
	sdxlTextEncoder2JSON = `{"architectures": ["CLIPTextModelWithProjection"], "attention_dropout": 0.0,
		"bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2, "hidden_act": "gelu", "hidden_size": 1280,
		"initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 5120, "layer_norm_eps": 1e-05,
		"max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 20,
		"num_hidden_layers": 32, "pad_token_id": 1, "projection_dim": 1280, "torch_dtype": "float16",
		"vocab_size": 49408}`
)

// SDXLTextEncoderConfig is the full-size SDXL text_encoder (CLIP ViT-L).
func SDXLTextEncoderConfig() Config { return mustParse(sdxlTextEncoderJSON) }

// SDXLTextEncoder2Config is the full-size SDXL text_encoder_2 (OpenCLIP
// bigG with projection).
func SDXLTextEncoder2Config() Config { return mustParse(sdxlTextEncoder2JSON) }

func mustParse(js string) Config {
	c, err := ParseConfig([]byte(js))
	if err != nil {
		panic(err) // a constant of this file: a programming error
	}
	return c
}
