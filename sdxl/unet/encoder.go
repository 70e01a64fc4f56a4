package unet

import (
	"fmt"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/tensor"
)

// Encoder is the first half of a UNet2DConditionModel: conv_in, the time
// embedding, the text_time added embedding, the down blocks and the mid
// block. diffusers' ControlNetModel builds exactly these modules, with the
// same constructors, from its own config (config.ControlNetConfig), so
// package controlnet builds them here too. Field tags are the diffusers
// weight names.
type Encoder struct {
	ConvIn        *nn.Conv2d            `st:"conv_in"`
	TimeEmbedding *nn.TimestepEmbedding `st:"time_embedding"`
	AddEmbedding  *nn.TimestepEmbedding `st:"add_embedding"` // text_time only
	DownBlocks    []*DownBlock          `st:"down_blocks"`
	MidBlock      *MidBlock             `st:"mid_block"` // nil when mid_block_type is null

	arch  *arch
	model string // names the model in errors
}

// NewEncoder builds, with meta tensors, the modules an encoder-only config
// describes (config.ControlNetConfig's Encoder: no up blocks). Configs
// outside the SDXL family are refused as New refuses them. model names the
// model in errors ("controlnet").
func NewEncoder(model string, cfg *config.UNetConfig) (*Encoder, error) {
	a, err := archFromConfig(cfg, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", model, err)
	}
	e := buildEncoder(a)
	e.model = model
	return e, nil
}

func (a *arch) resnet(path string, in, out int, scale float32) *nn.ResnetBlock2D {
	return nn.NewResnetBlock2D(path, nn.ResnetConfig{
		In: in, Out: out, TembChannels: a.timeEmbedDim, Groups: a.groups, Eps: a.eps, OutputScale: scale,
	})
}

func (a *arch) transformer(path string, ch, heads, layers, cross int, onlyCross bool) *nn.Transformer2D {
	return nn.NewTransformer2D(path, nn.Transformer2DConfig{
		Channels: ch, Heads: heads, HeadDim: ch / heads, Layers: layers, CrossDim: cross, Groups: a.groups,
		LinearProjection: a.linearProj, OnlyCross: onlyCross, NormEps: 1e-5,
	})
}

func buildEncoder(a *arch) *Encoder {
	e := &Encoder{arch: a, model: "unet"}
	n := len(a.downTypes)
	e.ConvIn = nn.NewConv2d(a.inChannels, a.blockOut[0], a.convInKernel, 1, (a.convInKernel-1)/2)
	e.TimeEmbedding = nn.NewTimestepEmbedding("time_embedding", a.timeInputDim, a.timeEmbedDim, a.timeEmbedDim)
	if a.addEmbedType == "text_time" {
		e.AddEmbedding = nn.NewTimestepEmbedding("add_embedding", a.projClassInDim, a.timeEmbedDim, a.timeEmbedDim)
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
			blk.Resnets = append(blk.Resnets, a.resnet(fmt.Sprintf("%s.resnets.%d", p, j), rin, out, a.resnetOutScale))
			if typ == "CrossAttnDownBlock2D" {
				blk.Attentions = append(blk.Attentions, a.transformer(fmt.Sprintf("%s.attentions.%d", p, j),
					out, a.heads[i], a.tLayersDown[i][j], a.crossDim[i], a.onlyCross[i]))
			}
		}
		if i < n-1 {
			blk.Downsamplers = []*nn.Downsample2D{nn.NewDownsample2D(p+".downsamplers.0", out, out, a.downsamplePadding)}
		}
		e.DownBlocks = append(e.DownBlocks, blk)
	}

	last := a.blockOut[n-1]
	switch a.midType {
	case "UNetMidBlock2DCrossAttn":
		m := &MidBlock{Path: "mid_block"}
		m.Resnets = append(m.Resnets, a.resnet("mid_block.resnets.0", last, last, a.midScale))
		for i, layers := range a.tLayersMid {
			m.Attentions = append(m.Attentions, a.transformer(fmt.Sprintf("mid_block.attentions.%d", i),
				last, a.heads[n-1], layers, a.crossDim[n-1], a.midOnlyCross))
			m.Resnets = append(m.Resnets, a.resnet(fmt.Sprintf("mid_block.resnets.%d", i+1), last, last, a.midScale))
		}
		e.MidBlock = m
	case "UNetMidBlock2D": // get_mid_block builds it with num_layers=0: one resnet
		e.MidBlock = &MidBlock{Path: "mid_block", Resnets: []*nn.ResnetBlock2D{a.resnet("mid_block.resnets.0", last, last, a.midScale)}}
	}
	return e
}

// InChannels is the channel count Forward expects.
func (e *Encoder) InChannels() int { return e.arch.inChannels }

// CrossAttentionDim is the context width of the first level.
func (e *Encoder) CrossAttentionDim() int { return e.arch.crossDim[0] }

// AdditionTimeEmbedDim is addition_time_embed_dim (0 without text_time).
func (e *Encoder) AdditionTimeEmbedDim() int { return e.arch.addTimeDim }

// ProjectionClassEmbeddingsInputDim is the width of add_embedding's input
// (pooled text width + number of time ids * AdditionTimeEmbedDim).
func (e *Encoder) ProjectionClassEmbeddingsInputDim() int { return e.arch.projClassInDim }

// Conditioning holds what every block of one forward pass shares. Every
// block reads its tensors and none consumes them: they are borrowed from
// the scope Condition was called with and freed with it (under a plain
// Backend the caller frees Temb, and Context unless it is the input's
// EncoderHiddenStates).
type Conditioning struct {
	// Temb is SiLU(time embedding + added embedding) [B, time_embed_dim]:
	// every resnet applies SiLU to the embedding before its projection, so
	// it is computed once.
	Temb *tensor.Tensor
	// Context is encoder_hidden_states in the sample's dtype.
	Context *tensor.Tensor
}

