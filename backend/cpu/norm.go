package cpu

import (
	"math"

	"github.com/sdxl-go/sdxl/tensor"
)

// GroupNorm implements tensor.Backend. Statistics are two-pass float64 (the
// mean, then the mean squared deviation), which is at least as exact as
// PyTorch's float32 cascade sums.
func (b *Backend) GroupNorm(x *tensor.Tensor, groups int, weight, bias *tensor.Tensor, eps float32) *tensor.Tensor {
	return b.groupNorm("GroupNorm", x, groups, weight, bias, eps, false)
}

// GroupNormSiLU implements tensor.GroupNormSiLUer: GroupNorm then SiLU in
// one pass over memory, bit-identical to the two ops for F32.
func (b *Backend) GroupNormSiLU(x *tensor.Tensor, groups int, weight, bias *tensor.Tensor, eps float32) *tensor.Tensor {
	if x.DType() != tensor.F32 {
		// Keep reduced-precision results identical to the unfused ops.
		return tensor.GroupNormSiLU(unfused{b}, x, groups, weight, bias, eps)
	}
	return b.groupNorm("GroupNormSiLU", x, groups, weight, bias, eps, true)
}

// unfused hides the optional fused interfaces of a Backend.
type unfused struct{ tensor.Backend }

func (b *Backend) groupNorm(op string, x *tensor.Tensor, groups int, weight, bias *tensor.Tensor, eps float32, withSiLU bool) *tensor.Tensor {
	xs := b.data(op, x)
	var ws, bs []float32
	if weight != nil {
		ws = b.data(op, weight)
	}
	if bias != nil {
		bs = b.data(op, bias)
	}
	tensor.GroupNormShape(x.Shape(), groups, optShape(weight), optShape(bias))
	N, C := x.Dim(0), x.Dim(1)
	S := x.Numel() / max(1, N*C) // spatial size
	cpg := C / groups
	out := b.alloc(len(xs))
	b.parallelItems(N*groups, func(item int) {
		n, g := item/groups, item%groups
		off := (n*C + g*cpg) * S
		seg := xs[off : off+cpg*S]
		mean, rstd := b.v.moments(seg, float64(eps))
		for ci := range cpg {
			c := g*cpg + ci
			// y = x*scale + shift with scale = rstd*w, shift = b - mean*scale
			scale := rstd
			if ws != nil {
				scale *= float64(ws[c])
			}
			shift := -mean * scale
			if bs != nil {
				shift += float64(bs[c])
			}
			src := seg[ci*S : (ci+1)*S]
			dst := out[off+ci*S : off+(ci+1)*S]
			b.v.affine(dst, src, scale, shift)
			if withSiLU {
				b.v.silu(dst, dst)
			}
		}
	})
	return b.wrap(x.DType(), x.Shape(), out)
}

// moments returns the mean and 1/sqrt(var+eps) of s (biased variance),
// accumulated in float64 in two passes (vectorised on amd64).
func (v isa) moments(s []float32, eps float64) (mean, rstd float64) {
	if len(s) == 0 {
		return 0, 1 / math.Sqrt(eps)
	}
	done, sum := sumVec(v, s)
	for _, v := range s[done:] {
		sum += float64(v)
	}
	mean = sum / float64(len(s))
	done, sq := sqDevVec(v, s, mean)
	for _, v := range s[done:] {
		d := float64(v) - mean
		sq += d * d
	}
	return mean, 1 / math.Sqrt(sq/float64(len(s))+eps)
}

// affine writes dst = src*scale + shift, computed in float64 and rounded
// once.
func (v isa) affine(dst, src []float32, scale, shift float64) {
	for i := affineVec(v, dst, src, scale, shift); i < len(src); i++ {
		dst[i] = float32(float64(src[i])*scale + shift)
	}
}

// LayerNorm implements tensor.Backend with float64 two-pass statistics.
func (b *Backend) LayerNorm(x *tensor.Tensor, weight, bias *tensor.Tensor, eps float32) *tensor.Tensor {
	const op = "LayerNorm"
	xs := b.data(op, x)
	var ws, bs []float32
	if weight != nil {
		ws = b.data(op, weight)
	}
	if bias != nil {
		bs = b.data(op, bias)
	}
	tensor.LayerNormShape(x.Shape(), optShape(weight), optShape(bias))
	D := x.Dim(-1)
	rows := 0
	if D > 0 {
		rows = len(xs) / D
	}
	out := b.alloc(len(xs))
	b.parallel(rows, max(1, 4096/max(1, D)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			src := xs[r*D : (r+1)*D]
			dst := out[r*D : (r+1)*D]
			mean, rstd := b.v.moments(src, float64(eps))
			for i, v := range src {
				y := (float64(v) - mean) * rstd
				if ws != nil {
					y *= float64(ws[i])
				}
				if bs != nil {
					y += float64(bs[i])
				}
				dst[i] = float32(y)
			}
		}
	})
	return b.wrap(x.DType(), x.Shape(), out)
}
