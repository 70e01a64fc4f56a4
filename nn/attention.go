package nn

import (
	"fmt"

	"github.com/sdxl-go/sdxl/tensor"
)

// Attention is diffusers' Attention with the default (SDPA) processor:
// to_q, to_k, to_v, scaled dot-product attention over Heads heads with
// scale 1/sqrt(head_dim), then to_out.0. The UNet's transformer blocks use
// it without q/k/v biases, as self-attention (attn1) or cross-attention
// (attn2, keys and values from the text context); the VAE mid block uses it
// with biases, a group_norm in front, a residual connection and one head
// (see ForwardSpatial).
type Attention struct {
	GroupNorm *GroupNorm `st:"group_norm"` // nil except in the VAE
	ToQ       *Linear    `st:"to_q"`
	ToK       *Linear    `st:"to_k"`
	ToV       *Linear    `st:"to_v"`
	ToOut     []*Linear  `st:"to_out"` // one layer: to_out.0 (to_out.1 is dropout)

	Heads int
	// Residual adds the input to the output (residual_connection).
	Residual bool
	// RescaleOutput divides the output (rescale_output_factor); 1 = none.
	RescaleOutput float32
	Path          string
}

// NewAttention builds an attention layer from queryDim features to
// heads*headDim, with keys/values read from contextDim features
// (contextDim = queryDim for self-attention). bias adds biases to
// to_q/to_k/to_v; to_out.0 always has one.
func NewAttention(path string, queryDim, contextDim, heads, headDim int, bias bool) *Attention {
	inner := heads * headDim
	return &Attention{
		ToQ:           NewLinear(queryDim, inner, bias),
		ToK:           NewLinear(contextDim, inner, bias),
		ToV:           NewLinear(contextDim, inner, bias),
		ToOut:         []*Linear{NewLinear(inner, queryDim, true)},
		Heads:         heads,
		RescaleOutput: 1,
		Path:          path,
	}
}

// Forward attends x [B, L, C] to context [B, Lk, Cc] (nil: to itself)
// and returns [B, L, C]. Residual and RescaleOutput apply.
func (a *Attention) Forward(b tensor.Backend, rec Recorder, x, context *tensor.Tensor) *tensor.Tensor {
	s := tensor.NewScope(b)
	defer s.Release()
	RecordIn(rec, a.Path, x)
	var out *tensor.Tensor
	if a.Residual {
		out = a.finish(s, a.attend(s, rec, s.Borrow(x), context), x)
	} else {
		out = a.finish(s, a.attend(s, rec, x, context), nil)
	}
	RecordOut(rec, a.Path, out)
	return s.Keep(out)
}

// attend is the projections and attention, without residual or rescale.
func (a *Attention) attend(s *tensor.Scope, rec Recorder, x, context *tensor.Tensor) *tensor.Tensor {
	var q, k, v *tensor.Tensor
	if context == nil { // self-attention: x is read three times
		q = a.ToQ.Forward(s, s.Borrow(x))
		k = a.ToK.Forward(s, s.Borrow(x))
		v = a.ToV.Forward(s, x)
	} else {
		q = a.ToQ.Forward(s, x)
		k = a.ToK.Forward(s, s.Borrow(context))
		v = a.ToV.Forward(s, context)
	}
	if rec != nil {
		RecordChild(rec, a.Path, "to_q", q)
		RecordChild(rec, a.Path, "to_k", k)
		RecordChild(rec, a.Path, "to_v", v)
	}
	if q.Dim(-1)%a.Heads != 0 {
		panic(fmt.Sprintf("nn: attention %s: %d features do not split into %d heads", a.Path, q.Dim(-1), a.Heads))
	}
	out := a.ToOut[0].Forward(s, MultiHeadAttention(s, q, k, v, a.Heads, nil))
	RecordChild(rec, a.Path, "to_out.0", out)
	return out
}

// finish adds the residual (nil unless Residual) and rescales.
func (a *Attention) finish(s *tensor.Scope, out, residual *tensor.Tensor) *tensor.Tensor {
	if residual != nil {
		out = s.Add(out, residual)
	}
	if a.RescaleOutput != 1 && a.RescaleOutput != 0 {
		out = s.Scale(out, 1/a.RescaleOutput)
	}
	return out
}

