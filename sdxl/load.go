package sdxl

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sdxl-go/sdxl/nn"
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
//
// Every Model is built the same way (buildModel): the components are
// constructed from the configs as storage-less meta modules, then a weight
// source fills them — a diffusers folder, an original single-file
// checkpoint, or deterministic random numbers (RandomModel).
type Model struct {
	// Path is what the model was loaded from (folder or single file).
	Path string
	// Text holds the text encoders and tokenizers with encode_prompt.
	Text *clip.TextEncoders
	UNet *unet.UNet
	VAE  *vae.VAE
	// Scheduler is the model's scheduler_config.json, the base every
	// scheduler choice is built from (from_config).
	Scheduler sched.Config
	// RequiresAestheticsScore is the refiner's micro-conditioning flag.
	RequiresAestheticsScore bool
	// Index is model_index.json (or the real SDXL one for single files).
	Index *config.ModelIndex
	// Files lists the weight files read, for the PNG metadata.
	Files []string

	// loras holds the LoRAs merged into the weights (see LoRA).
	loras modelLoRAs
	// textReleased is set once the text encoders' weights were freed
	// (Pipeline.ReleaseTextEncoders).
	textReleased bool
}

// releaseText frees the text encoders' weights; the model can no longer
// encode prompts (IsRefiner still answers: the encoders stay as shapes).
func (m *Model) releaseText() {
	for _, te := range []*clip.TextModel{m.Text.TextEncoder, m.Text.TextEncoder2} {
		if te == nil {
			continue
		}
		for _, p := range nn.Params(te, "") {
			p.Tensor().Free()
		}
	}
	m.textReleased = true
}

// IsRefiner reports a model without the first text encoder (SDXL refiner).
func (m *Model) IsRefiner() bool { return m.Text.TextEncoder == nil }

// tokenizers returns the concrete CLIP tokenizers that prompt weighting
// needs (tok1 nil in the refiner).
func (m *Model) tokenizers() (tok1, tok2 *tokenizer.Tokenizer, err error) {
	var ok bool
	if m.Text.Tokenizer != nil {
		if tok1, ok = m.Text.Tokenizer.(*tokenizer.Tokenizer); !ok {
			return nil, nil, fmt.Errorf("%s: tokenizer is not a CLIP BPE tokenizer", m.Path)
		}
	}
	if m.Text.Tokenizer2 == nil {
		return nil, nil, fmt.Errorf("%s: the model has no tokenizer_2, so prompts cannot be encoded (give prompt embeddings)", m.Path)
	}
	if tok2, ok = m.Text.Tokenizer2.(*tokenizer.Tokenizer); !ok {
		return nil, nil, fmt.Errorf("%s: tokenizer_2 is not a CLIP BPE tokenizer", m.Path)
	}
	return tok1, tok2, nil
}

// LoadOptions tune LoadModel.
type LoadOptions struct {
	// DType is the storage dtype of the UNet and text encoders (the VAE
	// always stays F32: SDXL's VAE overflows in fp16).
	DType tensor.DType
	// Variant picks weight files like diffusers' variant= ("fp16"); as in
	// DiffusionPipeline.from_pretrained, components without files of that
	// variant (often SDXL's VAE) load their default files.
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
		d, err := config.OpenModelDir(path)
		if err != nil {
			return nil, err
		}
		src, err := newFolderWeights(d, opt.Variant)
		if err != nil {
			return nil, err
		}
		return buildModel(b, path, d, src, opt)
	}
	if !strings.HasSuffix(strings.ToLower(path), ".safetensors") {
		return nil, fmt.Errorf("model %s: expected a diffusers folder or a .safetensors single-file checkpoint", path)
	}
	src, err := openSingleFile(path)
	if err != nil {
		return nil, err
	}
	defer src.close()
	d, err := src.configs(opt.ConfigDir)
	if err != nil {
		return nil, err
	}
	m, err := buildModel(b, path, d, src, opt)
	if err != nil {
		return nil, err
	}
	return m, src.checkAllUsed()
}

// RandomModel builds the real SDXL 1.0 base (or refiner) from its configs
// with deterministic random weights: it costs exactly what the real model
// costs in memory and compute, so benchmarks need no download. Its images
// are meaningless. The VAE is always F32.
func RandomModel(b tensor.Backend, refiner bool, dt tensor.DType, seed uint64) (*Model, error) {
	d, err := config.RealModelDir(realName(refiner))
	if err != nil {
		return nil, err
	}
	return buildModel(b, "random:"+realName(refiner), d, randomWeights{seed: seed}, LoadOptions{DType: dt})
}

