package backendtest

import (
	"math"

	"github.com/sdxl-go/sdxl/tensor"
)

// Float64 reference implementations, written for clarity: plain loops over
// multi-indices, no blocking, no shared code with any backend.

// unravel returns the multi-index of flat index i in shape.
func unravel(i int, shape tensor.Shape) []int {
	idx := make([]int, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		idx[d] = i % shape[d]
		i /= shape[d]
	}
	return idx
}

// bcastOffset is the flat offset in a tensor of shape s of the element that
// multi-index idx (of a broadcast shape of rank >= len(s)) reads.
func bcastOffset(idx []int, s tensor.Shape) int {
	off := 0
	for d := range s {
		j := idx[len(idx)-len(s)+d]
		if s[d] == 1 {
			j = 0
		}
		off = off*s[d] + j
	}
	return off
}

func bcastShape(a, b tensor.Shape) tensor.Shape {
	n := max(len(a), len(b))
	out := make(tensor.Shape, n)
	for i := range n {
		da, db := 1, 1
		if j := len(a) - n + i; j >= 0 {
			da = a[j]
		}
		if j := len(b) - n + i; j >= 0 {
			db = b[j]
		}
		out[i] = max(da, db)
	}
	return out
}

func refBinary(a []float64, as tensor.Shape, b []float64, bs tensor.Shape, f func(x, y float64) float64) (tensor.Shape, []float64) {
	os := bcastShape(as, bs)
	out := make([]float64, os.Numel())
	for i := range out {
		idx := unravel(i, os)
		out[i] = f(a[bcastOffset(idx, as)], b[bcastOffset(idx, bs)])
	}
	return os, out
}

func refMatMul(a []float64, as tensor.Shape, b []float64, bs tensor.Shape, tA, tB bool) (tensor.Shape, []float64) {
	ra, rb := len(as), len(bs)
	m, k := as[ra-2], as[ra-1]
	if tA {
		m, k = k, m
	}
	n := bs[rb-1]
	if tB {
		n = bs[rb-2]
	}
	batch := bcastShape(as[:ra-2], bs[:rb-2])
	os := append(batch.Clone(), m, n)
	out := make([]float64, os.Numel())
	for bi := range batch.Numel() {
		idx := unravel(bi, batch)
		ao := bcastOffset(idx, as[:ra-2]) * m * k
		bo := bcastOffset(idx, bs[:rb-2]) * k * n
		for i := range m {
			for j := range n {
				var s float64
				for p := range k {
					var x, y float64
					if tA {
						x = a[ao+p*m+i]
					} else {
						x = a[ao+i*k+p]
					}
					if tB {
						y = b[bo+j*k+p]
					} else {
						y = b[bo+p*n+j]
					}
					s += x * y
				}
				out[(bi*m+i)*n+j] = s
			}
		}
	}
	return os, out
}

func refConv2D(x []float64, xs tensor.Shape, w []float64, ws tensor.Shape, bias []float64, stride, pad int) (tensor.Shape, []float64) {
	N, C, H, W := xs[0], xs[1], xs[2], xs[3]
	O, kh, kw := ws[0], ws[2], ws[3]
	Ho := (H+2*pad-kh)/stride + 1
	Wo := (W+2*pad-kw)/stride + 1
	os := tensor.Shape{N, O, Ho, Wo}
	out := make([]float64, os.Numel())
	for n := range N {
		for o := range O {
			for oy := range Ho {
				for ox := range Wo {
					var s float64
					if bias != nil {
						s = bias[o]
					}
					for c := range C {
						for i := range kh {
							for j := range kw {
								iy, ix := oy*stride-pad+i, ox*stride-pad+j
								if iy < 0 || iy >= H || ix < 0 || ix >= W {
									continue
								}
								s += x[((n*C+c)*H+iy)*W+ix] * w[((o*C+c)*kh+i)*kw+j]
							}
						}
					}
					out[((n*O+o)*Ho+oy)*Wo+ox] = s
				}
			}
		}
	}
	return os, out
}

// normalize returns (v-mean)/sqrt(var+eps) for a group of values (biased
// variance).
func normalize(v []float64, eps float64) []float64 {
	var mean float64
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	var vr float64
	for _, x := range v {
		vr += (x - mean) * (x - mean)
	}
	vr /= float64(len(v))
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = (x - mean) / math.Sqrt(vr+eps)
	}
	return out
}

func refGroupNorm(x []float64, xs tensor.Shape, groups int, w, b []float64, eps float64) []float64 {
	N, C := xs[0], xs[1]
	S := xs.Numel() / (N * C)
	cpg := C / groups
	out := make([]float64, len(x))
	for n := range N {
		for g := range groups {
			off := (n*C + g*cpg) * S
			y := normalize(x[off:off+cpg*S], eps)
			for i, v := range y {
				c := g*cpg + i/S
				if w != nil {
					v *= w[c]
				}
				if b != nil {
					v += b[c]
				}
				out[off+i] = v
			}
		}
	}
	return out
}