// ForwardSpatial is the VAE form: x [B, C, H, W] is group-normed, read as
// a sequence of H*W tokens of C features, attended to itself, and mapped
// back to [B, C, H, W] (plus x when Residual).
func (a *Attention) ForwardSpatial(b tensor.Backend, rec Recorder, x *tensor.Tensor) *tensor.Tensor {
	s := tensor.NewScope(b)
	defer s.Release()
	RecordIn(rec, a.Path, x)
	B, C, H, W := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	h := x
	if a.Residual { // x is read again by the residual add
		h = s.Borrow(x)
	}
	if a.GroupNorm != nil {
		h = a.GroupNorm.Forward(s, h)
		RecordChild(rec, a.Path, "group_norm", h)
	}
	seq := s.Permute(h.Reshape(B, C, H*W), 0, 2, 1)      // [B, HW, C]
	sp := s.Permute(a.attend(s, rec, seq, nil), 0, 2, 1) // [B, C, HW]
	var res *tensor.Tensor
	if a.Residual {
		res = x
	}
	out := a.finish(s, sp.Reshape(B, C, H, W), res)
	RecordOut(rec, a.Path, out)
	return s.Keep(out)
}

// GEGLU is diffusers' GEGLU activation module: proj to twice the inner
// width, then hidden * gelu(gate) on the two halves.
type GEGLU struct {
	Proj *Linear `st:"proj"`
}

// FeedForward is diffusers' FeedForward with the GEGLU activation:
// net.0 (GEGLU), net.1 (dropout, no weights), net.2 (Linear).
type FeedForward struct {
	Net0 *GEGLU  `st:"net.0"`
	Net2 *Linear `st:"net.2"`
	Path string
}

// NewFeedForward builds dim -> inner (GEGLU) -> out.
func NewFeedForward(path string, dim, inner, out int) *FeedForward {
	return &FeedForward{
		Net0: &GEGLU{Proj: NewLinear(dim, 2*inner, true)},
		Net2: NewLinear(inner, out, true),
		Path: path,
	}
}

// Forward maps x [..., dim] to [..., out].
func (f *FeedForward) Forward(b tensor.Backend, rec Recorder, x *tensor.Tensor) *tensor.Tensor {
	s := tensor.NewScope(b)
	defer s.Release()
	RecordIn(rec, f.Path, x)
	p := f.Net0.Proj.Forward(s, x)
	RecordChild(rec, f.Path, "net.0.proj", p)
	g := s.GEGLU(p)
	RecordChild(rec, f.Path, "net.0", g)
	out := f.Net2.Forward(s, g)
	RecordChild(rec, f.Path, "net.2", out)
	RecordOut(rec, f.Path, out)
	return s.Keep(out)
}

// BasicTransformerBlock is diffusers' BasicTransformerBlock with
// norm_type "layer_norm": x += attn1(norm1(x)); x += attn2(norm2(x),
// context); x += ff(norm3(x)).
type BasicTransformerBlock struct {
	Norm1 *LayerNorm   `st:"norm1"`
	Attn1 *Attention   `st:"attn1"`
	Norm2 *LayerNorm   `st:"norm2"`
	Attn2 *Attention   `st:"attn2"`
	Norm3 *LayerNorm   `st:"norm3"`
	FF    *FeedForward `st:"ff"`
	// OnlyCross makes attn1 a cross-attention too (only_cross_attention).
	OnlyCross bool
	Path      string
}

// NewBasicTransformerBlock builds a block of width dim with heads heads of
// headDim features, cross-attending to crossDim-wide context; eps is the
// LayerNorm epsilon (norm_eps, 1e-5).
func NewBasicTransformerBlock(path string, dim, heads, headDim, crossDim int, onlyCross bool, eps float32) *BasicTransformerBlock {
	attn1Ctx := dim
	if onlyCross {
		attn1Ctx = crossDim
	}
	return &BasicTransformerBlock{
		Norm1:     NewLayerNorm(dim, eps),
		Attn1:     NewAttention(Sub(path, "attn1"), dim, attn1Ctx, heads, headDim, false),
		Norm2:     NewLayerNorm(dim, eps),
		Attn2:     NewAttention(Sub(path, "attn2"), dim, crossDim, heads, headDim, false),
		Norm3:     NewLayerNorm(dim, eps),
		FF:        NewFeedForward(Sub(path, "ff"), dim, 4*dim, dim),
		OnlyCross: onlyCross,
		Path:      path,
	}
}

// Forward runs the block on x [B, L, dim] with context [B, Lk, crossDim].
func (t *BasicTransformerBlock) Forward(b tensor.Backend, rec Recorder, x, context *tensor.Tensor) *tensor.Tensor {
	s := tensor.NewScope(b)
	defer s.Release()
	RecordIn(rec, t.Path, x)
	var ctx1 *tensor.Tensor
	if t.OnlyCross {
		ctx1 = s.Borrow(context)
	}
	n := t.Norm1.Forward(s, s.Borrow(x))
	RecordChild(rec, t.Path, "norm1", n)
	h := s.Add(t.Attn1.Forward(s, rec, n, ctx1), x)

	n = t.Norm2.Forward(s, s.Borrow(h))
	RecordChild(rec, t.Path, "norm2", n)
	h = s.Add(t.Attn2.Forward(s, rec, n, context), h)

	n = t.Norm3.Forward(s, s.Borrow(h))
	RecordChild(rec, t.Path, "norm3", n)
	h = s.Add(t.FF.Forward(s, rec, n), h)
	RecordOut(rec, t.Path, h)
	return s.Keep(h)
}

