package config

import (
	"fmt"
	"slices"

	"github.com/sdxl-go/sdxl/internal/jsonobj"
	"github.com/sdxl-go/sdxl/internal/regfile"
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
	data, err := regfile.ReadFile(path, MaxConfigBytes)
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
	o, err := jsonobj.Parse(name, data)
	if err != nil {
		return nil, err
	}
	return parseTextEncoder(o)
}

func parseTextEncoder(o *jsonobj.Object) (*TextEncoderConfig, error) {
	name := o.Name()
	if mt := o.Str("model_type", ""); mt == "clip" {
		tc, present, null := o.Get("text_config")
		if !present || null {
			return nil, fmt.Errorf("%s: a CLIPConfig (model_type \"clip\") without text_config", name)
		}
		m, ok := tc.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: text_config must be an object, got %s", name, jsonobj.Describe(tc))
		}
		return parseTextEncoder(jsonobj.New(name+" text_config", m))
	}
	c := &TextEncoderConfig{
		Architectures:         o.Strs("architectures", nil),
		ModelType:             o.Str("model_type", "clip_text_model"),
		VocabSize:             o.Int("vocab_size", 49408),
		HiddenSize:            o.Int("hidden_size", 512),
		IntermediateSize:      o.Int("intermediate_size", 2048),
		ProjectionDim:         o.Int("projection_dim", 512),
		NumHiddenLayers:       o.Int("num_hidden_layers", 12),
		NumAttentionHeads:     o.Int("num_attention_heads", 8),
		MaxPositionEmbeddings: o.Int("max_position_embeddings", 77),
		HiddenAct:             o.ReqStr("hidden_act", "quick_gelu"),
		LayerNormEps:          o.Float("layer_norm_eps", 1e-5),
		AttentionDropout:      o.Float("attention_dropout", 0),
		InitializerRange:      o.Float("initializer_range", 0.02),
		InitializerFactor:     o.Float("initializer_factor", 1),
		// The token ids may be null in transformers; CLIP needs all three
		// (padding, the BOS/EOS pooling rule), so null is an error here.
		PadTokenID: o.Int("pad_token_id", 1),
		BOSTokenID: o.Int("bos_token_id", 49406),
		EOSTokenID: o.Int("eos_token_id", 49407),
		DType:      o.Str("dtype", ""),
	}
	if c.DType == "" {
		c.DType = o.Str("torch_dtype", "")
	} else {
		o.Get("torch_dtype")
	}
	if _, present, null := o.Get("architectures"); present && null {
		c.Architectures = nil
	}
	// Bookkeeping keys that every saved config carries.
	for _, k := range []string{"transformers_version", "dropout", "output_attentions", "output_hidden_states", "return_dict"} {
		o.Get(k)
	}
	if o.Err() != nil {
		return nil, o.Err()
	}
	c.Unused = o.Unused()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	return c, nil
}

// Validate checks the sizes, the numbers and the activation, as CLIP's
// modules would, and this package's limits (MaxTextLayers, MaxWidth,
// MaxVocab, MaxPositions).
func (c *TextEncoderConfig) Validate() error {
	if err := checkRanges(1, MaxWidth, intField{"hidden_size", c.HiddenSize}, intField{"intermediate_size", c.IntermediateSize},
		intField{"projection_dim", c.ProjectionDim}, intField{"num_attention_heads", c.NumAttentionHeads}); err != nil {
		return err
	}
	if err := inRange("num_hidden_layers", c.NumHiddenLayers, 1, MaxTextLayers); err != nil {
		return err
	}
	if err := inRange("vocab_size", c.VocabSize, 1, MaxVocab); err != nil {
		return err
	}
	if err := inRange("max_position_embeddings", c.MaxPositionEmbeddings, 1, MaxPositions); err != nil {
		return err
	}
	// The token ids index the embedding table (pad, the BOS/EOS pooling
	// rule).
	if err := checkRanges(0, c.VocabSize-1, intField{"pad_token_id", c.PadTokenID}, intField{"bos_token_id", c.BOSTokenID},
		intField{"eos_token_id", c.EOSTokenID}); err != nil {
		return err
	}
	if c.HiddenSize%c.NumAttentionHeads != 0 {
		// CLIPAttention raises the same.
		return fmt.Errorf("hidden_size %d is not divisible by num_attention_heads %d", c.HiddenSize, c.NumAttentionHeads)
	}
	if err := positive("layer_norm_eps", c.LayerNormEps); err != nil {
		return err
	}
	if err := allFinite(floatField{"attention_dropout", c.AttentionDropout}, floatField{"initializer_range", c.InitializerRange}, floatField{"initializer_factor", c.InitializerFactor}); err != nil {
		return err
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
