package config

import (
	"embed"
	"fmt"
	"io/fs"
)

// realFS holds the configs of the released SDXL 1.0 pipelines in the
// layout of their Hugging Face repos (without weights or tokenizers):
// stabilityai/stable-diffusion-xl-base-1.0 and
// stabilityai/stable-diffusion-xl-refiner-1.0. They serve single-file
// checkpoints (which carry no configs) and random-weight benchmarks.
//
// Provenance: the base UNet config matches copies of the published file
// key for key; the refiner UNet differs from it only in the values of
// DESIGN.md §4 (block_out_channels, block types, transformer depth 4,
// heads, cross_attention_dim 1280, projection input 2560); the VAE and
// text-encoder files hold the published values. Every number is checked by
// the tests against the full-size state-dict key lists
// (golden/full-keys), whose parameter counts equal the published ones.
// The scheduler file is the base repo's (golden/tiny keeps it verbatim);
// the refiner repo's is assumed identical.
//
//go:embed real
var realFS embed.FS

// Names of the embedded config sets.
const (
	SDXLBaseName    = "stable-diffusion-xl-base-1.0"
	SDXLRefinerName = "stable-diffusion-xl-refiner-1.0"
)

// RealModelDir returns an embedded config set (SDXLBaseName or
// SDXLRefinerName) as a ModelDir: its configs read like a folder's, and
// WeightFiles/OpenWeights report that it has no weights.
func RealModelDir(name string) (*ModelDir, error) {
	if name != SDXLBaseName && name != SDXLRefinerName {
		return nil, fmt.Errorf("no embedded config set %q (have %s, %s)", name, SDXLBaseName, SDXLRefinerName)
	}
	sub, err := fs.Sub(realFS, "real/"+name)
	if err != nil {
		return nil, err
	}
	return openFS(sub, "embedded:"+name, false)
}

// mustReal reads one embedded config; the embedded files are fixed and
// checked by the tests, so failure here is a build defect, not bad input.
func mustReal[T any](name string, get func(*ModelDir) (T, error)) T {
	d, err := RealModelDir(name)
	if err == nil {
		var v T
		if v, err = get(d); err == nil {
			return v
		}
	}
	panic(fmt.Sprintf("config: embedded SDXL config %s is broken: %v", name, err))
}

// SDXLBaseUNet is the SDXL 1.0 base UNet (2,567,463,684 parameters).
func SDXLBaseUNet() *UNetConfig {
	return mustReal(SDXLBaseName, (*ModelDir).UNetConfig)
}

// SDXLRefinerUNet is the SDXL 1.0 refiner UNet (2,259,526,660 parameters).
func SDXLRefinerUNet() *UNetConfig {
	return mustReal(SDXLRefinerName, (*ModelDir).UNetConfig)
}

// SDXLVAE is the SDXL VAE (83,653,863 parameters), shared by base and
// refiner.
func SDXLVAE() *VAEConfig {
	return mustReal(SDXLBaseName, (*ModelDir).VAEConfig)
}

// SDXLTextEncoder is CLIP ViT-L/14's text model (text_encoder).
func SDXLTextEncoder() *TextEncoderConfig {
	return mustReal(SDXLBaseName, func(d *ModelDir) (*TextEncoderConfig, error) { return d.TextEncoderConfig("text_encoder") })
}

// SDXLTextEncoder2 is OpenCLIP bigG's text model with projection
// (text_encoder_2), shared by base and refiner.
func SDXLTextEncoder2() *TextEncoderConfig {
	return mustReal(SDXLBaseName, func(d *ModelDir) (*TextEncoderConfig, error) { return d.TextEncoderConfig("text_encoder_2") })
}

// RealConfigJSON returns the bytes of one embedded file, e.g.
// RealConfigJSON(SDXLBaseName, "scheduler/scheduler_config.json").
func RealConfigJSON(set, file string) ([]byte, error) {
	d, err := RealModelDir(set)
	if err != nil {
		return nil, err
	}
	data, err := fs.ReadFile(d.fsys, file)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", d.path(file), err)
	}
	return data, nil
}
