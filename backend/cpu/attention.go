package cpu

import (
	"math"

	"github.com/sdxl-go/sdxl/tensor"
)

// attnTileElems bounds the score tile of one attention work item, so the
// [Lq, Lk] score matrix is never materialised whole.
const attnTileElems = 1 << 16

// Attention implements tensor.Backend: for each (batch, head) and tile of
// query rows, S = Q·Kᵀ·scale + mask, P = softmax(S), O = P·V.
func (b *Backend) Attention(q, k, v, mask *tensor.Tensor, scale float32) *tensor.Tensor {
	const op = "Attention"
	qs, ks, vs := data(op, q), data(op, k), data(op, v)
	var ms []float32
	if mask != nil {
		ms = data(op, mask)
	}
	outShape := tensor.AttentionShape(q.Shape(), k.Shape(), v.Shape(), optShape(mask))
	B, H, Lq, D := q.Dim(0), q.Dim(1), q.Dim(2), q.Dim(3)
	Lk, Dv := k.Dim(2), v.Dim(3)
	out := b.alloc(outShape.Numel())
	var mst []int
	if mask != nil {
		mst = tensor.BroadcastStrides(mask.Shape(), tensor.Shape{B, H, Lq, Lk})
	}
	rows := min(Lq, max(1, attnTileElems/max(1, Lk)))
	tiles := (Lq + rows - 1) / rows
	b.parallelItems(B*H*tiles, func(item int) {
		bh, t := item/tiles, item%tiles
		bi, hi := bh/H, bh%H
		r0 := t * rows
		r1 := min(Lq, r0+rows)
		nr := r1 - r0
		qm := qs[(bh*Lq+r0)*D:]
		km := ks[bh*Lk*D : (bh+1)*Lk*D]
		vm := vs[bh*Lk*Dv : (bh+1)*Lk*Dv]
		om := out[(bh*Lq+r0)*Dv:]
		s := make([]float32, nr*Lk)
		b.sgemmSerial(false, true, nr, Lk, D, qm, D, km, D, s, Lk, false)
		for i := range nr {
			row := s[i*Lk : (i+1)*Lk]
			for j := range row {
				row[j] *= scale
			}
			if ms != nil {
				mo := bi*mst[0] + hi*mst[1] + (r0+i)*mst[2]
				for j := range row {
					row[j] += ms[mo+j*mst[3]]
				}
			}
			softmaxRow(row, row)
		}
		b.sgemmSerial(false, false, nr, Dv, Lk, s, Lk, vm, Dv, om, Dv, false)
	})
	return b.wrap(q.DType(), outShape, out)
}

// Softmax implements tensor.Backend.
func (b *Backend) Softmax(x *tensor.Tensor) *tensor.Tensor {
	xs := data("Softmax", x)
	if x.Rank() < 1 {
		panic("tensor: Softmax: x " + x.Shape().String() + " has no last dimension")
	}
	D := x.Dim(-1)
	out := b.alloc(len(xs))
	rows := 0
	if D > 0 {
		rows = len(xs) / D
	}
	b.parallel(rows, max(1, 4096/max(1, D)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			softmaxRow(out[r*D:(r+1)*D], xs[r*D:(r+1)*D])
		}
	})
	return b.wrap(x.DType(), x.Shape(), out)
}

// softmaxRow writes softmax(src) to dst (which may alias src): max
// subtracted, exponentials and their sum in float64.
func softmaxRow(dst, src []float32) {
	if len(src) == 0 {
		return
	}
	m := src[0]
	for _, v := range src[1:] {
		m = max(m, v)
	}
	var sum float64
	for i, v := range src {
		e := math.Exp(float64(v - m))
		dst[i] = float32(e)
		sum += e
	}
	inv := 1 / sum
	for i := range dst {
		dst[i] = float32(float64(dst[i]) * inv)
	}
}
