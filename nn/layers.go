package nn

import (
	"github.com/sdxl-go/sdxl/tensor"
)

// Linear is torch.nn.Linear: y = x W^T + b, W [out, in].
type Linear struct {
	Weight *tensor.Tensor `st:"weight"`
	Bias   *tensor.Tensor `st:"bias"`
}

// NewLinear builds a meta Linear layer.
func NewLinear(in, out int, bias bool) *Linear {
	l := &Linear{Weight: tensor.Meta(tensor.F32, out, in)}
	if bias {
		l.Bias = tensor.Meta(tensor.F32, out)
	}
	return l
}

// Forward applies the layer to x [..., in].
func (l *Linear) Forward(b tensor.Backend, x *tensor.Tensor) *tensor.Tensor {
	return tensor.Linear(b, x, l.Weight, l.Bias)
}

// Conv2d is torch.nn.Conv2d with square kernels, groups=1.
type Conv2d struct {
	Weight          *tensor.Tensor `st:"weight"`
	Bias            *tensor.Tensor `st:"bias"`
	Stride, Padding int
}

// NewConv2d builds a meta Conv2d layer with a bias.
func NewConv2d(in, out, kernel, stride, padding int) *Conv2d {
	return &Conv2d{
		Weight:  tensor.Meta(tensor.F32, out, in, kernel, kernel),
		Bias:    tensor.Meta(tensor.F32, out),
		Stride:  stride,
		Padding: padding,
	}
}

// Forward applies the convolution to x [N, C, H, W].
func (c *Conv2d) Forward(b tensor.Backend, x *tensor.Tensor) *tensor.Tensor {
	return b.Conv2D(x, c.Weight, c.Bias, c.Stride, c.Padding)
}

// GroupNorm is torch.nn.GroupNorm with affine parameters.
type GroupNorm struct {
	Weight *tensor.Tensor `st:"weight"`
	Bias   *tensor.Tensor `st:"bias"`
	Groups int
	Eps    float32
}

// NewGroupNorm builds a meta GroupNorm layer.
func NewGroupNorm(groups, channels int, eps float32) *GroupNorm {
	return &GroupNorm{
		Weight: tensor.Meta(tensor.F32, channels),
		Bias:   tensor.Meta(tensor.F32, channels),
		Groups: groups,
		Eps:    eps,
	}
}

// Forward normalises x [N, C, ...].
func (g *GroupNorm) Forward(b tensor.Backend, x *tensor.Tensor) *tensor.Tensor {
	return b.GroupNorm(x, g.Groups, g.Weight, g.Bias, g.Eps)
}

// ForwardSiLU is GroupNorm followed by SiLU, fused where the backend can.
func (g *GroupNorm) ForwardSiLU(b tensor.Backend, x *tensor.Tensor) *tensor.Tensor {
	return tensor.GroupNormSiLU(b, x, g.Groups, g.Weight, g.Bias, g.Eps)
}

// LayerNorm is torch.nn.LayerNorm over the last dimension.
type LayerNorm struct {
	Weight *tensor.Tensor `st:"weight"`
	Bias   *tensor.Tensor `st:"bias"`
	Eps    float32
}

// NewLayerNorm builds a meta LayerNorm layer.
func NewLayerNorm(dim int, eps float32) *LayerNorm {
	return &LayerNorm{Weight: tensor.Meta(tensor.F32, dim), Bias: tensor.Meta(tensor.F32, dim), Eps: eps}
}

// Forward normalises the last dimension of x.
func (l *LayerNorm) Forward(b tensor.Backend, x *tensor.Tensor) *tensor.Tensor {
	return b.LayerNorm(x, l.Weight, l.Bias, l.Eps)
}

// Embedding is torch.nn.Embedding.
type Embedding struct {
	Weight *tensor.Tensor `st:"weight"`
}

// NewEmbedding builds a meta embedding table [n, dim].
func NewEmbedding(n, dim int) *Embedding {
	return &Embedding{Weight: tensor.Meta(tensor.F32, n, dim)}
}

// Forward gathers rows -> [len(ids), dim].
func (e *Embedding) Forward(b tensor.Backend, ids []int32) *tensor.Tensor {
	return b.Embedding(e.Weight, ids)
}

// MultiHeadAttention runs scaled dot-product attention on projected
// sequences: q [B, Lq, H*D], k and v [B, Lk, H*D] -> [B, Lq, H*D]. mask is
// additive and broadcasts to [B, H, Lq, Lk] (nil for none).
//
// An attention without mask bigger than maxAttentionFlops runs in chunks
// of query rows, one Attention op each, so that a cancelled forward pass
// (which stops between ops, see tensor.NewScopeContext) does not wait for
// one huge op: the UNet's self-attention at 2048x2048 is 1.4 TFLOP, 6 s on
// two CPU cores. Query rows are independent, so the chunks give the same
// numbers as one op.
func MultiHeadAttention(b tensor.Backend, q, k, v *tensor.Tensor, heads int, mask *tensor.Tensor) *tensor.Tensor {
	return multiHeadAttention(b, q, k, v, heads, mask, maxAttentionFlops)
}

// maxAttentionFlops is the most work (2·B·H·Lq·Lk·2D) one unmasked
// Attention op does: about 0.6 s on two CPU cores. Every attention of the
// SDXL UNet up to 1024x1024 is one op.
const maxAttentionFlops = 1 << 37

func multiHeadAttention(b tensor.Backend, q, k, v *tensor.Tensor, heads int, mask *tensor.Tensor, maxFlops float64) *tensor.Tensor {
	s := tensor.NewScope(b)
	defer s.Release()
	B, Lq, C := q.Dim(0), q.Dim(1), q.Dim(2)
	Lk := k.Dim(1)
	d := C / heads
	split := func(x *tensor.Tensor, L int) *tensor.Tensor {
		return s.Permute(x.Reshape(B, L, heads, d), 0, 2, 1, 3)
	}
	merge := func(o *tensor.Tensor, L int) *tensor.Tensor {
		return s.Permute(o, 0, 2, 1, 3).Reshape(B, L, C)
	}
	scale := float32(1 / sqrt(float64(d)))
	rowFlops := 4 * float64(B*heads*Lk*d)
	rows := Lq
	if mask == nil && rowFlops*float64(Lq) > maxFlops {
		rows = max(8, int(maxFlops/rowFlops)/8*8)
	}
	if rows >= Lq {
		return s.Keep(merge(s.Attention(split(q, Lq), split(k, Lk), split(v, Lk), mask, scale), Lq))
	}
	kh, vh := split(k, Lk), split(v, Lk)
	var parts []*tensor.Tensor
	for r0 := 0; r0 < Lq; r0 += rows {
		n := min(rows, Lq-r0)
		qc, kc, vc := s.Borrow(q), s.Borrow(kh), s.Borrow(vh)
		if r0+n == Lq { // the last chunk consumes them
			qc, kc, vc = q, kh, vh
		}
		qc = s.Slice(qc, 1, r0, r0+n)
		parts = append(parts, merge(s.Attention(split(qc, n), kc, vc, nil, scale), n))
	}
	return s.Keep(s.Concat(1, parts...))
}
