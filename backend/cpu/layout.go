package cpu

import (
	"github.com/sdxl-go/sdxl/tensor"
)

// Concat implements tensor.Backend.
func (b *Backend) Concat(axis int, ts ...*tensor.Tensor) *tensor.Tensor {
	const op = "Concat"
	shapes := make([]tensor.Shape, len(ts))
	srcs := make([][]float32, len(ts))
	for i, t := range ts {
		srcs[i] = b.data(op, t)
		shapes[i] = t.Shape()
	}
	outShape, ax := tensor.ConcatShape(axis, shapes...)
	inner := 1
	for _, d := range outShape[ax+1:] {
		inner *= d
	}
	outer := 1
	for _, d := range outShape[:ax] {
		outer *= d
	}
	out := b.alloc(outShape.Numel())
	rowLen := outShape[ax] * inner
	b.parallel(outer, max(1, 1<<14/max(1, rowLen)), func(lo, hi int) {
		for o := lo; o < hi; o++ {
			dst := out[o*rowLen : (o+1)*rowLen]
			for i, s := range srcs {
				n := shapes[i][ax] * inner
				copy(dst[:n], s[o*n:(o+1)*n])
				dst = dst[n:]
			}
		}
	})
	return b.wrap(ts[0].DType(), outShape, out)
}

// Slice implements tensor.Backend.
func (b *Backend) Slice(x *tensor.Tensor, axis, start, end int) *tensor.Tensor {
	xs := b.data("Slice", x)
	outShape, ax := tensor.SliceShape(x.Shape(), axis, start, end)
	inner := 1
	for _, d := range outShape[ax+1:] {
		inner *= d
	}
	outer := 1
	for _, d := range outShape[:ax] {
		outer *= d
	}
	out := b.alloc(outShape.Numel())
	n := (end - start) * inner
	full := x.Dim(ax) * inner
	b.parallel(outer, max(1, 1<<14/max(1, n)), func(lo, hi int) {
		for o := lo; o < hi; o++ {
			copy(out[o*n:(o+1)*n], xs[o*full+start*inner:])
		}
	})
	return b.wrap(x.DType(), outShape, out)
}

// Permute implements tensor.Backend. Input dimensions that stay adjacent
// are merged first; the remaining copy walks the output in order, copying
// contiguous runs when the last dimension stays innermost and transposing
// in cache-sized blocks otherwise.
func (b *Backend) Permute(x *tensor.Tensor, perm ...int) *tensor.Tensor {
	xs := b.data("Permute", x)
	outShape := tensor.PermuteShape(x.Shape(), perm)
	out := b.alloc(outShape.Numel())
	if len(out) == 0 {
		return b.wrap(x.DType(), outShape, out)
	}
	dims, strides := permuteDims(x.Shape(), perm)
	r := len(dims)
	if r == 1 { // identity after merging
		copy(out, xs)
		return b.wrap(x.DType(), outShape, out)
	}
	// The last two output dims form 2-D planes: out[p][q] = in[p*sp + q*sq].
	P, Q := dims[r-2], dims[r-1]
	sp, sq := strides[r-2], strides[r-1]
	planes := len(out) / (P * Q)
	b.parallel(planes, 1, func(lo, hi int) {
		idx := make([]int, r-2)
		rem := lo
		for j := r - 3; j >= 0; j-- {
			idx[j] = rem % dims[j]
			rem /= dims[j]
		}
		for pl := lo; pl < hi; pl++ {
			base := 0
			for j, v := range idx {
				base += v * strides[j]
			}
			dst := out[pl*P*Q : (pl+1)*P*Q]
			if sq == 1 {
				for p := range P {
					copy(dst[p*Q:(p+1)*Q], xs[base+p*sp:])
				}
			} else {
				const blk = 32
				for p0 := 0; p0 < P; p0 += blk {
					p1 := min(P, p0+blk)
					for q0 := 0; q0 < Q; q0 += blk {
						q1 := min(Q, q0+blk)
						for p := p0; p < p1; p++ {
							row := dst[p*Q : (p+1)*Q]
							src := base + p*sp
							for q := q0; q < q1; q++ {
								row[q] = xs[src+q*sq]
							}
						}
					}
				}
			}
			for j := r - 3; j >= 0; j-- {
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

// permuteDims returns the output dimensions of a permutation with their
// input strides, after dropping size-1 dimensions and merging output
// neighbours that are also input neighbours in the same order.
func permuteDims(shape tensor.Shape, perm []int) (dims, strides []int) {
	in := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		in[i] = acc
		acc *= shape[i]
	}
	for _, p := range perm {
		n := shape[p]
		if n == 1 {
			continue
		}
		if k := len(dims) - 1; k >= 0 && strides[k] == in[p]*n {
			dims[k] *= n
			strides[k] = in[p]
			continue
		}
		dims = append(dims, n)
		strides = append(strides, in[p])
	}
	if len(dims) == 0 {
		dims, strides = []int{1}, []int{1}
	}
	return dims, strides
}

// Upsample implements tensor.Backend with PyTorch's "nearest" indexing
// (tensor.NearestIndex).
func (b *Backend) Upsample(x *tensor.Tensor, h, w int) *tensor.Tensor {
	xs := b.data("Upsample", x)
	outShape := tensor.UpsampleShape(x.Shape(), h, w)
	NC, H, W := x.Dim(0)*x.Dim(1), x.Dim(2), x.Dim(3)
	out := b.alloc(outShape.Numel())
	srcX := make([]int, w)
	for i := range srcX {
		srcX[i] = tensor.NearestIndex(i, W, w)
	}
	b.parallel(NC*h, max(1, 1<<14/w), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			c, y := r/h, r%h
			src := xs[(c*H+tensor.NearestIndex(y, H, h))*W:]
			dst := out[r*w : (r+1)*w]
			for i, sx := range srcX {
				dst[i] = src[sx]
			}
		}
	})
	return b.wrap(x.DType(), outShape, out)
}

// Embedding implements tensor.Backend.
func (b *Backend) Embedding(table *tensor.Tensor, ids []int32) *tensor.Tensor {
	outShape := tensor.EmbeddingShape(table.Shape(), ids)
	D := table.Dim(1)
	if h := stor("Embedding", table).halfBits(); h != nil {
		// Gather the 16-bit rows: no widened copy of the whole table.
		out := make([]uint16, outShape.Numel())
		for i, id := range ids {
			copy(out[i*D:(i+1)*D], h[int(id)*D:])
		}
		return tensor.New(b, outShape, table.DType(), newHalf(table.DType(), out))
	}
	ts := b.data("Embedding", table)
	out := b.alloc(outShape.Numel())
	for i, id := range ids {
		copy(out[i*D:(i+1)*D], ts[int(id)*D:])
	}
	return b.wrap(table.DType(), outShape, out)
}
