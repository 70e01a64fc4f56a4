package cpu

import (
	"math"

	"github.com/sdxl-go/sdxl/tensor"
)

// unary applies f to every element of x in parallel.
func (b *Backend) unary(op string, x *tensor.Tensor, f func(dst, src []float32)) *tensor.Tensor {
	xs := b.data(op, x)
	out := b.alloc(len(xs))
	b.parallel(len(xs), 1<<14, func(lo, hi int) { f(out[lo:hi], xs[lo:hi]) })
	return b.wrap(x.DType(), x.Shape(), out)
}

// SiLU implements tensor.Backend.
func (b *Backend) SiLU(x *tensor.Tensor) *tensor.Tensor {
	return b.unary("SiLU", x, b.v.silu)
}

// silu writes src·sigmoid(src) = src/(1+e^(−src)) to dst (which may be
// src) in float32, like torch: vectorised on amd64, math.Exp elsewhere.
func (v isa) silu(dst, src []float32) {
	for i := siluVec(v, dst, src); i < len(src); i++ {
		v := src[i]
		dst[i] = v / (1 + float32(math.Exp(-float64(v))))
	}
}

// geluRow writes the exact (erf) GELU of src to dst: an AVX2 polynomial on
// amd64 (relative error about 2e-7 where it matters, see geluAVX2), with
// math.Erfc in float64 for the tail and on other machines.
func (v isa) geluRow(dst, src []float32) {
	for i := geluVec(v, dst, src); i < len(src); i++ {
		// 1+erf(z) = erfc(−z), which keeps its relative accuracy in the
		// negative tail where 1+erf(z) cancels.
		x := float64(src[i])
		dst[i] = float32(0.5 * x * math.Erfc(-x*(1/math.Sqrt2)))
	}
}

// GELU implements tensor.Backend (the erf form, like torch's default).
func (b *Backend) GELU(x *tensor.Tensor) *tensor.Tensor {
	return b.unary("GELU", x, b.v.geluRow)
}

// QuickGELU implements tensor.Backend: x*sigmoid(1.702x) (CLIP ViT-L).
func (b *Backend) QuickGELU(x *tensor.Tensor) *tensor.Tensor {
	return b.unary("QuickGELU", x, func(dst, src []float32) {
		copy(dst, src)
		b.v.expSum(dst, -1.702, 0) // e^(−1.702x)
		for i, v := range src {
			dst[i] = v / (1 + dst[i])
		}
	})
}

// GEGLU implements tensor.Backend: [..., 2D] -> a*gelu(g) with a the first
// half of the last dimension and g the second (diffusers' GEGLU).
func (b *Backend) GEGLU(x *tensor.Tensor) *tensor.Tensor {
	xs := b.data("GEGLU", x)
	outShape := tensor.GEGLUShape(x.Shape())
	D := outShape[len(outShape)-1]
	out := b.alloc(outShape.Numel())
	rows := 0
	if D > 0 {
		rows = len(out) / D
	}
	b.parallel(rows, max(1, 8192/max(1, D)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			a := xs[2*r*D : 2*r*D+D]
			g := xs[2*r*D+D : 2*(r+1)*D]
			dst := out[r*D : (r+1)*D]
			b.v.geluRow(dst, g)
			for i, v := range a {
				dst[i] *= v
			}
		}
	})
	return b.wrap(x.DType(), outShape, out)
}

// Scale implements tensor.Backend.
func (b *Backend) Scale(x *tensor.Tensor, s float32) *tensor.Tensor {
	return b.unary("Scale", x, func(dst, src []float32) {
		for i, v := range src {
			dst[i] = v * s
		}
	})
}

// Add implements tensor.Backend.
func (b *Backend) Add(x, y *tensor.Tensor) *tensor.Tensor {
	return b.binary("Add", x, y, func(dst, p, q []float32) {
		for i := range dst {
			dst[i] = p[i] + q[i]
		}
	}, func(dst, p []float32, c float32) {
		for i := range dst {
			dst[i] = p[i] + c
		}
	}, func(dst []float32, c float32, q []float32) {
		for i := range dst {
			dst[i] = c + q[i]
		}
	})
}

// Mul implements tensor.Backend.
func (b *Backend) Mul(x, y *tensor.Tensor) *tensor.Tensor {
	return b.binary("Mul", x, y, func(dst, p, q []float32) {
		for i := range dst {
			dst[i] = p[i] * q[i]
		}
	}, func(dst, p []float32, c float32) {
		for i := range dst {
			dst[i] = p[i] * c
		}
	}, func(dst []float32, c float32, q []float32) {
		for i := range dst {
			dst[i] = c * q[i]
		}
	})
}

