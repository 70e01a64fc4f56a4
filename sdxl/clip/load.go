package clip

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/tensor"
)

// LoadOptions tune LoadDir and LoadSource.
type LoadOptions struct {
	// DType is the storage type of the weights (default F32).
	DType tensor.DType
	// Variant picks the weight file: "" for model.safetensors, "fp16" for
	// model.fp16.safetensors (diffusers' variant=). When the chosen file is
	// absent the other one is used, so a folder holding only fp16 weights
	// loads either way.
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

// normalizedSource exposes src with the "text_model." prefix removed, so
// one set of parameter names serves both the transformers 4 and 5 layouts.
func normalizedSource(src nn.Source) (nn.Source, error) {
	return nn.NewRenamed(src, func(n string) string {
		return strings.TrimPrefix(n, textModelPrefix)
	})
}

// LoadSource materialises m's parameters from src on b, strictly: every
// parameter must be present with its shape, and src may hold nothing else
// but ignorable buffers (position_ids, logit_scale). Keys may carry the
// "text_model." prefix or not.
func (m *TextModel) LoadSource(b tensor.Backend, src nn.Source, dt tensor.DType) error {
	norm, err := normalizedSource(src)
	if err != nil {
		return fmt.Errorf("clip: %w", err)
	}
	return nn.Load(b, m, norm, nn.LoadOptions{DType: dt, Ignore: ignoredBuffer})
}

// WeightFiles returns the safetensors files of a transformers model folder:
// the single model[.variant].safetensors or the shards listed by
// model[.variant].safetensors.index.json.
func WeightFiles(dir, variant string) ([]string, error) {
	names := []string{"model.safetensors", "model.fp16.safetensors"}
	if variant != "" {
		names = []string{"model." + variant + ".safetensors", "model.safetensors"}
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		if _, err := os.Stat(p); err == nil {
			return []string{p}, nil
		}
		idx := p + ".index.json"
		data, err := os.ReadFile(idx)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var ix struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(data, &ix); err != nil {
			return nil, fmt.Errorf("%s: %w", idx, err)
		}
		seen := map[string]bool{}
		var files []string
		for _, f := range ix.WeightMap {
			if !seen[f] {
				seen[f] = true
				files = append(files, filepath.Join(dir, f))
			}
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("%s: empty weight_map", idx)
		}
		sort.Strings(files)
		return files, nil
	}
	return nil, fmt.Errorf("clip: no weights in %s (looked for %s, and their .index.json shards)", dir, strings.Join(names, ", "))
}

// LoadDir builds and loads a text encoder from a transformers folder
// (text_encoder/ or text_encoder_2/: config.json and the weights).
func LoadDir(b tensor.Backend, dir string, opt LoadOptions) (*TextModel, error) {
	cfg, err := ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	m, err := New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	paths, err := WeightFiles(dir, opt.Variant)
	if err != nil {
		return nil, err
	}
	var files []*safetensors.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, p := range paths {
		f, err := safetensors.Open(p)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	src, err := nn.NewFileSource(files...)
	if err != nil {
		return nil, err
	}
	if err := m.LoadSource(b, src, opt.DType); err != nil {
		return nil, fmt.Errorf("%s: %w", strings.Join(paths, ", "), err)
	}
	return m, nil
}
