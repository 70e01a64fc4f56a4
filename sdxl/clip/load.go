package clip

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/sdxl/tokenizer"
	"github.com/sdxl-go/sdxl/tensor"
)

// LoadOptions tune LoadDir and LoadComponent.
type LoadOptions struct {
	// DType is the storage type of the weights (default F32).
	DType tensor.DType
	// Variant picks the weight files as diffusers' variant= does: "" for
	// model.safetensors, "fp16" for model.fp16.safetensors (or their
	// sharded indexes); see config.WeightFilesIn.
	Variant string
}

// textModelPrefix is the prefix transformers 4 writes for both encoders and
// transformers 5 for CLIPTextModelWithProjection.
const textModelPrefix = "text_model."

// ignoredBuffer reports checkpoint entries that are buffers, not
// parameters: the position_ids of the embeddings (older transformers and
// original checkpoints) and OpenCLIP's logit_scale.
func ignoredBuffer(name string) bool {
	return strings.HasSuffix(name, "embeddings.position_ids") || name == "logit_scale" || strings.HasSuffix(name, ".logit_scale")
}

// LoadSource materialises m's parameters from src on b, strictly: every
// parameter must be present with its shape, and src may hold nothing else
// but ignorable buffers (position_ids, logit_scale). Keys may carry the
// "text_model." prefix or not (transformers 4 and 5); a source holding both
// forms of one key is an error.
func (m *TextModel) LoadSource(b tensor.Backend, src nn.Source, dt tensor.DType) error {
	norm, err := nn.NewRenamed(src, func(n string) string { return strings.TrimPrefix(n, textModelPrefix) })
	if err != nil {
		return fmt.Errorf("clip: %w", err)
	}
	return nn.Load(b, m, norm, nn.LoadOptions{DType: dt, Ignore: ignoredBuffer})
}

// load builds a model from cfg and fills it from ws (closing ws).
func load(b tensor.Backend, cfg *config.TextEncoderConfig, ws *config.WeightSet, opt LoadOptions) (*TextModel, error) {
	defer ws.Close()
	m, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := m.LoadSource(b, ws, opt.DType); err != nil {
		return nil, fmt.Errorf("%s: %w", strings.Join(ws.Paths(), ", "), err)
	}
	return m, nil
}

// LoadDir builds and loads a text encoder from a lone transformers folder
// (config.json and model[.variant].safetensors or shards). Without
// model_index.json the projection follows config.json's architectures.
func LoadDir(b tensor.Backend, dir string, opt LoadOptions) (*TextModel, error) {
	cfg, err := config.ReadTextEncoderConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	ws, err := config.OpenWeightsIn(dir, "model", opt.Variant)
	if err != nil {
		return nil, err
	}
	return load(b, cfg, ws, opt)
}

// LoadComponent loads component sub ("text_encoder" or "text_encoder_2")
// of a diffusers pipeline folder; model_index.json's class decides whether
// it has the projection, as in diffusers.
func LoadComponent(b tensor.Backend, d *config.ModelDir, sub string, opt LoadOptions) (*TextModel, error) {
	cfg, err := d.TextEncoderConfig(sub)
	if err != nil {
		return nil, err
	}
	ws, err := d.OpenWeights(sub, opt.Variant)
	if err != nil {
		return nil, err
	}
	return load(b, cfg, ws, opt)
}

// LoadTextEncoders loads the text side of a diffusers SDXL pipeline folder:
// text_encoder and tokenizer when model_index.json lists them (the base;
// the refiner has neither), text_encoder_2 and tokenizer_2, and
// force_zeros_for_empty_prompt. A tokenizer listed as null (diffusers'
// test models) is left nil: EncodePromptIDs still works, EncodePrompt
// reports it.
func LoadTextEncoders(b tensor.Backend, d *config.ModelDir, opt LoadOptions) (*TextEncoders, error) {
	s := &TextEncoders{ForceZerosForEmptyPrompt: d.ModelIndex.ForceZerosForEmptyPrompt}
	present := func(name string) bool {
		c, ok := d.ModelIndex.Component(name)
		return ok && c.Present()
	}
	var err error
	if present("text_encoder") {
		if s.TextEncoder, err = LoadComponent(b, d, "text_encoder", opt); err != nil {
			return nil, err
		}
	}
	if !present("text_encoder_2") {
		return nil, fmt.Errorf("%s: model_index.json has no text_encoder_2 (not an SDXL pipeline)", d.Root)
	}
	if s.TextEncoder2, err = LoadComponent(b, d, "text_encoder_2", opt); err != nil {
		return nil, err
	}
	for _, t := range []struct {
		name string
		dst  *Tokenizer
		need bool
	}{{"tokenizer", &s.Tokenizer, s.TextEncoder != nil}, {"tokenizer_2", &s.Tokenizer2, true}} {
		if !t.need || !present(t.name) {
			continue
		}
		tok, err := tokenizer.Load(filepath.Join(d.Root, t.name))
		if err != nil {
			return nil, err
		}
		*t.dst = tok
	}
	return s, s.check()
}
