package sdxl

import (
	"fmt"
	"strings"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/sdxl/clip"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/sdxl/singlefile"
	"github.com/sdxl-go/sdxl/sdxl/unet"
	"github.com/sdxl-go/sdxl/sdxl/vae"
	"github.com/sdxl-go/sdxl/tensor"
)

// weightSource fills the meta components of a model under construction.
// The component names are the diffusers folder names: text_encoder,
// text_encoder_2, unet, vae.
type weightSource interface {
	// hasTextEncoder1 says whether the model has CLIP ViT-L (the base).
	hasTextEncoder1(d *config.ModelDir) bool
	// fill materialises module (a meta *clip.TextModel, *unet.UNet or
	// *vae.VAE) on b, strictly.
	fill(b tensor.Backend, name string, module any, opt LoadOptions) error
	// files lists the weight files read, for the run's metadata.
	files() []string
}

// loadModule loads one component from an nn.Source with its own loader
// (each knows its checkpoint quirks: text_model. prefixes, 1x1-conv
// attention in the VAE).
func loadModule(b tensor.Backend, name string, module any, src nn.Source, opt LoadOptions) error {
	switch m := module.(type) {
	case *clip.TextModel:
		return m.LoadSource(b, src, opt.DType)
	case *unet.UNet:
		return m.Load(b, src, unet.LoadOptions{DType: opt.DType, Progress: opt.progress(name)})
	case *vae.VAE:
		// SDXL's VAE overflows in fp16: it always stays F32.
		return m.Load(b, src, vae.LoadOptions{Progress: opt.progress(name)})
	}
	return fmt.Errorf("sdxl: cannot load a %T", module)
}

// folderWeights reads a diffusers folder, each component with the variant
// DiffusionPipeline.from_pretrained would pick for it.
type folderWeights struct {
	d        *config.ModelDir
	variants map[string]string
	read     []string
}

func newFolderWeights(d *config.ModelDir, variant string) (*folderWeights, error) {
	v, err := d.PipelineVariants(variant)
	if err != nil {
		return nil, err
	}
	return &folderWeights{d: d, variants: v}, nil
}

func (f *folderWeights) hasTextEncoder1(d *config.ModelDir) bool {
	c, ok := d.ModelIndex.Component("text_encoder")
	return ok && c.Present()
}

func (f *folderWeights) fill(b tensor.Backend, name string, module any, opt LoadOptions) error {
	ws, err := f.d.OpenWeights(name, f.variants[name])
	if err != nil {
		return err
	}
	defer ws.Close()
	if err := loadModule(b, name, module, ws, opt); err != nil {
		return fmt.Errorf("%s: %w", strings.Join(ws.Paths(), ", "), err)
	}
	f.read = append(f.read, ws.Paths()...)
	return nil
}

func (f *folderWeights) files() []string { return f.read }

// singleFile reads an original-layout checkpoint (sd_xl_base_1.0.safetensors)
// through the name mappings of package singlefile.
type singleFile struct {
	path string
	src  *config.WeightSet
	kind singlefile.Kind
	// explicitConfigs is set when the configs came from the user rather
	// than the real SDXL ones (shape errors then blame the file or them).
	explicitConfigs bool
	d               *config.ModelDir
}

func openSingleFile(path string) (*singleFile, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	src, err := config.NewWeightSet(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	has := func(n string) bool { _, ok := src.Shape(n); return ok }
	kind, err := singlefile.Detect(has)
	if err != nil {
		src.Close()
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return &singleFile{path: path, src: src, kind: kind}, nil
}

func (s *singleFile) close() { s.src.Close() }

// configs returns configDir's configs, or the real SDXL 1.0 ones of the
// kind the file's keys reveal.
func (s *singleFile) configs(configDir string) (*config.ModelDir, error) {
	var err error
	switch {
	case configDir != "":
		s.explicitConfigs = true
		s.d, err = config.OpenModelDir(configDir)
	case s.kind == singlefile.Refiner:
		s.d, err = config.RealModelDir(config.SDXLRefinerName)
	default:
		s.d, err = config.RealModelDir(config.SDXLBaseName)
	}
	return s.d, err
}

func (s *singleFile) hasTextEncoder1(*config.ModelDir) bool { return s.kind == singlefile.Base }

func (s *singleFile) fill(b tensor.Backend, name string, module any, opt LoadOptions) error {
	params := nn.Params(module, "")
	var v *singlefile.View
	var err error
	switch m := module.(type) {
	case *clip.TextModel:
		if name == "text_encoder" {
			v, err = singlefile.CLIPText(s.src, params)
		} else {
			v, err = singlefile.OpenCLIP(s.src, params, s.kind)
		}
	case *unet.UNet:
		down, up := m.BlockTypes()
		v, err = singlefile.UNet(s.src, params, singlefile.LayoutFromBlockTypes(down, up, m.LayersPerBlock()[0]))
	case *vae.VAE:
		v, err = singlefile.VAE(s.src, params, len(m.Config().BlockOutChannels))
	}
	if err == nil {
		err = loadModule(b, name, module, v, opt)
	}
	if err == nil {
		return nil
	}
	if !s.explicitConfigs && strings.Contains(err.Error(), "the model expects") {
		return fmt.Errorf("%s: %s: %v (this file does not have the real SDXL sizes: give --config with a diffusers folder holding its configs)", s.path, name, err)
	}
	return fmt.Errorf("%s: %s: %v", s.path, name, err)
}

// checkAllUsed fails on a key that belongs to no component.
func (s *singleFile) checkAllUsed() error {
	for _, k := range s.src.Names() {
		if !strings.HasPrefix(k, singlefile.UNetPrefix) && !strings.HasPrefix(k, singlefile.VAEPrefix) &&
			!strings.HasPrefix(k, "conditioner.embedders.") && !singlefile.Ignorable(k) {
			return fmt.Errorf("%s: unexpected weight %q (not part of an SDXL UNet, VAE or text encoder)", s.path, k)
		}
	}
	return nil
}

func (s *singleFile) files() []string { return []string{s.path} }

// randomWeights fills every component with deterministic random numbers
// (one stream per component, see nn.InitRandom).
type randomWeights struct{ seed uint64 }

// randomOffset keeps each component's stream where it always was, so that
// benchmarks compare like with like across versions.
func randomOffset(name string) uint64 {
	switch name {
	case "text_encoder_2":
		return 1
	case "unet":
		return 2
	case "vae":
		return 3
	}
	return 0
}

func (r randomWeights) hasTextEncoder1(d *config.ModelDir) bool {
	c, ok := d.ModelIndex.Component("text_encoder")
	return ok && c.Present()
}

func (r randomWeights) fill(b tensor.Backend, name string, module any, opt LoadOptions) error {
	dt := opt.DType
	if name == "vae" {
		dt = tensor.F32
	}
	nn.InitRandom(b, module, dt, r.seed+randomOffset(name))
	return nil
}

func (randomWeights) files() []string { return nil }