// Transformer2D is diffusers' Transformer2DModel for continuous inputs:
// GroupNorm (eps 1e-6), proj_in (Linear after flattening when
// use_linear_projection, otherwise a 1x1 conv before it), the transformer
// blocks, proj_out, and the residual.
type Transformer2D struct {
	Norm       *GroupNorm               `st:"norm"`
	ProjIn     *Linear                  `st:"proj_in"` // use_linear_projection
	ProjInConv *Conv2d                  `st:"proj_in"` // otherwise
	Blocks     []*BasicTransformerBlock `st:"transformer_blocks"`
	ProjOut    *Linear                  `st:"proj_out"`
	ProjOutCv  *Conv2d                  `st:"proj_out"`
	Path       string
}

// Transformer2DConfig describes one Transformer2DModel of a UNet.
type Transformer2DConfig struct {
	Channels, Heads, HeadDim, Layers, CrossDim, Groups int
	LinearProjection, OnlyCross                        bool
	// NormEps is the LayerNorm epsilon inside the blocks (1e-5).
	NormEps float32
}

// NewTransformer2D builds a Transformer2DModel.
func NewTransformer2D(path string, c Transformer2DConfig) *Transformer2D {
	inner := c.Heads * c.HeadDim
	t := &Transformer2D{Norm: NewGroupNorm(c.Groups, c.Channels, 1e-6), Path: path}
	if c.LinearProjection {
		t.ProjIn = NewLinear(c.Channels, inner, true)
		t.ProjOut = NewLinear(inner, c.Channels, true)
	} else {
		t.ProjInConv = NewConv2d(c.Channels, inner, 1, 1, 0)
		t.ProjOutCv = NewConv2d(inner, c.Channels, 1, 1, 0)
	}
	for i := range c.Layers {
		t.Blocks = append(t.Blocks, NewBasicTransformerBlock(Sub(path, fmt.Sprintf("transformer_blocks.%d", i)),
			inner, c.Heads, c.HeadDim, c.CrossDim, c.OnlyCross, c.NormEps))
	}
	return t
}

// Forward maps x [B, C, H, W] with context [B, Lk, crossDim] to
// [B, C, H, W].
func (t *Transformer2D) Forward(b tensor.Backend, rec Recorder, x, context *tensor.Tensor) *tensor.Tensor {
	s := tensor.NewScope(b)
	defer s.Release()
	RecordIn(rec, t.Path, x)
	B, H, W := x.Dim(0), x.Dim(2), x.Dim(3)
	n := t.Norm.Forward(s, s.Borrow(x))
	RecordChild(rec, t.Path, "norm", n)
	var h *tensor.Tensor
	if t.ProjIn != nil {
		h = t.ProjIn.Forward(s, toSeq(s, n))
	} else {
		h = toSeq(s, t.ProjInConv.Forward(s, n))
	}
	if rec != nil {
		rec.Record(t.Path+".proj_in", h)
	}
	for _, blk := range t.Blocks {
		h = blk.Forward(s, rec, h, s.Borrow(context))
	}
	var sp *tensor.Tensor
	if t.ProjOut != nil {
		o := t.ProjOut.Forward(s, h)
		if rec != nil { // diffusers' proj_out output is still a sequence here
			rec.Record(t.Path+".proj_out", o)
		}
		sp = fromSeq(s, o, B, H, W)
	} else {
		sp = t.ProjOutCv.Forward(s, fromSeq(s, h, B, H, W))
		if rec != nil {
			rec.Record(t.Path+".proj_out", sp)
		}
	}
	out := s.Add(sp, x)
	RecordOut(rec, t.Path, out)
	return s.Keep(out)
}

// toSeq turns [B, C, H, W] into [B, H*W, C].
func toSeq(b tensor.Backend, x *tensor.Tensor) *tensor.Tensor {
	B, C, H, W := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	return b.Permute(x.Reshape(B, C, H*W), 0, 2, 1)
}

// fromSeq turns [B, H*W, C] into [B, C, H, W].
func fromSeq(b tensor.Backend, x *tensor.Tensor, B, H, W int) *tensor.Tensor {
	C := x.Dim(2)
	return b.Permute(x, 0, 2, 1).Reshape(B, C, H, W)
}
