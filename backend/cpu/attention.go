package cpu

import (
	"github.com/sdxl-go/sdxl/tensor"
)

// attnTileElems bounds the score tile of one attention work item (a block
// of query rows against all keys), so the [Lq, Lk] score matrix is never
// materialised whole and a tile stays in L2.
const attnTileElems = 1 << 17

// attnMinRows is the smallest number of query rows in a tile.
const attnMinRows = 96

// Attention implements tensor.Backend. Kᵀ and V of every (batch, head) are
// packed for the GEMM once; then, in parallel over (batch, head, block of
// query rows): S = Q·Kᵀ, P = softmax(S·scale + mask), O = P·V.
func (b *Backend) Attention(q, k, v, mask *tensor.Tensor, scale float32) *tensor.Tensor {
	const op = "Attention"
	qs, ks, vs := b.data(op, q), b.data(op, k), b.data(op, v)
	var ms []float32
	if mask != nil {
		ms = b.data(op, mask)
	}
	outShape := tensor.AttentionShape(q.Shape(), k.Shape(), v.Shape(), optShape(mask))
	B, H, Lq, D := q.Dim(0), q.Dim(1), q.Dim(2), q.Dim(3)
	Lk, Dv := k.Dim(2), v.Dim(3)
	out := b.alloc(outShape.Numel())
	var mst []int
	if mask != nil {
		mst = tensor.BroadcastStrides(mask.Shape(), tensor.Shape{B, H, Lq, Lk})
	}
	BH := B * H
	if BH == 0 || Lq == 0 || Dv == 0 {
		return b.wrap(q.DType(), outShape, out)
	}

	// Pack Kᵀ ([D, Lk]) and V ([Lk, Dv]) of each (batch, head).
	kSize, vSize := packedBSize(D, Lk), packedBSize(Lk, Dv)
	kbuf := b.pools.b.get(BH * kSize)
	defer b.pools.b.put(kbuf)
	vbuf := b.pools.b.get(BH * vSize)
	defer b.pools.b.put(vbuf)
	kp := make([]packedB, BH)
	vp := make([]packedB, BH)
	b.parallelItems(BH, func(bh int) {
		kp[bh] = b.packB(1, (*kbuf)[bh*kSize:], true, D, Lk, ks[bh*Lk*D:], D)
		vp[bh] = b.packB(1, (*vbuf)[bh*vSize:], false, Lk, Dv, vs[bh*Lk*Dv:], Dv)
	})

	// At least attnMinRows query rows per tile, so that streaming the packed
	// K and V through the cache is amortised over enough rows.
	rows := min(Lq, max(attnMinRows, attnTileElems/max(1, Lk)/b.mk.mr*b.mk.mr))
	tiles := (Lq + rows - 1) / rows
	b.parallelItems(BH*tiles, func(item int) {
		bh, t := item/tiles, item%tiles
		bi, hi := bh/H, bh%H
		r0 := t * rows
		nr := min(Lq, r0+rows) - r0
		sbuf := b.pools.scratch.get(nr * Lk)
		defer b.pools.scratch.put(sbuf)
		s := *sbuf
		b.gemm(1, gemmArgs{m: nr, a: qs[(bh*Lq+r0)*D:], lda: D, b: kp[bh], c: s, ldc: Lk})
		for i := range nr {
			row := s[i*Lk : (i+1)*Lk]
			if ms == nil {
				b.v.softmaxScaledRow(row, scale)
				continue
			}
			mo := bi*mst[0] + hi*mst[1] + (r0+i)*mst[2]
			for j := range row {
				row[j] = row[j]*scale + ms[mo+j*mst[3]]
			}
			b.v.softmaxRow(row, row)
		}
		b.gemm(1, gemmArgs{m: nr, a: s, lda: Lk, b: vp[bh], c: out[(bh*Lq+r0)*Dv:], ldc: Dv})
	})
	return b.wrap(q.DType(), outShape, out)
}

// Softmax implements tensor.Backend.
func (b *Backend) Softmax(x *tensor.Tensor) *tensor.Tensor {
	xs := b.data("Softmax", x)
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
			b.v.softmaxRow(out[r*D:(r+1)*D], xs[r*D:(r+1)*D])
		}
	})
	return b.wrap(x.DType(), x.Shape(), out)
}

// softmaxScaledRow replaces row by softmax(row·scale) for scale > 0 (the
// maximum of row·scale is scale·max(row)); for other scales it scales
// first.
func (v isa) softmaxScaledRow(row []float32, scale float32) {
	if !(scale > 0) {
		for j := range row {
			row[j] *= scale
		}
		v.softmaxRow(row, row)
		return
	}
	m := v.maxf(row)
	v.normalize(row, v.expSum(row, scale, m*scale))
}

// softmaxRow writes softmax(src) to dst (which may alias src): the maximum
// subtracted, the exponentials summed in float64.
func (v isa) softmaxRow(dst, src []float32) {
	if len(src) == 0 {
		return
	}
	m := v.maxf(src)
	copy(dst, src)
	v.normalize(dst, v.expSum(dst, 1, m))
}

// normalize divides row by sum: it multiplies by the float32 reciprocal,
// like torch's vectorised softmax (one rounding more than a division, far
// below the 1e-5 the models need).
func (v isa) normalize(row []float32, sum float64) {
	v.scalef(row, float32(1/sum))
}
