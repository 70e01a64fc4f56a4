// Package vae is diffusers' AutoencoderKL as SDXL uses it: the encoder
// (image -> diagonal Gaussian posterior over latents) and the decoder
// (latents -> image), built from vae/config.json.
//
// Latent scaling follows the pipelines: the UNet works on
// scaling_factor * sample; Decode takes unscaled latents (use Unscale), and
// Scale maps an encoder sample to the UNet's space.
package vae

import (
	"context"
	"fmt"
	"math"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/tensor"
)

// VAE is an AutoencoderKL. Field tags are the diffusers weight names.
type VAE struct {
	Encoder       *Encoder   `st:"encoder"`
	Decoder       *Decoder   `st:"decoder"`
	QuantConv     *nn.Conv2d `st:"quant_conv"`      // nil when use_quant_conv is false
	PostQuantConv *nn.Conv2d `st:"post_quant_conv"` // nil when use_post_quant_conv is false

	cfg *config.VAEConfig
}

// EncoderBlock is DownEncoderBlock2D: resnets without time embedding and
// an optional downsampler (padding 0: asymmetric pad, as diffusers).
type EncoderBlock struct {
	Resnets      []*nn.ResnetBlock2D `st:"resnets"`
	Downsamplers []*nn.Downsample2D  `st:"downsamplers"`
	Path         string
}

// DecoderBlock is UpDecoderBlock2D: resnets and an optional 2x upsampler.
type DecoderBlock struct {
	Resnets    []*nn.ResnetBlock2D `st:"resnets"`
	Upsamplers []*nn.Upsample2D    `st:"upsamplers"`
	Path       string
}

// MidBlock is UNetMidBlock2D: resnet, then (attention, resnet) pairs; the
// attention is single-head with a group norm and a residual.
type MidBlock struct {
	Attentions []*nn.Attention     `st:"attentions"`
	Resnets    []*nn.ResnetBlock2D `st:"resnets"`
	Path       string
}

// Encoder is diffusers' vae.Encoder with double_z.
type Encoder struct {
	ConvIn      *nn.Conv2d      `st:"conv_in"`
	DownBlocks  []*EncoderBlock `st:"down_blocks"`
	MidBlock    *MidBlock       `st:"mid_block"`
	ConvNormOut *nn.GroupNorm   `st:"conv_norm_out"`
	ConvOut     *nn.Conv2d      `st:"conv_out"`
}

// Decoder is diffusers' vae.Decoder with group norms.
type Decoder struct {
	ConvIn      *nn.Conv2d      `st:"conv_in"`
	MidBlock    *MidBlock       `st:"mid_block"`
	UpBlocks    []*DecoderBlock `st:"up_blocks"`
	ConvNormOut *nn.GroupNorm   `st:"conv_norm_out"`
	ConvOut     *nn.Conv2d      `st:"conv_out"`
}

const eps = 1e-6 // every VAE norm (diffusers hard-codes it)

// New builds a meta VAE (no weights) from its config (see
// config.ReadVAEConfig, config.SDXLVAE).
func New(cfg *config.VAEConfig) (*VAE, error) {
	if err := supported(cfg); err != nil {
		return nil, err
	}
	bl := builder{cfg}
	v := &VAE{Encoder: bl.encoder(), Decoder: bl.decoder(), cfg: cfg}
	if cfg.UseQuantConv {
		v.QuantConv = nn.NewConv2d(2*cfg.LatentChannels, 2*cfg.LatentChannels, 1, 1, 0)
	}
	if cfg.UsePostQuantConv {
		v.PostQuantConv = nn.NewConv2d(cfg.LatentChannels, cfg.LatentChannels, 1, 1, 0)
	}
	return v, nil
}

// builder makes the meta modules of a VAE config.
type builder struct{ c *config.VAEConfig }

func (bl builder) resnet(path string, in, out int) *nn.ResnetBlock2D {
	return nn.NewResnetBlock2D(path, nn.ResnetConfig{In: in, Out: out, Groups: bl.c.NormNumGroups, Eps: eps})
}

// mid is diffusers' UNetMidBlock2D of the encoder or decoder.
func (bl builder) mid(path string, ch int) *MidBlock {
	m := &MidBlock{Path: path}
	m.Resnets = append(m.Resnets, bl.resnet(path+".resnets.0", ch, ch))
	if bl.c.MidBlockAddAttention {
		// heads = channels / attention_head_dim with attention_head_dim =
		// channels: one head.
		a := nn.NewAttention(path+".attentions.0", ch, ch, 1, ch, true)
		a.GroupNorm = nn.NewGroupNorm(bl.c.NormNumGroups, ch, eps)
		a.Residual = true
		m.Attentions = append(m.Attentions, a)
	}
	m.Resnets = append(m.Resnets, bl.resnet(path+".resnets.1", ch, ch))
	return m
}

