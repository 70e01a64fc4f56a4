// Package unet is diffusers' UNet2DConditionModel as SDXL uses it, built
// from the model's config.json (never from hard-coded sizes): the SDXL base
// (3 levels, text_time conditioning with target size) and the refiner (4
// levels, aesthetic score) are the same code with different configs.
//
// The model is built from meta tensors first (New), so every weight name
// and shape is known before any is read; Load then fills it strictly from
// an nn.Source. Forward reproduces diffusers' forward in float32; module
// outputs can be recorded by path (see package capture).
package unet

import (
	"context"
	"fmt"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/tensor"
)

// UNet is a UNet2DConditionModel. Field tags are the diffusers weight
// names; the embedded Encoder holds conv_in, time_embedding,
// add_embedding, down_blocks and mid_block (the half a ControlNet shares).
type UNet struct {
	*Encoder    `st:""`
	UpBlocks    []*UpBlock    `st:"up_blocks"`
	ConvNormOut *nn.GroupNorm `st:"conv_norm_out"`
	ConvOut     *nn.Conv2d    `st:"conv_out"`

	cfg  *config.UNetConfig
	arch *arch
}

// New builds a UNet with meta tensors (no weights) from its config (see
// config.ReadUNetConfig, config.SDXLBaseUNet). Configs outside the SDXL
// UNet family (other block types, class embeddings, ...) are refused.
func New(cfg *config.UNetConfig) (*UNet, error) {
	a, err := archFromConfig(cfg, false)
	if err != nil {
		return nil, err
	}
	u := build(a)
	u.cfg = cfg
	return u, nil
}

// Config returns the configuration the model was built from.
func (u *UNet) Config() *config.UNetConfig { return u.cfg }

func build(a *arch) *UNet {
	u := &UNet{Encoder: buildEncoder(a), arch: a}
	n := len(a.downTypes)
	rev := func(i int) int { return n - 1 - i }
	out := a.blockOut[n-1]
	for i, typ := range a.upTypes {
		prev := out
		out = a.blockOut[rev(i)]
		in := a.blockOut[rev(min(i+1, n-1))]
		p := fmt.Sprintf("up_blocks.%d", i)
		blk := &UpBlock{Path: p}
		layers := a.layersPerBlock[rev(i)] + 1
		for j := range layers {
			skip := out
			if j == layers-1 {
				skip = in
			}
			rin := out
			if j == 0 {
				rin = prev
			}
			blk.Resnets = append(blk.Resnets, a.resnet(fmt.Sprintf("%s.resnets.%d", p, j), rin+skip, out, a.resnetOutScale))
			if typ == "CrossAttnUpBlock2D" {
				blk.Attentions = append(blk.Attentions, a.transformer(fmt.Sprintf("%s.attentions.%d", p, j),
					out, a.heads[rev(i)], a.tLayersUp[i][j], a.crossDim[rev(i)], a.onlyCross[rev(i)]))
			}
		}
		if i < n-1 {
			blk.Upsamplers = []*nn.Upsample2D{nn.NewUpsample2D(p+".upsamplers.0", out, out)}
		}
		u.UpBlocks = append(u.UpBlocks, blk)
	}

	u.ConvNormOut = nn.NewGroupNorm(a.groups, a.blockOut[0], a.eps)
	u.ConvOut = nn.NewConv2d(a.blockOut[0], a.outChannels, a.convOutKernel, 1, (a.convOutKernel-1)/2)
	return u
}

// Input is one UNet call (diffusers' forward arguments).
type Input struct {
	// Sample is the (scheduler-scaled) latent batch [B, in_channels, h, w].
	Sample *tensor.Tensor
	// Timesteps holds one timestep for the whole batch or one per sample;
	// fractional values are fine (Karras-style schedulers).
	Timesteps []float32
	// EncoderHiddenStates is the text context [B, L, cross_attention_dim].
	EncoderHiddenStates *tensor.Tensor
	// TextEmbeds is added_cond_kwargs["text_embeds"], the pooled text
	// embedding [B, P] (text_time models only).
	TextEmbeds *tensor.Tensor
	// TimeIDs is added_cond_kwargs["time_ids"], row-major [B, k] (see
	// BaseTimeIDs / RefinerTimeIDs), text_time models only.
	TimeIDs []float32
	// DownResiduals and MidResidual are diffusers'
	// down_block_additional_residuals and mid_block_additional_residual (a
	// ControlNet's output): DownResiduals[k] is added to the k-th skip
	// connection (one per entry of config.UNetConfig.SkipChannels, each of
	// the skip's shape or [B, C, 1, 1]) and MidResidual to the mid block's
	// output. Give both or neither.
	DownResiduals []*tensor.Tensor
	MidResidual   *tensor.Tensor
}

// BlockTypes returns down_block_types and up_block_types.
func (u *UNet) BlockTypes() (down, up []string) {
	return append([]string(nil), u.arch.downTypes...), append([]string(nil), u.arch.upTypes...)
}

// LayersPerBlock returns the resnet count of each down block (up blocks
// have one more).
func (u *UNet) LayersPerBlock() []int { return append([]int(nil), u.arch.layersPerBlock...) }

