// Package controlnet is diffusers' ControlNetModel for SDXL, built from its
// config.json like the UNet and sharing the UNet's modules: the same
// conv_in, time and added embeddings, down blocks and mid block (package
// unet's Encoder), plus the conditioning embedding that turns the control
// image into conv_in-sized features and the 1x1 "zero" convolutions that
// turn every down-path output and the mid block's output into the
// residuals a UNet adds to its skip connections (unet.Input's
// DownResiduals and MidResidual).
//
// Forward reproduces ControlNetModel.forward in float32, residuals already
// multiplied by conditioning_scale (or by diffusers' guess-mode ramp).
// Models load strictly from a diffusers folder (LoadDir) or from a single
// file in the diffusers or the original ControlNet layout (LoadFile).
package controlnet

import (
	"context"
	"fmt"
	"math"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/sdxl/unet"
	"github.com/sdxl-go/sdxl/tensor"
)

// ControlNet is a ControlNetModel. Field tags are the diffusers weight
// names; the embedded Encoder holds conv_in, time_embedding,
// add_embedding, down_blocks and mid_block.
type ControlNet struct {
	*unet.Encoder           `st:""`
	ControlNetCondEmbedding *CondEmbedding `st:"controlnet_cond_embedding"`
	// ControlNetDownBlocks are the zero convolutions of the down path, one
	// per entry of Config().Encoder.SkipChannels().
	ControlNetDownBlocks []*nn.Conv2d `st:"controlnet_down_blocks"`
	ControlNetMidBlock   *nn.Conv2d   `st:"controlnet_mid_block"`

	// Files lists the weight files it was loaded from (for a run's
	// metadata).
	Files []string

	cfg *config.ControlNetConfig
}

// New builds a ControlNet with meta tensors (no weights) from its config
// (see config.ReadControlNetConfig); Load fills it.
func New(cfg *config.ControlNetConfig) (*ControlNet, error) {
	if cfg == nil {
		return nil, fmt.Errorf("controlnet: nil config")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("controlnet config: %w", err)
	}
	enc, err := unet.NewEncoder("controlnet", cfg.Encoder)
	if err != nil {
		return nil, err
	}
	c := &ControlNet{Encoder: enc, cfg: cfg}
	skips := cfg.Encoder.SkipChannels()
	c.ControlNetCondEmbedding = newCondEmbedding(cfg.ConditioningChannels, cfg.ConditioningEmbeddingOutChannels, skips[0])
	for _, ch := range skips {
		c.ControlNetDownBlocks = append(c.ControlNetDownBlocks, nn.NewConv2d(ch, ch, 1, 1, 0))
	}
	mid := skips[len(skips)-1]
	c.ControlNetMidBlock = nn.NewConv2d(mid, mid, 1, 1, 0)
	return c, nil
}

// Config returns the configuration the model was built from.
func (c *ControlNet) Config() *config.ControlNetConfig { return c.cfg }

// Input is one ControlNet call (diffusers' forward arguments).
type Input struct {
	// Sample, Timesteps, EncoderHiddenStates, TextEmbeds and TimeIDs are
	// what the UNet gets at the same step (see unet.Input).
	Sample              *tensor.Tensor
	Timesteps           []float32
	EncoderHiddenStates *tensor.Tensor
	TextEmbeds          *tensor.Tensor
	TimeIDs             []float32
	// Cond is controlnet_cond, the control image [B, conditioning_channels,
	// H, W] in [0, 1] (the pipelines do not map it to [-1, 1]), H and W the
	// latents' times Config().CondDownscale().
	Cond *tensor.Tensor
	// Scale is conditioning_scale: every residual is multiplied by it.
	Scale float64
	// GuessMode multiplies the residuals by a ramp instead, from 0.1 for
	// conv_in's to 1 for the mid block's (times Scale), as diffusers'
	// guess_mode does.
	GuessMode bool
}

