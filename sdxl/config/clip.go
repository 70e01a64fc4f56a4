package config

import (
	"fmt"
	"os"
	"slices"
)

// TextEncoderConfig is text_encoder*/config.json (transformers
// CLIPTextConfig, for CLIPTextModel and CLIPTextModelWithProjection) with
// CLIPTextConfig's defaults for absent keys.
type TextEncoderConfig struct {
	Architectures         []string
	ModelType             string
	VocabSize             int
	HiddenSize            int
	IntermediateSize      int
	ProjectionDim         int
	NumHiddenLayers       int
	NumAttentionHeads     int
	MaxPositionEmbeddings int
	HiddenAct             string
	LayerNormEps          float64
	AttentionDropout      float64
	InitializerRange      float64
	InitializerFactor     float64
	PadTokenID            int
	BOSTokenID            int
	EOSTokenID            int
	// DType is the "dtype" (transformers 5) or "torch_dtype" (4) entry:
	// the precision the weights were saved in, "" if absent.
	DType string

	// Unused lists keys of the file this package does not read.
	Unused []string
}

// ReadTextEncoderConfig reads and validates a text_encoder*/config.json.
func ReadTextEncoderConfig(path string) (*TextEncoderConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseTextEncoderConfig(path, data)
}

// ParseTextEncoderConfig parses and validates a CLIP text config; name
// identifies it in errors. A full CLIPConfig (model_type "clip") is
// accepted too: its text_config is used, as CLIPTextConfig.from_pretrained
// does.
func ParseTextEncoderConfig(name string, data []byte) (*TextEncoderConfig, error) {
	o, err := parseObject(name, data)
	if err != nil {
		return nil, err
	}
	if mt := o.str("model_type", ""); mt == "clip" {
		tc, present, null := o.get("text_config")
		if !present || null {
			return nil, fmt.Errorf("%s: a CLIPConfig (model_type \"clip\") without text_config", name)
		}
		return ParseTextEncoderConfig(name+" text_config", tc)
	}
	c := &TextEncoderConfig{
		Architectures:         o.strs("architectures", nil),
		ModelType:             o.str("model_type", "clip_text_model"),
		VocabSize:             o.int("vocab_size", 49408),
		HiddenSize:            o.int("hidden_size", 512),
		IntermediateSize:      o.int("intermediate_size", 2048),
		ProjectionDim:         o.int("projection_dim", 512),
		NumHiddenLayers:       o.int("num_hidden_layers", 12),
		NumAttentionHeads:     o.int("num_attention_heads", 8),
		MaxPositionEmbeddings: o.int("max_position_embeddings", 77),
		HiddenAct:             o.reqStr("hidden_act", "quick_gelu"),
		LayerNormEps:          o.float("layer_norm_eps", 1e-5),
		AttentionDropout:      o.float("attention_dropout", 0),
		InitializerRange:      o.float("initializer_range", 0.02),
		InitializerFactor:     o.float("initializer_factor", 1),
		// The token ids may be null in transformers; CLIP needs all three
		// (padding, the BOS/EOS pooling rule), so null is an error here.
		PadTokenID: o.int("pad_token_id", 1),
		BOSTokenID: o.int("bos_token_id", 49406),
		EOSTokenID: o.int("eos_token_id", 49407),
		DType:      o.str("dtype", ""),
	}
	if c.DType == "" {
		c.DType = o.str("torch_dtype", "")
	} else {
		o.get("torch_dtype")
	}
	if _, present, null := o.get("architectures"); present && null {
		c.Architectures = nil
	}
	// Bookkeeping keys that every saved config carries.
	for _, k := range []string{"transformers_version", "dropout", "output_attentions", "output_hidden_states", "return_dict"} {
		o.get(k)
	}
	if o.err != nil {
		return nil, o.err
	}
	c.Unused = o.unused()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	return c, nil
}

// Validate checks the sizes and the activation, as CLIP's modules would.
func (c *TextEncoderConfig) Validate() error {
	for _, f := range []struct {
		key string
		v   int
	}{{"vocab_size", c.VocabSize}, {"hidden_size", c.HiddenSize}, {"intermediate_size", c.IntermediateSize},
		{"projection_dim", c.ProjectionDim}, {"num_hidden_layers", c.NumHiddenLayers},
		{"num_attention_heads", c.NumAttentionHeads}, {"max_position_embeddings", c.MaxPositionEmbeddings}} {
		if f.v <= 0 {
			return fmt.Errorf("%s = %d, want > 0", f.key, f.v)
		}
	}
	if c.HiddenSize%c.NumAttentionHeads != 0 {
		// CLIPAttention raises the same.
		return fmt.Errorf("hidden_size %d is not divisible by num_attention_heads %d", c.HiddenSize, c.NumAttentionHeads)
	}
	if !(c.LayerNormEps > 0) {
		return fmt.Errorf("layer_norm_eps = %g, want > 0", c.LayerNormEps)
	}
	switch c.HiddenAct {
	case "quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish", "gelu_fast", "gelu_python":
	default:
		return fmt.Errorf("hidden_act %q is not an activation transformers' ACT2FN knows", c.HiddenAct)
	}
	for _, a := range c.Architectures {
		switch a {
		case "CLIPTextModel", "CLIPTextModelWithProjection", "CLIPModel":
		default:
			return fmt.Errorf("architectures lists %q, not a CLIP text model", a)
		}
	}
	return nil
}

// WithProjection reports whether the file describes a
// CLIPTextModelWithProjection (SDXL's text_encoder_2: a bias-free
// text_projection after pooling) rather than a CLIPTextModel.
func (c *TextEncoderConfig) WithProjection() bool {
	return slices.Contains(c.Architectures, "CLIPTextModelWithProjection")
}

// HeadDim is the attention head width.
func (c *TextEncoderConfig) HeadDim() int { return c.HiddenSize / c.NumAttentionHeads }

// LegacyArgmaxPooling reports whether transformers pools this model at the
// argmax of the input ids rather than at the first eos_token_id: it does so
// for configs with eos_token_id 2, the value the original OpenAI/SDXL
// configs carry (modeling_clip.py, kept since PR #24773). For real CLIP
// token ids the two agree, since EOS 49407 is the largest id.
func (c *TextEncoderConfig) LegacyArgmaxPooling() bool { return c.EOSTokenID == 2 }
