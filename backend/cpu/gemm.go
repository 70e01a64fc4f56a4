package cpu

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// sgemm computes C = op(A)·op(B) (accumulate false) or C += op(A)·op(B)
// (accumulate true) for row-major op(A) m×k and op(B) k×n. With accumulate
// false C's previous contents are ignored, NaN included.
func (b *Backend) sgemm(transA, transB bool, m, n, k int, a []float32, lda int, bm []float32, ldb int, c []float32, ldc int, accumulate bool) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		if !accumulate {
			for i := range m {
				clear(c[i*ldc : i*ldc+n])
			}
		}
		return
	}
	tA, tB := blas.NoTrans, blas.NoTrans
	if transA {
		tA = blas.Trans
	}
	if transB {
		tB = blas.Trans
	}
	var beta float32
	if accumulate {
		beta = 1
	}
	gonum.Implementation{}.Sgemm(tA, tB, m, n, k, 1, a, lda, bm, ldb, beta, c, ldc)
}

// sgemmSerial is sgemm for callers that already parallelise over
// independent work items.
func (b *Backend) sgemmSerial(transA, transB bool, m, n, k int, a []float32, lda int, bm []float32, ldb int, c []float32, ldc int, accumulate bool) {
	b.sgemm(transA, transB, m, n, k, a, lda, bm, ldb, c, ldc, accumulate)
}