func (bl builder) encoder() *Encoder {
	c := bl.c
	n := len(c.BlockOutChannels)
	enc := &Encoder{ConvIn: nn.NewConv2d(c.InChannels, c.BlockOutChannels[0], 3, 1, 1)}
	out := c.BlockOutChannels[0]
	for i := range n {
		in := out
		out = c.BlockOutChannels[i]
		p := fmt.Sprintf("encoder.down_blocks.%d", i)
		blk := &EncoderBlock{Path: p}
		for j := range c.LayersPerBlock {
			rin := out
			if j == 0 {
				rin = in
			}
			blk.Resnets = append(blk.Resnets, bl.resnet(fmt.Sprintf("%s.resnets.%d", p, j), rin, out))
		}
		if i < n-1 {
			blk.Downsamplers = []*nn.Downsample2D{nn.NewDownsample2D(p+".downsamplers.0", out, out, 0)}
		}
		enc.DownBlocks = append(enc.DownBlocks, blk)
	}
	last := c.BlockOutChannels[n-1]
	enc.MidBlock = bl.mid("encoder.mid_block", last)
	enc.ConvNormOut = nn.NewGroupNorm(c.NormNumGroups, last, eps)
	enc.ConvOut = nn.NewConv2d(last, 2*c.LatentChannels, 3, 1, 1)
	return enc
}

func (bl builder) decoder() *Decoder {
	c := bl.c
	n := len(c.BlockOutChannels)
	last := c.BlockOutChannels[n-1]
	dec := &Decoder{ConvIn: nn.NewConv2d(c.LatentChannels, last, 3, 1, 1)}
	dec.MidBlock = bl.mid("decoder.mid_block", last)
	out := last
	for i := range n {
		prev := out
		out = c.BlockOutChannels[n-1-i]
		p := fmt.Sprintf("decoder.up_blocks.%d", i)
		blk := &DecoderBlock{Path: p}
		for j := range c.LayersPerBlock + 1 {
			rin := out
			if j == 0 {
				rin = prev
			}
			blk.Resnets = append(blk.Resnets, bl.resnet(fmt.Sprintf("%s.resnets.%d", p, j), rin, out))
		}
		if i < n-1 {
			blk.Upsamplers = []*nn.Upsample2D{nn.NewUpsample2D(p+".upsamplers.0", out, out)}
		}
		dec.UpBlocks = append(dec.UpBlocks, blk)
	}
	first := c.BlockOutChannels[0]
	dec.ConvNormOut = nn.NewGroupNorm(c.NormNumGroups, first, eps)
	dec.ConvOut = nn.NewConv2d(first, c.OutChannels, 3, 1, 1)
	return dec
}

// ScaleFactor is the ratio of image to latent size,
// 2^(len(block_out_channels)-1) (8 for SDXL), diffusers' vae_scale_factor.
func (v *VAE) ScaleFactor() int { return 1 << (len(v.cfg.BlockOutChannels) - 1) }

// Config returns the model's configuration.
func (v *VAE) Config() *config.VAEConfig { return v.cfg }

func (m *MidBlock) forward(s *tensor.Scope, rec nn.Recorder, x *tensor.Tensor) *tensor.Tensor {
	nn.RecordIn(rec, m.Path, x)
	h := m.Resnets[0].Forward(s, rec, x, nil)
	for i, r := range m.Resnets[1:] {
		if i < len(m.Attentions) {
			h = m.Attentions[i].ForwardSpatial(s, rec, h)
		}
		h = r.Forward(s, rec, h, nil)
	}
	nn.RecordOut(rec, m.Path, h)
	return h
}

// normActConv is conv_out(SiLU(conv_norm_out(x))); recorded unfused so the
// norm's own output can be observed.
func normActConv(s *tensor.Scope, rec nn.Recorder, prefix string, norm *nn.GroupNorm, conv *nn.Conv2d, x *tensor.Tensor) *tensor.Tensor {
	var act *tensor.Tensor
	if rec != nil {
		n := norm.Forward(s, x)
		rec.Record(prefix+".conv_norm_out", n)
		act = s.SiLU(n)
		rec.Record(prefix+".conv_act", act)
	} else {
		act = norm.ForwardSiLU(s, x)
	}
	out := conv.Forward(s, act)
	nn.RecordOut(rec, prefix+".conv_out", out)
	return out
}

func checkImage(what string, x *tensor.Tensor, ch int) error {
	if x == nil || x.Rank() != 4 || x.Dim(1) != ch {
		var s any = "nil"
		if x != nil {
			s = x.Shape()
		}
		return fmt.Errorf("vae: %s must be [B, %d, H, W], got %v", what, ch, s)
	}
	return nil
}

