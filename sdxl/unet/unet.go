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
// inputs are not modified or freed.
func (u *UNet) Forward(b tensor.Backend, in Input, rec nn.Recorder) (*tensor.Tensor, error) {
	if err := u.checkResiduals(in); err != nil {
		return nil, err
	}
	cond, _, err := u.Condition(b, rec, in)
	if err != nil {
		return nil, err
	}
	defer cond.Free()
	sample := in.Sample
	if u.arch.centerInput {
		two := b.Scale(sample, 2)
		one := b.FromFloat32(sample.DType(), tensor.Shape{1}, []float32{-1})
		sample = b.Add(two, one)
		two.Free()
		one.Free()
	}
	h := u.ConvIn.Forward(b, sample)
	if sample != in.Sample {
		sample.Free()
	}
	nn.RecordOut(rec, "conv_in", h)
	h, skips := u.Down(b, rec, h, cond)
	if err := u.addResiduals(b, skips, h, in.DownResiduals); err != nil {
		for _, s := range skips {
			if s != h {
				s.Free()
			}
		}
		h.Free()
		return nil, err
	}
	h = u.mid(b, rec, h, cond, in)
	for i, up := range u.UpBlocks {
		upH, upW := 0, 0
		if i < len(u.UpBlocks)-1 {
			// diffusers passes the next skip's size when a dimension is
			// not divisible by the total upscale; it equals 2x otherwise,
			// so passing it always gives the same result.
			next := skips[len(skips)-1-len(up.Resnets)]
			upH, upW = next.Dim(2), next.Dim(3)
		}
		h, skips = up.Forward(b, rec, h, cond.Temb, cond.Context, skips, upH, upW)
	}
	return u.out(b, rec, h), nil
}

// mid runs the mid block on h (the last down output) and adds the mid
// residual. The result is a new tensor: the up path frees its input, and h
// is still the last skip unless residuals replaced the skips (then h is
// freed here).
func (u *UNet) mid(b tensor.Backend, rec nn.Recorder, h *tensor.Tensor, cond *Conditioning, in Input) *tensor.Tensor {
	var m *tensor.Tensor
	if u.MidBlock != nil {
		m = u.MidBlock.Forward(b, rec, h, cond.Temb, cond.Context)
	} else {
		m = b.Scale(h, 1)
	}
	if in.DownResiduals != nil {
		h.Free()
	}
	if in.MidResidual != nil {
		s := b.Add(m, in.MidResidual)
		m.Free()
		m = s
	}
	return m
}

// out is conv_norm_out, SiLU and conv_out; h is freed.
func (u *UNet) out(b tensor.Backend, rec nn.Recorder, h *tensor.Tensor) *tensor.Tensor {
	var act *tensor.Tensor
	if rec != nil { // unfused, so that conv_norm_out can be observed
		n := u.ConvNormOut.Forward(b, h)
		rec.Record("conv_norm_out", n)
		act = b.SiLU(n)
		n.Free()
		rec.Record("conv_act", act)
	} else {
		act = u.ConvNormOut.ForwardSiLU(b, h)
	}
	h.Free()
	out := u.ConvOut.Forward(b, act)
	act.Free()
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
// down_block_res_samples + down_block_additional_residuals), freeing the
// old skips except h, the mid block's input. A residual must have its
// skip's shape or be [B, C, 1, 1] (global pooling).
func (u *UNet) addResiduals(b tensor.Backend, skips []*tensor.Tensor, h *tensor.Tensor, res []*tensor.Tensor) error {
	for k, r := range res {
		s := skips[k].Shape()
		if !r.Shape().Equal(s) && (r.Dim(2) != 1 || r.Dim(3) != 1) {
			return fmt.Errorf("unet: additional residual %d is %v, its skip connection %v", k, r.Shape(), s)
		}
	}
	for k, r := range res {
		sum := b.Add(skips[k], r)
		if skips[k] != h {
			skips[k].Free()
		}
		skips[k] = sum
	}
	return nil
}