// Output holds the residuals of one call: Down[k] is added to the UNet's
// k-th skip connection (diffusers' down_block_res_samples), Mid to its mid
// block's output.
type Output struct {
	Down []*tensor.Tensor
	Mid  *tensor.Tensor
}

// Free releases the residuals.
func (o *Output) Free() {
	if o != nil {
		tensor.FreeAll(append(o.Down, o.Mid)...)
	}
}

// Forward runs the ControlNet. rec (nil for none) receives module outputs
// by diffusers path: the shared modules' (conv_in, down_blocks.*, ...),
// controlnet_cond_embedding and the zero convolutions'
// (controlnet_down_blocks.k, controlnet_mid_block, before scaling). The
// inputs are not modified or freed. The pass stops at the first op after
// ctx ends and returns the context's error, with every tensor it made
// freed.
func (c *ControlNet) Forward(ctx context.Context, b tensor.Backend, in Input, rec nn.Recorder) (_ *Output, err error) {
	s := tensor.NewScopeContext(ctx, b)
	defer s.Exit(&err)
	cond, _, err := c.Encoder.Condition(s, rec, unet.Input{
		Sample: in.Sample, Timesteps: in.Timesteps, EncoderHiddenStates: in.EncoderHiddenStates,
		TextEmbeds: in.TextEmbeds, TimeIDs: in.TimeIDs,
	})
	if err != nil {
		return nil, err
	}
	if err := c.checkCond(in); err != nil {
		return nil, err
	}
	if math.IsNaN(in.Scale) || math.IsInf(in.Scale, 0) {
		return nil, fmt.Errorf("controlnet: conditioning scale %g is not a finite number", in.Scale)
	}

	h := c.ConvIn.Forward(s, in.Sample)
	nn.RecordOut(rec, "conv_in", h)
	h, skips := c.Encoder.Down(s, rec, s.Add(h, c.condFeatures(s, rec, in)), cond)
	mid := c.MidBlock.Forward(s, rec, s.Borrow(h), cond.Temb, cond.Context) // h is the last skip

	scales := c.scales(in, len(skips)+1)
	out := &Output{}
	for k, sk := range skips {
		out.Down = append(out.Down, s.Keep(c.zeroConv(s, rec, fmt.Sprintf("controlnet_down_blocks.%d", k), c.ControlNetDownBlocks[k], sk, scales[k])))
	}
	out.Mid = s.Keep(c.zeroConv(s, rec, "controlnet_mid_block", c.ControlNetMidBlock, mid, scales[len(skips)]))
	return out, nil
}

// checkCond validates the control image against the latents.
func (c *ControlNet) checkCond(in Input) error {
	x := in.Cond
	B, h, w := in.Sample.Dim(0), in.Sample.Dim(2), in.Sample.Dim(3)
	ch := c.cfg.ConditioningChannels
	if x == nil || x.Rank() != 4 || x.Dim(0) != B || x.Dim(1) != ch {
		return fmt.Errorf("controlnet: the control image must be [%d, %d, H, W] (batch, channels), got %v", B, ch, shapeOf(x))
	}
	fh, fw := x.Dim(2), x.Dim(3)
	for range len(c.cfg.ConditioningEmbeddingOutChannels) - 1 {
		fh, fw = (fh+1)/2, (fw+1)/2 // a 3x3 stride-2 convolution with padding 1
	}
	if fh != h || fw != w {
		f := c.cfg.CondDownscale()
		return fmt.Errorf("controlnet: a %dx%d control image gives %dx%d features, the latents are %dx%d (want a %dx%d image)",
			x.Dim(3), x.Dim(2), fw, fh, w, h, w*f, h*f)
	}
	return nil
}

