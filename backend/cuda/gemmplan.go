package cuda

import (
	"fmt"

	"github.com/sdxl-go/sdxl/tensor"
)

// cuBLAS constants (cublas_api.h, library_types.h).
const (
	cublasOpN = 0
	cublasOpT = 1

	cublasCompute32F         = 68 // CUBLAS_COMPUTE_32F: float accumulation, no reduced-precision inputs
	cublasCompute32FFastTF32 = 77 // CUBLAS_COMPUTE_32F_FAST_TF32
	cublasGemmDefault        = -1 // CUBLAS_GEMM_DEFAULT

	cudaR32F  = 0  // CUDA_R_32F
	cudaR16F  = 2  // CUDA_R_16F
	cudaR16BF = 14 // CUDA_R_16BF
)

// cudaDataType maps a storage dtype to cudaDataType.
func cudaDataType(dt tensor.DType) int32 {
	switch dt {
	case tensor.F32:
		return cudaR32F
	case tensor.F16:
		return cudaR16F
	case tensor.BF16:
		return cudaR16BF
	}
	panic(fmt.Sprintf("cuda: no cudaDataType for %v", dt))
}

// gemmCall is one cuBLAS call in cuBLAS's own (column-major) terms:
// C = alpha*op(A)*op(B) + beta*C with op(A) m x k, op(B) k x n, C m x n,
// repeated batch times with the given element strides (batch > 1 means
// cublasGemmStridedBatchedEx, else cublasGemmEx).
type gemmCall struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a, b, c        uint64
	aType, bType   tensor.DType
	cType          tensor.DType
	lda, ldb, ldc  int
	strideA        int64
	strideB        int64
	strideC        int64
	batch          int
	compute        int32
}

// rowGemm describes a product of row-major matrices, the way the backend's
// ops think: C[M,N] = alpha*op(A)[M,K]*op(B)[K,N] + beta*C, where a stored
// matrix has a leading dimension (its row length in elements, >= its
// column count) and consecutive batch items lie stride elements apart.
type rowGemm struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a, b, c        uint64 // device addresses of the first element
	aType, bType   tensor.DType
	cType          tensor.DType
	lda, ldb, ldc  int
	strideA        int64
	strideB        int64
	strideC        int64
	batch          int
}

// colMajor maps a row-major product onto cuBLAS's column-major convention.
// A row-major matrix X (r x c, leading dimension ld) is, read column-major,
// the matrix X^T (c x r) with the same ld. So C = op(A)*op(B) becomes
// C^T = op(B)^T * op(A)^T: cuBLAS gets B as its first operand and A as its
// second, m and n swap, the transposition flags stay with their matrices,
// and every leading dimension and stride carries over unchanged.
func (g rowGemm) colMajor(compute int32) gemmCall {
	return gemmCall{
		transA: g.transB, transB: g.transA,
		m: g.n, n: g.m, k: g.k,
		alpha: g.alpha, beta: g.beta,
		a: g.b, aType: g.bType, lda: g.ldb, strideA: g.strideB,
		b: g.a, bType: g.aType, ldb: g.lda, strideB: g.strideA,
		c: g.c, cType: g.cType, ldc: g.ldc, strideC: g.strideC,
		batch:   max(g.batch, 1),
		compute: compute,
	}
}

// validate checks the call against cuBLAS's documented requirements
// (leading dimensions at least the stored row count, sizes in int32), so
// that a mistake here is reported with the numbers instead of as
// CUBLAS_STATUS_INVALID_VALUE.
func (g *gemmCall) validate() error {
	const maxI32 = 1<<31 - 1
	rowsA, rowsB := g.m, g.k
	if g.transA {
		rowsA = g.k
	}
	if g.transB {
		rowsB = g.n
	}
	switch {
	case g.m < 0 || g.n < 0 || g.k < 0 || g.m > maxI32 || g.n > maxI32 || g.k > maxI32:
		return fmt.Errorf("gemm sizes m=%d n=%d k=%d out of range", g.m, g.n, g.k)
	case g.lda < max(1, rowsA) || g.ldb < max(1, rowsB) || g.ldc < max(1, g.m):
		return fmt.Errorf("gemm leading dimensions lda=%d ldb=%d ldc=%d too small for m=%d n=%d k=%d transA=%v transB=%v",
			g.lda, g.ldb, g.ldc, g.m, g.n, g.k, g.transA, g.transB)
	case g.lda > maxI32 || g.ldb > maxI32 || g.ldc > maxI32 || g.batch > maxI32:
		return fmt.Errorf("gemm leading dimensions or batch out of int32 range")
	case g.aType != g.bType:
		return fmt.Errorf("gemm operand types %v and %v differ", g.aType, g.bType)
	}
	return nil
}

func (g *gemmCall) String() string {
	return fmt.Sprintf("m=%d n=%d k=%d transA=%v transB=%v A %v lda=%d strideA=%d B %v ldb=%d strideB=%d C %v ldc=%d strideC=%d batch=%d compute=%d",
		g.m, g.n, g.k, g.transA, g.transB, g.aType, g.lda, g.strideA, g.bType, g.ldb, g.strideB, g.cType, g.ldc, g.strideC, g.batch, g.compute)
}
