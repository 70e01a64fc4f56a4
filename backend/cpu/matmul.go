package cpu

import (
	"github.com/sdxl-go/sdxl/tensor"
)

// MatMul implements tensor.Backend.
func (b *Backend) MatMul(x, y *tensor.Tensor, transA, transB bool) *tensor.Tensor {
	return b.matmul("MatMul", x, y, nil, transA, transB)
}

// Linear implements tensor.Linearer: x @ w^T + bias, the bias added to
// each output tile by the GEMM while the tile is in cache.
func (b *Backend) Linear(x, w, bias *tensor.Tensor) *tensor.Tensor {
	if bias != nil {
		if bias.Rank() != 1 || bias.Dim(0) != w.Dim(0) {
			panic("tensor: Linear: bias " + bias.Shape().String() + " does not match w " + w.Shape().String())
		}
	}
	if w.Rank() == 2 && x.Rank() >= 2 && x.Dim(-1) == w.Dim(1) {
		return b.linear(x, w, bias)
	}
	return b.matmul("Linear", x, w, bias, false, true)
}

// linear is x @ wᵀ + bias with w packed once (see storage) and the batch
// folded into M.
func (b *Backend) linear(x, w, bias *tensor.Tensor) *tensor.Tensor {
	const op = "Linear"
	xs := b.data(op, x)
	var bs []float32
	if bias != nil {
		bs = b.data(op, bias)
	}
	outShape, d := tensor.MatMulShape(x.Shape(), w.Shape(), false, true)
	m, n, k := d.Batch.Numel()*d.M, d.N, d.K
	out := b.alloc(outShape.Numel())
	if m > 0 && n > 0 {
		pb := b.weight(op, w, n, k, gemmNR).asB()
		b.gemm(b.threads, gemmArgs{m: m, a: xs, lda: k, b: pb, c: out, ldc: n, bias: bs})
	}
	return b.wrap(x.DType(), outShape, out)
}

func (b *Backend) matmul(op string, x, y, bias *tensor.Tensor, transA, transB bool) *tensor.Tensor {
	xs, ys := b.data(op, x), b.data(op, y)
	var bs []float32
	if bias != nil {
		bs = b.data(op, bias)
	}
	outShape, d := tensor.MatMulShape(x.Shape(), y.Shape(), transA, transB)
	m, n, k := d.M, d.N, d.K
	out := b.alloc(outShape.Numel())
	nb := d.Batch.Numel()
	lda, ldb := k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	xBatch := x.Shape()[:x.Rank()-2]
	yBatch := y.Shape()[:y.Rank()-2]
	// When y is shared by every batch item and x is not transposed, the
	// batch folds into M: one big GEMM (the Linear case).
	if !transA && yBatch.Numel() == 1 && xBatch.Numel() == nb {
		b.sgemmBias(b.threads, false, transB, nb*m, n, k, xs, lda, ys, ldb, bs, out, n, false)
		return b.wrap(x.DType(), outShape, out)
	}
	xst := tensor.BroadcastStrides(xBatch, d.Batch)
	yst := tensor.BroadcastStrides(yBatch, d.Batch)
	one := func(i, threads int) {
		xo, yo, rem := 0, 0, i
		for j := len(d.Batch) - 1; j >= 0; j-- {
			v := rem % d.Batch[j]
			rem /= d.Batch[j]
			xo += v * xst[j]
			yo += v * yst[j]
		}
		xo *= m * k
		yo *= k * n
		b.sgemmBias(threads, transA, transB, m, n, k, xs[xo:xo+m*k], lda, ys[yo:yo+k*n], ldb, bs, out[i*m*n:(i+1)*m*n], n, false)
	}
	if nb >= b.threads {
		// Enough independent products (attention heads, batch items) to
		// keep every thread busy with serial GEMMs.
		b.parallelItems(nb, func(i int) { one(i, 1) })
	} else {
		for i := range nb {
			one(i, b.threads)
		}
	}
	return b.wrap(x.DType(), outShape, out)
}