// condFeatures runs controlnet_cond_embedding on the control image, in the
// sample's dtype and channel order.
func (c *ControlNet) condFeatures(s *tensor.Scope, rec nn.Recorder, in Input) *tensor.Tensor {
	x := in.Cond
	if dt := in.Sample.DType(); x.DType() != dt {
		x = s.Cast(x, dt)
	}
	if c.cfg.ChannelOrder == "bgr" {
		x = flipChannels(s, x)
	}
	return c.ControlNetCondEmbedding.Forward(s, rec, x)
}

// flipChannels is torch.flip(x, dims=[1]).
func flipChannels(s *tensor.Scope, x *tensor.Tensor) *tensor.Tensor {
	n := x.Dim(1)
	parts := make([]*tensor.Tensor, n)
	for i := range parts {
		src := x
		if i < n-1 {
			src = s.Borrow(x)
		}
		parts[i] = s.Slice(src, 1, n-1-i, n-i)
	}
	return s.Concat(1, parts...)
}

// zeroConv applies one zero convolution, the scale and, with
// global_pool_conditions, the spatial mean.
func (c *ControlNet) zeroConv(s *tensor.Scope, rec nn.Recorder, path string, conv *nn.Conv2d, x *tensor.Tensor, scale float32) *tensor.Tensor {
	y := conv.Forward(s, x)
	nn.RecordOut(rec, path, y)
	out := s.Scale(y, scale)
	if c.cfg.GlobalPoolConditions {
		out = s.Mean(s.Mean(out, 3), 2)
	}
	return out
}

// scales returns the factor of each of n residuals (the down ones, then
// the mid one): the conditioning scale, or in guess mode
// torch.logspace(-1, 0, n) * scale in float32.
func (c *ControlNet) scales(in Input, n int) []float32 {
	s := float32(in.Scale)
	out := make([]float32, n)
	for i := range out {
		out[i] = s
	}
	if !in.GuessMode || c.cfg.GlobalPoolConditions {
		return out
	}
	for i, v := range logspace(-1, 0, n) {
		out[i] = v * s
	}
	return out
}

// logspace is torch.logspace(start, end, steps) in float32 on the CPU: the
// exponents step in double precision, from the start for the first half
// and from the end for the second, and each power is rounded to float32.
func logspace(start, end float32, steps int) []float32 {
	out := make([]float32, steps)
	if steps == 1 {
		out[0] = float32(math.Pow(10, float64(start)))
		return out
	}
	step := float64(end-start) / float64(steps-1)
	half := steps / 2
	for i := range out {
		if i < half {
			out[i] = float32(math.Pow(10, float64(start)+step*float64(i)))
		} else {
			out[i] = float32(math.Pow(10, float64(end)-step*float64(steps-i-1)))
		}
	}
	return out
}

func shapeOf(t *tensor.Tensor) any {
	if t == nil {
		return "nil"
	}
	return t.Shape()
}

// Merge adds next's residuals to o's, as MultiControlNetModel merges the
// outputs of its ControlNets (prev + curr, in order), and frees next and
// o's previous tensors.
func (o *Output) Merge(b tensor.Backend, next *Output) {
	s := tensor.NewScope(b)
	defer s.Release()
	for k, d := range next.Down {
		o.Down[k] = s.Keep(s.Add(s.Own(o.Down[k]), s.Own(d)))
	}
	o.Mid = s.Keep(s.Add(s.Own(o.Mid), s.Own(next.Mid)))
}

// PadZeros prepends zero rows to every residual (cat([zeros_like(r), r])):
// in guess mode with classifier-free guidance the pipelines run the
// ControlNet on the text-conditioned half of the batch only and leave the
// unconditional half unchanged.
func (o *Output) PadZeros(b tensor.Backend) {
	s := tensor.NewScope(b)
	defer s.Release()
	pad := func(r *tensor.Tensor) *tensor.Tensor {
		return s.Keep(s.Concat(0, s.Zeros(r.DType(), r.Shape()...), s.Own(r)))
	}
	for k, d := range o.Down {
		o.Down[k] = pad(d)
	}
	o.Mid = pad(o.Mid)
}
