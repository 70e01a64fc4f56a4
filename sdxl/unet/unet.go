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
// names.
type UNet struct {
	ConvIn        *nn.Conv2d            `st:"conv_in"`
	TimeEmbedding *nn.TimestepEmbedding `st:"time_embedding"`
	AddEmbedding  *nn.TimestepEmbedding `st:"add_embedding"` // text_time only
	DownBlocks    []*DownBlock          `st:"down_blocks"`
	MidBlock      *MidBlock             `st:"mid_block"` // nil when mid_block_type is null
	UpBlocks      []*UpBlock            `st:"up_blocks"`
	ConvNormOut   *nn.GroupNorm         `st:"conv_norm_out"`
	ConvOut       *nn.Conv2d            `st:"conv_out"`

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
	u := &UNet{arch: a}
	n := len(a.downTypes)
	u.ConvIn = nn.NewConv2d(a.inChannels, a.blockOut[0], a.convInKernel, 1, (a.convInKernel-1)/2)
	u.TimeEmbedding = nn.NewTimestepEmbedding("time_embedding", a.timeInputDim, a.timeEmbedDim, a.timeEmbedDim)
	if a.addEmbedType == "text_time" {
		u.AddEmbedding = nn.NewTimestepEmbedding("add_embedding", a.projClassInDim, a.timeEmbedDim, a.timeEmbedDim)
	}
	resnet := func(path string, in, out int, scale float32) *nn.ResnetBlock2D {
		return nn.NewResnetBlock2D(path, nn.ResnetConfig{
			In: in, Out: out, TembChannels: a.timeEmbedDim, Groups: a.groups, Eps: a.eps, OutputScale: scale,
		})
	}
	transformer := func(path string, ch, heads, layers, cross int, onlyCross bool) *nn.Transformer2D {
		return nn.NewTransformer2D(path, nn.Transformer2DConfig{
			Channels: ch, Heads: heads, HeadDim: ch / heads, Layers: layers, CrossDim: cross, Groups: a.groups,
			LinearProjection: a.linearProj, OnlyCross: onlyCross, NormEps: 1e-5,
		})
	}

	out := a.blockOut[0]
	for i, typ := range a.downTypes {
		in := out
		out = a.blockOut[i]
		p := fmt.Sprintf("down_blocks.%d", i)
		blk := &DownBlock{Path: p}
		for j := range a.layersPerBlock[i] {
			rin := out
			if j == 0 {
				rin = in
			}
			blk.Resnets = append(blk.Resnets, resnet(fmt.Sprintf("%s.resnets.%d", p, j), rin, out, a.resnetOutScale))
			if typ == "CrossAttnDownBlock2D" {
				blk.Attentions = append(blk.Attentions, transformer(fmt.Sprintf("%s.attentions.%d", p, j),
					out, a.heads[i], a.tLayersDown[i][j], a.crossDim[i], a.onlyCross[i]))
			}
		}
		if i < n-1 {
			blk.Downsamplers = []*nn.Downsample2D{nn.NewDownsample2D(p+".downsamplers.0", out, out, a.downsamplePadding)}
		}
		u.DownBlocks = append(u.DownBlocks, blk)
	}

	last := a.blockOut[n-1]
	switch a.midType {
	case "UNetMidBlock2DCrossAttn":
		m := &MidBlock{Path: "mid_block"}
		m.Resnets = append(m.Resnets, resnet("mid_block.resnets.0", last, last, a.midScale))
		for i, layers := range a.tLayersMid {
			m.Attentions = append(m.Attentions, transformer(fmt.Sprintf("mid_block.attentions.%d", i),
				last, a.heads[n-1], layers, a.crossDim[n-1], a.midOnlyCross))
			m.Resnets = append(m.Resnets, resnet(fmt.Sprintf("mid_block.resnets.%d", i+1), last, last, a.midScale))
		}
		u.MidBlock = m
	case "UNetMidBlock2D": // get_mid_block builds it with num_layers=0: one resnet
		u.MidBlock = &MidBlock{Path: "mid_block", Resnets: []*nn.ResnetBlock2D{resnet("mid_block.resnets.0", last, last, a.midScale)}}
	}

	rev := func(i int) int { return n - 1 - i }
	out = a.blockOut[n-1]
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
			blk.Resnets = append(blk.Resnets, resnet(fmt.Sprintf("%s.resnets.%d", p, j), rin+skip, out, a.resnetOutScale))
			if typ == "CrossAttnUpBlock2D" {
				blk.Attentions = append(blk.Attentions, transformer(fmt.Sprintf("%s.attentions.%d", p, j),
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
}

// BlockTypes returns down_block_types and up_block_types.
func (u *UNet) BlockTypes() (down, up []string) {
	return append([]string(nil), u.arch.downTypes...), append([]string(nil), u.arch.upTypes...)
}

// LayersPerBlock returns the resnet count of each down block (up blocks
// have one more).
func (u *UNet) LayersPerBlock() []int { return append([]int(nil), u.arch.layersPerBlock...) }

// InChannels is the channel count Forward expects.
func (u *UNet) InChannels() int { return u.arch.inChannels }

// CrossAttentionDim is the context width of the first level.
func (u *UNet) CrossAttentionDim() int { return u.arch.crossDim[0] }

// AdditionTimeEmbedDim is addition_time_embed_dim (0 without text_time).
func (u *UNet) AdditionTimeEmbedDim() int { return u.arch.addTimeDim }

// ProjectionClassEmbeddingsInputDim is the width of add_embedding's input
// (pooled text width + number of time ids * AdditionTimeEmbedDim).
func (u *UNet) ProjectionClassEmbeddingsInputDim() int { return u.arch.projClassInDim }

// check validates an Input against the model and returns the batch size.
func (u *UNet) check(in Input) (int, error) {
	a := u.arch
	if in.Sample == nil || in.Sample.Rank() != 4 || in.Sample.Dim(1) != a.inChannels {
		return 0, fmt.Errorf("unet: sample must be [B, %d, h, w], got %v", a.inChannels, shapeOf(in.Sample))
	}
	B := in.Sample.Dim(0)
	if len(in.Timesteps) != 1 && len(in.Timesteps) != B {
		return 0, fmt.Errorf("unet: %d timesteps for a batch of %d (want 1 or %d)", len(in.Timesteps), B, B)
	}
	if a.hasCrossAttention() {
		e := in.EncoderHiddenStates
		if e == nil || e.Rank() != 3 || e.Dim(0) != B || e.Dim(2) != a.crossDim[0] {
			return 0, fmt.Errorf("unet: encoder_hidden_states must be [%d, L, %d], got %v", B, a.crossDim[0], shapeOf(e))
		}
	}
	if a.addEmbedType == "text_time" {
		te := in.TextEmbeds
		if te == nil || te.Rank() != 2 || te.Dim(0) != B {
			return 0, fmt.Errorf("unet: text_embeds must be [%d, P], got %v", B, shapeOf(te))
		}
		if len(in.TimeIDs) == 0 || len(in.TimeIDs)%B != 0 {
			return 0, fmt.Errorf("unet: %d time_ids for a batch of %d", len(in.TimeIDs), B)
		}
		k := len(in.TimeIDs) / B
		if got := te.Dim(1) + k*a.addTimeDim; got != a.projClassInDim {
			return 0, fmt.Errorf("unet: text_embeds width %d + %d time ids x %d = %d, but add_embedding expects %d "+
				"(base models take 6 ids, refiners 5)", te.Dim(1), k, a.addTimeDim, got, a.projClassInDim)
		}
	}
	return B, nil
}

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
	B, err := u.check(in)
	if err != nil {
		return nil, err
	}
	a := u.arch
	dt := in.Sample.DType()

	// time embedding: sinusoidal on the host in float32, then the MLP.
	ts := in.Timesteps
	if len(ts) == 1 && B > 1 {
		ts = make([]float32, B)
		for i := range ts {
			ts[i] = in.Timesteps[0]
		}
	}
	tProj := b.FromFloat32(dt, tensor.Shape{B, a.timeInputDim}, nn.Timesteps(ts, a.timeInputDim, a.flipSinToCos, a.freqShift))
	nn.RecordOut(rec, "time_proj", tProj)
	emb := u.TimeEmbedding.Forward(b, rec, tProj)
	tProj.Free()

	if u.AddEmbedding != nil {
		k := len(in.TimeIDs) / B
		ids := b.FromFloat32(dt, tensor.Shape{B * k, a.addTimeDim}, nn.Timesteps(in.TimeIDs, a.addTimeDim, a.flipSinToCos, a.freqShift))
		nn.RecordOut(rec, "add_time_proj", ids)
		text := in.TextEmbeds
		if text.DType() != dt { // diffusers: add_embeds.to(emb.dtype)
			text = b.Cast(text, dt)
		}
		addIn := b.Concat(1, text, ids.Reshape(B, k*a.addTimeDim))
		ids.Free()
		if text != in.TextEmbeds {
			text.Free()
		}
		aug := u.AddEmbedding.Forward(b, rec, addIn)
		addIn.Free()
		s := b.Add(emb, aug)
		emb.Free()
		aug.Free()
		emb = s
	}
	// Every resnet applies SiLU to the embedding before its projection:
	// compute it once.
	tembAct := b.SiLU(emb)
	emb.Free()

	sample := in.Sample
	if a.centerInput {
		two := b.Scale(sample, 2)
		one := b.FromFloat32(dt, tensor.Shape{1}, []float32{-1})
		sample = b.Add(two, one)
		two.Free()
		one.Free()
	}
	ctx := in.EncoderHiddenStates
	if ctx != nil && ctx.DType() != dt {
		ctx = b.Cast(ctx, dt)
		defer ctx.Free()
	}

	h := u.ConvIn.Forward(b, sample)
	if sample != in.Sample {
		sample.Free()
	}
	nn.RecordOut(rec, "conv_in", h)
	skips := []*tensor.Tensor{h}
	for _, d := range u.DownBlocks {
		h, skips = d.Forward(b, rec, h, tembAct, ctx, skips)
	}
	if u.MidBlock != nil {
		h = u.MidBlock.Forward(b, rec, h, tembAct, ctx)
	} else {
		// The up path frees its input; the last skip must survive.
		h = b.Scale(h, 1)
	}
	for i, up := range u.UpBlocks {
		upH, upW := 0, 0
		if i < len(u.UpBlocks)-1 {
			// diffusers passes the next skip's size when a dimension is
			// not divisible by the total upscale; it equals 2x otherwise,
			// so passing it always gives the same result.
			next := skips[len(skips)-1-len(up.Resnets)]
			upH, upW = next.Dim(2), next.Dim(3)
		}
		h, skips = up.Forward(b, rec, h, tembAct, ctx, skips, upH, upW)
	}
	tembAct.Free()

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
	return out, nil
}
