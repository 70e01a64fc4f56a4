package sdxl

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/sched"
	"github.com/sdxl-go/sdxl/sdxl/clip"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/sdxl/singlefile"
	"github.com/sdxl-go/sdxl/sdxl/tokenizer"
	"github.com/sdxl-go/sdxl/sdxl/unet"
	"github.com/sdxl-go/sdxl/sdxl/vae"
	"github.com/sdxl-go/sdxl/tensor"
)

// Model is one loaded SDXL pipeline's components: the base (two text
// encoders) or the refiner (text encoder 2 only, aesthetic-score time ids).
type Model struct {
	// Path is what the model was loaded from (folder or single file).
	Path string
	// Text holds the text encoders and tokenizers with encode_prompt.
	Text *clip.SDXL
	// Tok1 and Tok2 are the concrete tokenizers (Tok1 nil in the
	// refiner), needed by prompt weighting.
	Tok1, Tok2 *tokenizer.Tokenizer
	UNet       *unet.UNet
	VAE        *vae.VAE
	// Scheduler is the model's scheduler_config.json, the base every
	// --scheduler choice is built from (from_config).
	Scheduler sched.Config
	// RequiresAestheticsScore is the refiner's micro-conditioning flag.
	RequiresAestheticsScore bool
	// Index is model_index.json (or the real SDXL one for single files).
	Index *config.ModelIndex
	// Files lists the weight files read, for the PNG metadata.
	Files []string
}

// IsRefiner reports a model without the first text encoder (SDXL refiner).
func (m *Model) IsRefiner() bool { return m.Text.TextEncoder == nil }

// LoadOptions tune LoadModel.
type LoadOptions struct {
	// DType is the storage dtype of the UNet and text encoders (the VAE
	// always stays F32: SDXL's VAE overflows in fp16).
	DType tensor.DType
	// Variant picks weight files like diffusers' variant= ("fp16").
	Variant string
	// ConfigDir is a diffusers folder whose configs (and tokenizers)
	// describe a single-file checkpoint; "" uses the real SDXL configs.
	ConfigDir string
	// Progress reports loading: component name, tensors done and total.
	Progress func(component string, done, total int)
}

func (o LoadOptions) progress(name string) func(int, int) {
	if o.Progress == nil {
		return nil
	}
	return func(d, t int) { o.Progress(name, d, t) }
}

// LoadModel loads a diffusers folder or an original-layout single-file
// checkpoint (.safetensors).
func LoadModel(b tensor.Backend, path string, opt LoadOptions) (*Model, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("model %s: %v", path, err)
	}
	if st.IsDir() {
		if _, err := os.Stat(filepath.Join(path, "model_index.json")); err != nil {
			return nil, fmt.Errorf("model %s: not a diffusers folder (no model_index.json) — give a folder such as stable-diffusion-xl-base-1.0 or a single .safetensors file", path)
		}
		return loadFolder(b, path, opt)
	}
	if !strings.HasSuffix(strings.ToLower(path), ".safetensors") {
		return nil, fmt.Errorf("model %s: expected a diffusers folder or a .safetensors single-file checkpoint", path)
	}
	return loadSingleFile(b, path, opt)
}

func loadFolder(b tensor.Backend, root string, opt LoadOptions) (*Model, error) {
	d, err := config.OpenModelDir(root)
	if err != nil {
		return nil, err
	}
	m := &Model{Path: root, Index: d.ModelIndex, RequiresAestheticsScore: d.ModelIndex.RequiresAestheticsScore}
	if m.Text, err = clip.LoadSDXL(b, d, clip.LoadOptions{DType: opt.DType, Variant: opt.Variant}); err != nil {
		return nil, err
	}
	if err := m.concreteTokenizers(); err != nil {
		return nil, err
	}
	if m.UNet, err = unet.LoadDir(b, filepath.Join(root, "unet"), unet.LoadOptions{DType: opt.DType, Variant: opt.Variant, Progress: opt.progress("unet")}); err != nil {
		return nil, err
	}
	if m.VAE, err = vae.LoadDir(b, filepath.Join(root, "vae"), vae.LoadOptions{Variant: opt.Variant, Progress: opt.progress("vae")}); err != nil {
		return nil, err
	}
	if m.Scheduler, err = schedulerConfig(d); err != nil {
		return nil, err
	}
	for _, sub := range []string{"text_encoder", "text_encoder_2", "unet", "vae"} {
		if files, err := d.WeightFiles(sub, opt.Variant); err == nil {
			m.Files = append(m.Files, files...)
		}
	}
	return m, nil
}

func schedulerConfig(d *config.ModelDir) (sched.Config, error) {
	data, _, err := d.SchedulerConfigJSON()
	if err != nil {
		return nil, err
	}
	cfg, err := sched.ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: scheduler config: %v", d.Root, err)
	}
	return cfg, nil
}

func (m *Model) concreteTokenizers() error {
	var ok bool
	if m.Text.Tokenizer != nil {
		if m.Tok1, ok = m.Text.Tokenizer.(*tokenizer.Tokenizer); !ok {
			return fmt.Errorf("%s: tokenizer is not a CLIP BPE tokenizer", m.Path)
		}
	}
	if m.Text.Tokenizer2 == nil { // e.g. test models without tokenizers: embeddings only
		return nil
	}
	if m.Tok2, ok = m.Text.Tokenizer2.(*tokenizer.Tokenizer); !ok {
		return fmt.Errorf("%s: tokenizer_2 is not a CLIP BPE tokenizer", m.Path)
	}
	return nil
}