// realName names the embedded SDXL 1.0 base or refiner config set.
func realName(refiner bool) string {
	if refiner {
		return config.SDXLRefinerName
	}
	return config.SDXLBaseName
}

// buildModel is the one way a Model comes to be: meta components from d's
// configs, filled by src.
func buildModel(b tensor.Backend, path string, d *config.ModelDir, src weightSource, opt LoadOptions) (*Model, error) {
	m := &Model{Path: path, Index: d.ModelIndex, RequiresAestheticsScore: d.ModelIndex.RequiresAestheticsScore}
	m.Text = &clip.TextEncoders{ForceZerosForEmptyPrompt: d.ModelIndex.ForceZerosForEmptyPrompt}
	var err error
	if src.hasTextEncoder1(d) {
		if m.Text.TextEncoder, err = buildText(b, d, "text_encoder", src, opt); err != nil {
			return nil, err
		}
	}
	if m.Text.TextEncoder2, err = buildText(b, d, "text_encoder_2", src, opt); err != nil {
		return nil, err
	}
	if m.UNet, err = buildUNet(b, d, src, opt); err != nil {
		return nil, err
	}
	if m.VAE, err = buildVAE(b, d, src, opt); err != nil {
		return nil, err
	}
	if m.Text.Tokenizer, m.Text.Tokenizer2, err = loadTokenizers(d, m.Text.TextEncoder != nil); err != nil {
		return nil, err
	}
	if m.Scheduler, err = schedulerConfig(d); err != nil {
		return nil, err
	}
	m.Files = src.files()
	return m, nil
}

func buildText(b tensor.Backend, d *config.ModelDir, sub string, src weightSource, opt LoadOptions) (*clip.TextModel, error) {
	te, err := metaText(d, sub)
	if err != nil {
		return nil, err
	}
	return te, src.fill(b, sub, te, opt)
}

// metaText builds text encoder sub of d without weights.
func metaText(d *config.ModelDir, sub string) (*clip.TextModel, error) {
	cfg, err := d.TextEncoderConfig(sub)
	if err != nil {
		return nil, err
	}
	return clip.New(cfg)
}

func buildUNet(b tensor.Backend, d *config.ModelDir, src weightSource, opt LoadOptions) (*unet.UNet, error) {
	cfg, err := d.UNetConfig()
	if err != nil {
		return nil, err
	}
	// A single file, not its config, says whether its UNet inpaints (9
	// input channels: latents, mask, masked-image latents), as diffusers
	// infers the inpainting model type from the checkpoint.
	if sf, ok := src.(*singleFile); ok {
		if c := singlefile.UNetInChannels(sf.src.Shape); c != 0 {
			cfg.InChannels = c
		}
	}
	u, err := unet.New(cfg)
	if err != nil {
		return nil, err
	}
	return u, src.fill(b, "unet", u, opt)
}

func buildVAE(b tensor.Backend, d *config.ModelDir, src weightSource, opt LoadOptions) (*vae.VAE, error) {
	cfg, err := d.VAEConfig()
	if err != nil {
		return nil, err
	}
	v, err := vae.New(cfg)
	if err != nil {
		return nil, err
	}
	return v, src.fill(b, "vae", v, opt)
}

// loadTokenizers returns the tokenizers model_index.json lists: from the
// folder's tokenizer/ and tokenizer_2/ when they hold files, else the
// embedded CLIP table with SDXL's pad rules (single files and the embedded
// real configs carry none). A tokenizer listed as null (diffusers' test
// models) stays nil.
func loadTokenizers(d *config.ModelDir, withFirst bool) (tok1, tok2 clip.Tokenizer, err error) {
	def1, def2, err := tokenizer.DefaultSDXL()
	if err != nil {
		return nil, nil, err
	}
	load := func(name string, def *tokenizer.Tokenizer) (clip.Tokenizer, error) {
		if c, ok := d.ModelIndex.Component(name); !ok || !c.Present() {
			return nil, nil
		}
		dir := filepath.Join(d.Root, name)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return def, nil
		}
		return tokenizer.Load(dir)
	}
	if withFirst {
		if tok1, err = load("tokenizer", def1); err != nil {
			return nil, nil, err
		}
	}
	tok2, err = load("tokenizer_2", def2)
	return tok1, tok2, err
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
	// Its values are checked now, against the class it names (when known):
	// a broken file is the model's fault, not the --scheduler choice's.
	if cls := cfg.ClassName(); slices.Contains(sched.ClassNames(), cls) {
		if _, err := sched.Resolve(cls, cfg); err != nil {
			return nil, fmt.Errorf("%s: %v", filepath.Join(d.Root, "scheduler", "scheduler_config.json"), err)
		}
	}
	return cfg, nil
}