// binary evaluates a broadcasting elementwise op. The broadcast shape is
// collapsed to as few dimensions as possible; the innermost run is then
// handled by vv (both operands vary), vs (y constant) or sv (x constant).
func (b *Backend) binary(op string, x, y *tensor.Tensor,
	vv func(dst, p, q []float32),
	vs func(dst, p []float32, c float32),
	sv func(dst []float32, c float32, q []float32)) *tensor.Tensor {
	xs, ys := b.data(op, x), b.data(op, y)
	outShape := tensor.BroadcastShapes(op, x.Shape(), y.Shape())
	out := b.alloc(outShape.Numel())
	dims, xst, yst := collapse(outShape, tensor.BroadcastStrides(x.Shape(), outShape), tensor.BroadcastStrides(y.Shape(), outShape))
	r := len(dims)
	inner := 1
	ix, iy := 0, 0
	if r > 0 {
		inner = dims[r-1]
		ix, iy = xst[r-1], yst[r-1]
	}
	if r <= 1 {
		// One run (same shapes, or a single element broadcast over x or
		// y): split the run itself between the threads.
		b.parallel(inner, 1<<14, func(lo, hi int) {
			dst := out[lo:hi]
			switch {
			case ix == 1 && iy == 1:
				vv(dst, xs[lo:hi], ys[lo:hi])
			case ix == 1:
				vs(dst, xs[lo:hi], ys[0])
			case iy == 1:
				sv(dst, xs[0], ys[lo:hi])
			default:
				vv(dst, xs[:1], ys[:1])
			}
		})
		return b.wrap(x.DType(), outShape, out)
	}
	outer := len(out) / max(1, inner)
	b.parallel(outer, max(1, 1<<14/max(1, inner)), func(lo, hi int) {
		idx := make([]int, max(0, r-1))
		// Start index for row lo.
		rem := lo
		for j := r - 2; j >= 0; j-- {
			idx[j] = rem % dims[j]
			rem /= dims[j]
		}
		for row := lo; row < hi; row++ {
			xo, yo := 0, 0
			for j, v := range idx {
				xo += v * xst[j]
				yo += v * yst[j]
			}
			dst := out[row*inner : (row+1)*inner]
			switch {
			case ix == 1 && iy == 1:
				vv(dst, xs[xo:xo+inner], ys[yo:yo+inner])
			case ix == 1:
				vs(dst, xs[xo:xo+inner], ys[yo])
			default:
				sv(dst, xs[xo], ys[yo:yo+inner])
			}
			for j := r - 2; j >= 0; j-- {
				idx[j]++
				if idx[j] < dims[j] {
					break
				}
				idx[j] = 0
			}
		}
	})
	return b.wrap(x.DType(), outShape, out)
}

// collapse merges adjacent output dimensions whose operand strides are
// contiguous for both operands, and drops size-1 dimensions, so that
// broadcasting loops run over long inner rows.
func collapse(dims tensor.Shape, sa, sb []int) ([]int, []int, []int) {
	var d, a, c []int
	for i, n := range dims {
		if n == 1 {
			continue
		}
		if k := len(d) - 1; k >= 0 &&
			a[k] == sa[i]*n && c[k] == sb[i]*n {
			d[k] *= n
			a[k], c[k] = sa[i], sb[i]
			continue
		}
		d = append(d, n)
		a = append(a, sa[i])
		c = append(c, sb[i])
	}
	return d, a, c
}

// Mean implements tensor.Backend, accumulating in float64.
func (b *Backend) Mean(x *tensor.Tensor, axis int) *tensor.Tensor {
	xs := b.data("Mean", x)
	outShape, ax := tensor.MeanShape(x.Shape(), axis)
	n := x.Dim(ax)
	inner := 1
	for _, d := range x.Shape()[ax+1:] {
		inner *= d
	}
	outer := outShape.Numel() / max(1, inner)
	out := b.alloc(outShape.Numel())
	b.parallel(outer, 1, func(lo, hi int) {
		acc := make([]float64, inner)
		for o := lo; o < hi; o++ {
			clear(acc)
			for i := range n {
				src := xs[(o*n+i)*inner : (o*n+i+1)*inner]
				for j, v := range src {
					acc[j] += float64(v)
				}
			}
			dst := out[o*inner : (o+1)*inner]
			for j := range dst {
				dst[j] = float32(acc[j] / float64(n))
			}
		}
	})
	return b.wrap(x.DType(), outShape, out)
}
