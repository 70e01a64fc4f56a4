package sdxl

import (
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/clip"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/sdxl/tokenizer"
	"github.com/sdxl-go/sdxl/sdxl/unet"
	"github.com/sdxl-go/sdxl/sdxl/vae"
	"github.com/sdxl-go/sdxl/tensor"
)

// RandomModel builds the real SDXL 1.0 base (or refiner) from its configs
// with deterministic random weights: it costs exactly what the real model
// costs in memory and compute, so benchmarks need no download. Its images
// are meaningless. The VAE is always F32.
func RandomModel(b tensor.Backend, refiner bool, dt tensor.DType, seed uint64) (*Model, error) {
	name := config.SDXLBaseName
	if refiner {
		name = config.SDXLRefinerName
	}
	d, err := config.RealModelDir(name)
	if err != nil {
		return nil, err
	}
	m := &Model{Path: "random:" + name, Index: d.ModelIndex, RequiresAestheticsScore: d.ModelIndex.RequiresAestheticsScore}
	m.Text = &clip.SDXL{ForceZerosForEmptyPrompt: d.ModelIndex.ForceZerosForEmptyPrompt}
	tok1, tok2, err := tokenizer.DefaultSDXL()
	if err != nil {
		return nil, err
	}
	if !refiner {
		cfg, err := d.TextEncoderConfig("text_encoder")
		if err != nil {
			return nil, err
		}
		if m.Text.TextEncoder, err = clip.New(cfg); err != nil {
			return nil, err
		}
		nn.InitRandom(b, m.Text.TextEncoder, dt, seed)
		m.Text.Tokenizer, m.Tok1 = tok1, tok1
	}
	cfg2, err := d.TextEncoderConfig("text_encoder_2")
	if err != nil {
		return nil, err
	}
	if m.Text.TextEncoder2, err = clip.New(cfg2); err != nil {
		return nil, err
	}
	nn.InitRandom(b, m.Text.TextEncoder2, dt, seed+1)
	m.Text.Tokenizer2, m.Tok2 = tok2, tok2
	ucfg, err := d.UNetConfig()
	if err != nil {
		return nil, err
	}
	if m.UNet, err = unet.New(ucfg); err != nil {
		return nil, err
	}
	nn.InitRandom(b, m.UNet, dt, seed+2)
	vcfg, err := d.VAEConfig()
	if err != nil {
		return nil, err
	}
	if m.VAE, err = vae.New(vcfg); err != nil {
		return nil, err
	}
	nn.InitRandom(b, m.VAE, tensor.F32, seed+3)
	if m.Scheduler, err = schedulerConfig(d); err != nil {
		return nil, err
	}
	return m, nil
}
