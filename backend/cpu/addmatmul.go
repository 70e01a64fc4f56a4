package cpu

import (
	"fmt"

	"github.com/sdxl-go/sdxl/tensor"
)

var _ tensor.AddMatMuler = (*Backend)(nil)

// addMatMulBlock is the number of output values AddMatMul finishes at a
// time: small enough (256 KB) for the block to stay in cache between its
// copy from c and the GEMM accumulating onto it.
const addMatMulBlock = 64 << 10

// AddMatMul implements tensor.AddMatMuler for rank-2 operands: c + a·b in
// one pass over c (a LoRA merge, W + up·down). Blocks of rows of c are
// copied into the output and the product is accumulated onto them by the
// GEMM, which sums a·b in registers and adds the sum to C when it stores a
// tile: for K <= gemmKC the result is Add(c, MatMul(a, b)) bit for bit,
// without the product's allocation and memory traffic. When reading c
// already makes a fresh float32 copy (a packed weight, half-precision
// storage) the product accumulates into that copy.
func (b *Backend) AddMatMul(c, x, y *tensor.Tensor) *tensor.Tensor {
	if x.Rank() != 2 || y.Rank() != 2 || c.Rank() != 2 || x.Dim(1) != y.Dim(0) || c.Dim(0) != x.Dim(0) || c.Dim(1) != y.Dim(1) {
		panic(fmt.Sprintf("cpu: AddMatMul: c %v + a %v · b %v", c.Shape(), x.Shape(), y.Shape()))
	}
	cs, fresh := b.values("AddMatMul", c)
	xs, ys := b.data("AddMatMul", x), b.data("AddMatMul", y)
	m, k, n := x.Dim(0), x.Dim(1), y.Dim(1)
	out := cs
	if !fresh {
		out = b.alloc(m * n)
	}
	buf := b.pools.b.get(packedBSize(k, n))
	defer b.pools.b.put(buf)
	bp := b.packB(b.threads, *buf, false, k, n, ys, n)
	rows := max(1, addMatMulBlock/max(1, n))
	b.parallel(m, rows, func(lo, hi int) {
		for r0 := lo; r0 < hi; r0 += rows {
			r1 := min(hi, r0+rows)
			blk := out[r0*n : r1*n]
			if !fresh {
				copy(blk, cs[r0*n:r1*n])
			}
			b.gemm(1, gemmArgs{m: r1 - r0, a: xs[r0*k : r1*k], lda: k, b: bp, c: blk, ldc: n, acc: true})
		}
	})
	return b.wrap(c.DType(), c.Shape(), out)
}