// loadSingleFile reads an original-layout checkpoint. Its configs come from
// opt.ConfigDir or, by default, from the real SDXL 1.0 configs of the kind
// the keys reveal (base or refiner).
func loadSingleFile(b tensor.Backend, path string, opt LoadOptions) (*Model, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	src, err := config.NewWeightSet(f)
	if err != nil {
		return nil, err
	}
	has := func(n string) bool { _, ok := src.Shape(n); return ok }
	kind, err := singlefile.Detect(has)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	var d *config.ModelDir
	if opt.ConfigDir != "" {
		d, err = config.OpenModelDir(opt.ConfigDir)
	} else if kind == singlefile.Refiner {
		d, err = config.RealModelDir(config.SDXLRefinerName)
	} else {
		d, err = config.RealModelDir(config.SDXLBaseName)
	}
	if err != nil {
		return nil, err
	}
	m := &Model{Path: path, Index: d.ModelIndex, RequiresAestheticsScore: d.ModelIndex.RequiresAestheticsScore, Files: []string{path}}
	m.Text = &clip.SDXL{ForceZerosForEmptyPrompt: d.ModelIndex.ForceZerosForEmptyPrompt}
	load := func(name string, params []nn.Param, view func([]nn.Param) (*singlefile.View, error), fill func(nn.Source) error) error {
		v, err := view(params)
		if err != nil {
			if opt.ConfigDir == "" && strings.Contains(err.Error(), "the model expects") {
				return fmt.Errorf("%s: %s: %v (this file does not have the real SDXL sizes: give --config with a diffusers folder holding its configs)", path, name, err)
			}
			return fmt.Errorf("%s: %s: %v", path, name, err)
		}
		if err := fill(v); err != nil {
			return fmt.Errorf("%s: %s: %v", path, name, err)
		}
		return nil
	}
	if kind == singlefile.Base {
		cfg, err := d.TextEncoderConfig("text_encoder")
		if err != nil {
			return nil, err
		}
		te, err := clip.New(cfg)
		if err != nil {
			return nil, err
		}
		if err := load("text_encoder", nn.Params(te, ""),
			func(p []nn.Param) (*singlefile.View, error) { return singlefile.CLIPText(src, p) },
			func(s nn.Source) error { return te.LoadSource(b, s, opt.DType) }); err != nil {
			return nil, err
		}
		m.Text.TextEncoder = te
	}
	cfg2, err := d.TextEncoderConfig("text_encoder_2")
	if err != nil {
		return nil, err
	}
	te2, err := clip.New(cfg2)
	if err != nil {
		return nil, err
	}
	if err := load("text_encoder_2", nn.Params(te2, ""),
		func(p []nn.Param) (*singlefile.View, error) { return singlefile.OpenCLIP(src, p, kind) },
		func(s nn.Source) error { return te2.LoadSource(b, s, opt.DType) }); err != nil {
		return nil, err
	}
	m.Text.TextEncoder2 = te2

	ucfg, err := d.UNetConfig()
	if err != nil {
		return nil, err
	}
	u, err := unet.New(ucfg)
	if err != nil {
		return nil, err
	}
	down, up := u.BlockTypes()
	lpb := u.LayersPerBlock()
	layout := singlefile.LayoutFromBlockTypes(down, up, lpb[0])
	if err := load("unet", nn.Params(u, ""),
		func(p []nn.Param) (*singlefile.View, error) { return singlefile.UNet(src, p, layout) },
		func(s nn.Source) error {
			return u.Load(b, s, unet.LoadOptions{DType: opt.DType, Progress: opt.progress("unet")})
		}); err != nil {
		return nil, err
	}
	m.UNet = u

	vcfg, err := d.VAEConfig()
	if err != nil {
		return nil, err
	}
	v, err := vae.New(vcfg)
	if err != nil {
		return nil, err
	}
	if err := load("vae", nn.Params(v, ""),
		func(p []nn.Param) (*singlefile.View, error) {
			return singlefile.VAE(src, p, len(vcfg.BlockOutChannels))
		},
		func(s nn.Source) error { return v.Load(b, s, vae.LoadOptions{Progress: opt.progress("vae")}) }); err != nil {
		return nil, err
	}
	m.VAE = v

	// Every key of the file must belong to some component.
	for _, k := range src.Names() {
		if !strings.HasPrefix(k, singlefile.UNetPrefix) && !strings.HasPrefix(k, singlefile.VAEPrefix) &&
			!strings.HasPrefix(k, "conditioner.embedders.") && !singlefile.Ignorable(k) {
			return nil, fmt.Errorf("%s: unexpected weight %q (not part of an SDXL UNet, VAE or text encoder)", path, k)
		}
	}

	// Tokenizers: the config folder's when it has them, else the embedded
	// CLIP table with SDXL's pad tokens.
	tok1, tok2, err := tokenizer.DefaultSDXL()
	if err != nil {
		return nil, err
	}
	if opt.ConfigDir != "" {
		if t, err := tokenizer.Load(filepath.Join(opt.ConfigDir, "tokenizer")); err == nil {
			tok1 = t
		}
		if t, err := tokenizer.Load(filepath.Join(opt.ConfigDir, "tokenizer_2")); err == nil {
			tok2 = t
		}
	}
	if m.Text.TextEncoder != nil {
		m.Text.Tokenizer, m.Tok1 = tok1, tok1
	}
	m.Text.Tokenizer2, m.Tok2 = tok2, tok2
	if m.Scheduler, err = schedulerConfig(d); err != nil {
		return nil, err
	}
	return m, nil
}