// Moments runs the encoder and quant_conv on an image batch x [B, 3, H, W]
// in [-1, 1] and returns the posterior parameters [B, 2*latent, H/f, W/f]
// (mean | logvar). The pass stops at the first op after ctx ends and
// returns the context's error.
func (v *VAE) Moments(ctx context.Context, b tensor.Backend, rec nn.Recorder, x *tensor.Tensor) (_ *tensor.Tensor, err error) {
	if err := checkImage("image", x, v.cfg.InChannels); err != nil {
		return nil, err
	}
	s := tensor.NewScopeContext(ctx, b)
	defer s.Exit(&err)
	e := v.Encoder
	nn.RecordIn(rec, "encoder", x)
	h := e.ConvIn.Forward(s, x)
	nn.RecordOut(rec, "encoder.conv_in", h)
	for _, blk := range e.DownBlocks {
		nn.RecordIn(rec, blk.Path, h)
		for _, r := range blk.Resnets {
			h = r.Forward(s, rec, h, nil)
		}
		for _, d := range blk.Downsamplers {
			h = d.Forward(s, rec, h)
		}
		nn.RecordOut(rec, blk.Path, h)
	}
	h = normActConv(s, rec, "encoder", e.ConvNormOut, e.ConvOut, e.MidBlock.forward(s, rec, h))
	nn.RecordOut(rec, "encoder", h)
	if v.QuantConv != nil {
		h = v.QuantConv.Forward(s, h)
		nn.RecordOut(rec, "quant_conv", h)
	}
	return s.Keep(h), nil
}

// Posterior is diffusers' DiagonalGaussianDistribution over latents.
type Posterior struct {
	Mean, LogVar, Std *tensor.Tensor
}

// Encode returns the latent distribution of x [B, 3, H, W] in [-1, 1]:
// mean, logvar clamped to [-30, 20], std = exp(logvar/2).
func (v *VAE) Encode(ctx context.Context, b tensor.Backend, rec nn.Recorder, x *tensor.Tensor) (*Posterior, error) {
	s := tensor.NewScope(b)
	defer s.Release()
	mom, err := v.Moments(ctx, s, rec, x)
	if err != nil {
		return nil, err
	}
	return NewPosterior(s, mom).keep(s), nil
}

// NewPosterior splits moments [B, 2L, h, w] into the distribution. The
// clamp and exp run on the host (the Backend has neither op; the tensors
// are small).
func NewPosterior(b tensor.Backend, moments *tensor.Tensor) *Posterior {
	s := tensor.NewScope(b)
	defer s.Release()
	L := moments.Dim(1) / 2
	mean := s.Slice(s.Borrow(moments), 1, 0, L)
	host := s.ToFloat32(s.Slice(moments, 1, L, 2*L))
	std := make([]float32, len(host))
	for i, v := range host {
		v = min(max(v, -30), 20)
		host[i] = v
		std[i] = float32(math.Exp(float64(float32(0.5) * v)))
	}
	p := &Posterior{
		Mean:   mean,
		LogVar: s.FromFloat32(moments.DType(), mean.Shape(), host),
		Std:    s.FromFloat32(moments.DType(), mean.Shape(), std),
	}
	return p.keep(s)
}

// keep hands the posterior's tensors to the parent of s.
func (p *Posterior) keep(s *tensor.Scope) *Posterior {
	s.Keep(p.Mean)
	s.Keep(p.LogVar)
	s.Keep(p.Std)
	return p
}

// Sample returns mean + std * noise for a noise tensor of the latent shape
// (diffusers draws it with randn_tensor; the caller supplies it so that
// any generator can be matched).
func (p *Posterior) Sample(b tensor.Backend, noise *tensor.Tensor) (*tensor.Tensor, error) {
	if !noise.Shape().Equal(p.Mean.Shape()) {
		return nil, fmt.Errorf("vae: noise %v does not match the latent shape %v", noise.Shape(), p.Mean.Shape())
	}
	s := tensor.NewScope(b)
	defer s.Release()
	return s.Keep(s.Add(s.Borrow(p.Mean), s.Mul(s.Borrow(p.Std), noise))), nil
}

// Free releases the posterior's tensors.
func (p *Posterior) Free() { tensor.FreeAll(p.Mean, p.LogVar, p.Std) }

// Decode maps unscaled latents z [B, latent, h, w] (see Unscale) to an
// image [B, 3, 8h, 8w] roughly in [-1, 1]. The pass stops at the first op
// after ctx ends and returns the context's error.
func (v *VAE) Decode(ctx context.Context, b tensor.Backend, rec nn.Recorder, z *tensor.Tensor) (_ *tensor.Tensor, err error) {
	if err := checkImage("latents", z, v.cfg.LatentChannels); err != nil {
		return nil, err
	}
	s := tensor.NewScopeContext(ctx, b)
	defer s.Exit(&err)
	h := z
	if v.PostQuantConv != nil {
		h = v.PostQuantConv.Forward(s, z)
		nn.RecordOut(rec, "post_quant_conv", h)
	}
	d := v.Decoder
	nn.RecordIn(rec, "decoder", h)
	h = d.ConvIn.Forward(s, h)
	nn.RecordOut(rec, "decoder.conv_in", h)
	h = d.MidBlock.forward(s, rec, h)
	for _, blk := range d.UpBlocks {
		nn.RecordIn(rec, blk.Path, h)
		for _, r := range blk.Resnets {
			h = r.Forward(s, rec, h, nil)
		}
		for _, u := range blk.Upsamplers {
			h = u.Forward(s, rec, h, 0, 0)
		}
		nn.RecordOut(rec, blk.Path, h)
	}
	out := normActConv(s, rec, "decoder", d.ConvNormOut, d.ConvOut, h)
	nn.RecordOut(rec, "decoder", out)
	return s.Keep(out), nil
}