// Condition validates in (everything but the sample's spatial size) and
// computes the time and added embeddings: time_proj, time_embedding,
// add_time_proj and add_embedding as diffusers' forward does, in the
// sample's dtype. It returns the batch size too. in's tensors are only
// read, even when they are temporaries of the scope b.
func (e *Encoder) Condition(b tensor.Backend, rec nn.Recorder, in Input) (*Conditioning, int, error) {
	B, err := e.check(in)
	if err != nil {
		return nil, 0, err
	}
	s := tensor.NewScope(b)
	defer s.Release()
	a := e.arch
	dt := in.Sample.DType()
	ts := in.Timesteps
	if len(ts) == 1 && B > 1 {
		ts = make([]float32, B)
		for i := range ts {
			ts[i] = in.Timesteps[0]
		}
	}
	// The sinusoidal features are computed on the host in float32, then the MLP.
	tProj := s.FromFloat32(dt, tensor.Shape{B, a.timeInputDim}, nn.Timesteps(ts, a.timeInputDim, a.flipSinToCos, a.freqShift))
	nn.RecordOut(rec, "time_proj", tProj)
	emb := e.TimeEmbedding.Forward(s, rec, tProj)
	if e.AddEmbedding != nil {
		emb = s.Add(emb, e.addEmbedding(s, rec, in, B, dt))
	}
	temb, context := s.SiLU(emb), s.Borrow(in.EncoderHiddenStates)
	if context != nil && context.DType() != dt {
		context = s.Cast(context, dt)
	}
	return &Conditioning{Temb: s.Borrow(s.Keep(temb)), Context: s.Borrow(s.Keep(context))}, B, nil
}

// addEmbedding is the text_time added embedding: add_embedding(cat(
// text_embeds, add_time_proj(time_ids))).
func (e *Encoder) addEmbedding(s *tensor.Scope, rec nn.Recorder, in Input, B int, dt tensor.DType) *tensor.Tensor {
	a := e.arch
	k := len(in.TimeIDs) / B
	ids := s.FromFloat32(dt, tensor.Shape{B * k, a.addTimeDim}, nn.Timesteps(in.TimeIDs, a.addTimeDim, a.flipSinToCos, a.freqShift))
	nn.RecordOut(rec, "add_time_proj", ids)
	text := s.Borrow(in.TextEmbeds)
	if text.DType() != dt { // diffusers: add_embeds.to(emb.dtype)
		text = s.Cast(text, dt)
	}
	return e.AddEmbedding.Forward(s, rec, s.Concat(1, text, ids.Reshape(B, k*a.addTimeDim)))
}

// Down runs the down blocks on h (conv_in's output, possibly with a
// ControlNet's conditioning added) and returns the last block's output and
// every skip tensor, h first (diffusers' down_block_res_samples); the last
// skip is the returned output itself. With a scope the skips are its
// temporaries (h included); the caller reads them through Borrow until
// their last use.
func (e *Encoder) Down(b tensor.Backend, rec nn.Recorder, h *tensor.Tensor, c *Conditioning) (*tensor.Tensor, []*tensor.Tensor) {
	skips := []*tensor.Tensor{h}
	for _, d := range e.DownBlocks {
		h, skips = d.Forward(b, rec, h, c.Temb, c.Context, skips)
	}
	return h, skips
}

// check validates an Input against the model and returns the batch size.
func (e *Encoder) check(in Input) (int, error) {
	a := e.arch
	if in.Sample == nil || in.Sample.Rank() != 4 || in.Sample.Dim(1) != a.inChannels {
		return 0, fmt.Errorf("%s: sample must be [B, %d, h, w], got %v", e.model, a.inChannels, shapeOf(in.Sample))
	}
	B := in.Sample.Dim(0)
	if len(in.Timesteps) != 1 && len(in.Timesteps) != B {
		return 0, fmt.Errorf("%s: %d timesteps for a batch of %d (want 1 or %d)", e.model, len(in.Timesteps), B, B)
	}
	if a.hasCrossAttention() {
		ctx := in.EncoderHiddenStates
		if ctx == nil || ctx.Rank() != 3 || ctx.Dim(0) != B || ctx.Dim(2) != a.crossDim[0] {
			return 0, fmt.Errorf("%s: encoder_hidden_states must be [%d, L, %d], got %v", e.model, B, a.crossDim[0], shapeOf(ctx))
		}
	}
	if a.addEmbedType == "text_time" {
		te := in.TextEmbeds
		if te == nil || te.Rank() != 2 || te.Dim(0) != B {
			return 0, fmt.Errorf("%s: text_embeds must be [%d, P], got %v", e.model, B, shapeOf(te))
		}
		if len(in.TimeIDs) == 0 || len(in.TimeIDs)%B != 0 {
			return 0, fmt.Errorf("%s: %d time_ids for a batch of %d", e.model, len(in.TimeIDs), B)
		}
		k := len(in.TimeIDs) / B
		if got := te.Dim(1) + k*a.addTimeDim; got != a.projClassInDim {
			return 0, fmt.Errorf("%s: text_embeds width %d + %d time ids x %d = %d, but add_embedding expects %d "+
				"(base models take 6 ids, refiners 5)", e.model, te.Dim(1), k, a.addTimeDim, got, a.projClassInDim)
		}
	}
	return B, nil
}