func refLayerNorm(x []float64, D int, w, b []float64, eps float64) []float64 {
	out := make([]float64, len(x))
	for r := 0; r < len(x); r += D {
		y := normalize(x[r:r+D], eps)
		for i, v := range y {
			if w != nil {
				v *= w[i]
			}
			if b != nil {
				v += b[i]
			}
			out[r+i] = v
		}
	}
	return out
}

func softmax(v []float64) []float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = math.Max(m, x)
	}
	out := make([]float64, len(v))
	var s float64
	for i, x := range v {
		out[i] = math.Exp(x - m)
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
	return out
}

func refSoftmax(x []float64, D int) []float64 {
	out := make([]float64, 0, len(x))
	for r := 0; r < len(x); r += D {
		out = append(out, softmax(x[r:r+D])...)
	}
	return out
}

func refAttention(q []float64, qs tensor.Shape, k []float64, ks tensor.Shape, v []float64, vs tensor.Shape, mask []float64, ms tensor.Shape, scale float64) (tensor.Shape, []float64) {
	B, H, Lq, D := qs[0], qs[1], qs[2], qs[3]
	Lk, Dv := ks[2], vs[3]
	os := tensor.Shape{B, H, Lq, Dv}
	out := make([]float64, os.Numel())
	for bh := range B * H {
		for i := range Lq {
			s := make([]float64, Lk)
			for j := range Lk {
				var d float64
				for p := range D {
					d += q[(bh*Lq+i)*D+p] * k[(bh*Lk+j)*D+p]
				}
				s[j] = d * scale
				if mask != nil {
					s[j] += mask[bcastOffset([]int{bh / H, bh % H, i, j}, ms)]
				}
			}
			p := softmax(s)
			for c := range Dv {
				var o float64
				for j := range Lk {
					o += p[j] * v[(bh*Lk+j)*Dv+c]
				}
				out[(bh*Lq+i)*Dv+c] = o
			}
		}
	}
	return os, out
}

func geluRef(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }
func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

func refMap(x []float64, f func(float64) float64) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = f(v)
	}
	return out
}

func refGEGLU(x []float64, D2 int) []float64 {
	D := D2 / 2
	out := make([]float64, 0, len(x)/2)
	for r := 0; r < len(x); r += D2 {
		for i := range D {
			out = append(out, x[r+i]*geluRef(x[r+D+i]))
		}
	}
	return out
}

func refConcat(axis int, vals [][]float64, shapes []tensor.Shape) (tensor.Shape, []float64) {
	os := shapes[0].Clone()
	for _, s := range shapes[1:] {
		os[axis] += s[axis]
	}
	out := make([]float64, os.Numel())
	for i := range out {
		idx := unravel(i, os)
		a := idx[axis]
		for t, s := range shapes {
			if a < s[axis] {
				idx[axis] = a
				out[i] = vals[t][flat(idx, s)]
				break
			}
			a -= s[axis]
		}
	}
	return os, out
}

func flat(idx []int, s tensor.Shape) int {
	off := 0
	for d := range s {
		off = off*s[d] + idx[d]
	}
	return off
}

func refSlice(x []float64, xs tensor.Shape, axis, start, end int) (tensor.Shape, []float64) {
	os := xs.Clone()
	os[axis] = end - start
	out := make([]float64, os.Numel())
	for i := range out {
		idx := unravel(i, os)
		idx[axis] += start
		out[i] = x[flat(idx, xs)]
	}
	return os, out
}

func refPermute(x []float64, xs tensor.Shape, perm []int) (tensor.Shape, []float64) {
	os := make(tensor.Shape, len(perm))
	for i, p := range perm {
		os[i] = xs[p]
	}
	out := make([]float64, os.Numel())
	for i := range out {
		oi := unravel(i, os)
		ii := make([]int, len(xs))
		for d, p := range perm {
			ii[p] = oi[d]
		}
		out[i] = x[flat(ii, xs)]
	}
	return os, out
}

// torchNearest is PyTorch's nearest source index for a resize in -> out
// given as an output size: float32 scale in/out, floor, clamp; with the
// exact special cases of upsample_nearest2d's nearest_idx.
func torchNearest(dst, in, out int) int {
	switch {
	case out == in:
		return dst
	case out == 2*in:
		return dst / 2
	}
	scale := float32(in) / float32(out)
	return min(int(math.Floor(float64(float32(dst)*scale))), in-1)
}

func refUpsample(x []float64, xs tensor.Shape, h, w int) (tensor.Shape, []float64) {
	N, C, H, W := xs[0], xs[1], xs[2], xs[3]
	os := tensor.Shape{N, C, h, w}
	out := make([]float64, os.Numel())
	for nc := range N * C {
		for y := range h {
			for xx := range w {
				out[(nc*h+y)*w+xx] = x[(nc*H+torchNearest(y, H, h))*W+torchNearest(xx, W, w)]
			}
		}
	}
	return os, out
}

func refMean(x []float64, xs tensor.Shape, axis int) (tensor.Shape, []float64) {
	os := xs.Clone()
	os[axis] = 1
	out := make([]float64, os.Numel())
	for i, v := range x {
		idx := unravel(i, xs)
		idx[axis] = 0
		out[flat(idx, os)] += v / float64(xs[axis])
	}
	return os, out
}