func shapeOf(t *tensor.Tensor) any {
	if t == nil {
		return "nil"
	}
	return t.Shape()
}

// Forward runs the UNet and returns the noise prediction [B, out_channels,
// h, w]. rec (nil for none) receives module outputs by diffusers path. The
// inputs are not modified or freed. The pass stops at the first op after
// ctx ends (a step at 2048x2048 on a CPU takes minutes) and returns the
// context's error, with every tensor it made freed.
func (u *UNet) Forward(ctx context.Context, b tensor.Backend, in Input, rec nn.Recorder) (_ *tensor.Tensor, err error) {
	if err := u.checkResiduals(in); err != nil {
		return nil, err
	}
	s := tensor.NewScopeContext(ctx, b)
	defer s.Exit(&err)
	cond, _, err := u.Condition(s, rec, in)
	if err != nil {
		return nil, err
	}
	sample := in.Sample
	if u.arch.centerInput {
		sample = s.Add(s.Scale(sample, 2), s.FromFloat32(sample.DType(), tensor.Shape{1}, []float32{-1}))
	}
	h := u.ConvIn.Forward(s, sample)
	nn.RecordOut(rec, "conv_in", h)
	h, skips := u.Down(s, rec, h, cond)
	if err := u.addResiduals(s, skips, h, in.DownResiduals); err != nil {
		return nil, err
	}
	if in.DownResiduals == nil { // h is still the last skip
		h = s.Borrow(h)
	}
	h = u.mid(s, rec, h, cond, in)
	for i, up := range u.UpBlocks {
		upH, upW := 0, 0
		if i < len(u.UpBlocks)-1 {
			// diffusers passes the next skip's size when a dimension is
			// not divisible by the total upscale; it equals 2x otherwise,
			// so passing it always gives the same result.
			next := skips[len(skips)-1-len(up.Resnets)]
			upH, upW = next.Dim(2), next.Dim(3)
		}
		h, skips = up.Forward(s, rec, h, cond.Temb, cond.Context, skips, upH, upW)
	}
	return s.Keep(u.out(s, rec, h)), nil
}

// mid runs the mid block on h (the last down output) and adds the mid
// residual.
func (u *UNet) mid(s *tensor.Scope, rec nn.Recorder, h *tensor.Tensor, cond *Conditioning, in Input) *tensor.Tensor {
	var m *tensor.Tensor
	if u.MidBlock != nil {
		m = u.MidBlock.Forward(s, rec, h, cond.Temb, cond.Context)
	} else {
		m = s.Scale(h, 1)
	}
	if in.MidResidual != nil {
		m = s.Add(m, in.MidResidual)
	}
	return m
}

// out is conv_norm_out, SiLU and conv_out.
func (u *UNet) out(s *tensor.Scope, rec nn.Recorder, h *tensor.Tensor) *tensor.Tensor {
	var act *tensor.Tensor
	if rec != nil { // unfused, so that conv_norm_out can be observed
		n := u.ConvNormOut.Forward(s, h)
		rec.Record("conv_norm_out", n)
		act = s.SiLU(n)
		rec.Record("conv_act", act)
	} else {
		act = u.ConvNormOut.ForwardSiLU(s, h)
	}
	out := u.ConvOut.Forward(s, act)
	nn.RecordOut(rec, "conv_out", out)
	return out
}

// checkResiduals validates additional residuals before any work: both or
// neither, one per skip connection, of the skips' widths and the batch.
func (u *UNet) checkResiduals(in Input) error {
	if (in.DownResiduals == nil) != (in.MidResidual == nil) {
		return fmt.Errorf("unet: down and mid additional residuals go together (a ControlNet gives both)")
	}
	if in.DownResiduals == nil || in.Sample == nil {
		return nil
	}
	chans := u.cfg.SkipChannels()
	if len(in.DownResiduals) != len(chans) {
		return fmt.Errorf("unet: %d down residuals for %d skip connections", len(in.DownResiduals), len(chans))
	}
	B := in.Sample.Dim(0)
	for k, r := range append(in.DownResiduals, in.MidResidual) {
		c := chans[min(k, len(chans)-1)]
		if r == nil || r.Rank() != 4 || r.Dim(0) != B || r.Dim(1) != c {
			return fmt.Errorf("unet: additional residual %d must be [%d, %d, h, w], got %v", k, B, c, shapeOf(r))
		}
	}
	return nil
}

// addResiduals replaces each skip by skip + residual (diffusers:
// down_block_res_samples + down_block_additional_residuals); the last skip
// is h, which the mid block still reads. A residual must have its skip's
// shape or be [B, C, 1, 1] (global pooling).
func (u *UNet) addResiduals(s *tensor.Scope, skips []*tensor.Tensor, h *tensor.Tensor, res []*tensor.Tensor) error {
	for k, r := range res {
		sk := skips[k].Shape()
		if !r.Shape().Equal(sk) && (r.Dim(2) != 1 || r.Dim(3) != 1) {
			return fmt.Errorf("unet: additional residual %d is %v, its skip connection %v", k, r.Shape(), sk)
		}
	}
	for k, r := range res {
		sk := skips[k]
		if sk == h {
			sk = s.Borrow(h)
		}
		skips[k] = s.Add(sk, r)
	}
	return nil
}
