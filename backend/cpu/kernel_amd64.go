//go:build amd64 && !purego

package cpu

import "math"

// kernelAVX2 is the AVX2/FMA micro-kernel in kernel_amd64.s; it has the
// contract of kernelGo.
//
//go:noescape
func kernelAVX2(k int, a, b, c *float32, ldc int, acc bool)

// expSumAVX2 is the vector loop of expSum (kernel_amd64.s) for n a
// multiple of 8.
//
//go:noescape
func expSumAVX2(x *float32, n int, scale, shift float32) (sum float64)

//go:noescape
func geluAVX2(dst, src *float32, n int)

//go:noescape
func packTransAVX2(dst, src *float32, ldb, k8 int)

//go:noescape
func packRowsAVX2(dst, src *float32, lda, k8 int)

//go:noescape
func sumAVX2(x *float32, n int) float64

//go:noescape
func sqDevAVX2(x *float32, n int, mean float64) float64

//go:noescape
func affineAVX2(dst, src *float32, n int, scale, shift float64)

//go:noescape
func siluAVX2(dst, src *float32, n int)

//go:noescape
func maxAVX2(x *float32, n int) float32

//go:noescape
func scaleAVX2(x *float32, n int, s float32)

func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)
func xgetbv() (eax, edx uint32)

// hasAVX2FMA reports whether the CPU and the OS support AVX2 and FMA.
func hasAVX2FMA() bool {
	maxID, _, _, _ := cpuid(0, 0)
	if maxID < 7 {
		return false
	}
	_, _, ecx1, _ := cpuid(1, 0)
	const fma, osxsave, avx = 1 << 12, 1 << 27, 1 << 28
	if ecx1&(fma|osxsave|avx) != fma|osxsave|avx {
		return false
	}
	if xcr0, _ := xgetbv(); xcr0&6 != 6 { // OS saves XMM and YMM state
		return false
	}
	_, ebx7, _, _ := cpuid(7, 0)
	return ebx7&(1<<5) != 0
}

// haveAVX2 records, once at package initialisation, whether this machine
// runs the assembly kernels.
var haveAVX2 = hasAVX2FMA()

// kernel is the micro-kernel this machine runs.
var kernel = func() func(k int, a, b, c *float32, ldc int, acc bool) {
	if haveAVX2 {
		return kernelAVX2
	}
	return kernelGo
}()

// expSumVec computes the longest multiple-of-8 prefix of expSum with AVX2,
// returning its length and sum (0, 0 without AVX2).
func expSumVec(x []float32, scale, shift float32) (int, float64) {
	n := len(x) &^ 7
	if !haveAVX2 || n == 0 {
		return 0, 0
	}
	return n, expSumAVX2(&x[0], n, scale, shift)
}

// maxVec returns the length of the prefix of x it reduced and its maximum
// (0 and -Inf without AVX2).
func maxVec(x []float32) (int, float32) {
	n := len(x) &^ 7
	if !haveAVX2 || n == 0 {
		return 0, float32(math.Inf(-1))
	}
	return n, maxAVX2(&x[0], n)
}

// scaleVec multiplies the longest multiple-of-8 prefix of x by s and
// returns its length (0 without AVX2).
func scaleVec(x []float32, s float32) int {
	n := len(x) &^ 7
	if !haveAVX2 || n == 0 {
		return 0
	}
	scaleAVX2(&x[0], n, s)
	return n
}

// geluVec computes GELU of the longest multiple-of-8 prefix of src into
// dst and returns its length (0 without AVX2).
func geluVec(dst, src []float32) int {
	n := min(len(dst), len(src)) &^ 7
	if !haveAVX2 || n == 0 {
		return 0
	}
	geluAVX2(&dst[0], &src[0], n)
	return n
}

// packTransVec packs the first k&^7 steps of a full 16-column panel of
// Bᵀ (see packB) and returns how many it packed (0 without AVX2).
func packTransVec(dst, src []float32, ldb, k int) int {
	k8 := k &^ 7
	if !haveAVX2 || k8 == 0 {
		return 0
	}
	// Bounds: the last row's last element and the last packed value.
	_ = src[(gemmNR-1)*ldb+k8-1]
	_ = dst[k8*gemmNR-1]
	packTransAVX2(&dst[0], &src[0], ldb, k8)
	return k8
}

// packRowsVec packs the first k&^7 steps of a full 6-row micro-panel of A
// (see packA) and returns how many it packed (0 without AVX2).
func packRowsVec(dst, src []float32, lda, k int) int {
	k8 := k &^ 7
	if !haveAVX2 || k8 == 0 {
		return 0
	}
	_ = src[(gemmMR-1)*lda+k8-1]
	_ = dst[k8*gemmMR-1]
	packRowsAVX2(&dst[0], &src[0], lda, k8)
	return k8
}

// sumVec returns the length of the longest multiple-of-8 prefix of x and
// its float64 sum (0, 0 without AVX2).
func sumVec(x []float32) (int, float64) {
	n := len(x) &^ 7
	if !haveAVX2 || n == 0 {
		return 0, 0
	}
	return n, sumAVX2(&x[0], n)
}

// sqDevVec is sumVec for Σ(x−mean)².
func sqDevVec(x []float32, mean float64) (int, float64) {
	n := len(x) &^ 7
	if !haveAVX2 || n == 0 {
		return 0, 0
	}
	return n, sqDevAVX2(&x[0], n, mean)
}

// affineVec applies affine to the longest multiple-of-8 prefix of src and
// returns its length (0 without AVX2).
func affineVec(dst, src []float32, scale, shift float64) int {
	n := min(len(dst), len(src)) &^ 7
	if !haveAVX2 || n == 0 {
		return 0
	}
	affineAVX2(&dst[0], &src[0], n, scale, shift)
	return n
}

// siluVec applies SiLU to the longest multiple-of-8 prefix of src (dst may
// be src) and returns its length (0 without AVX2).
func siluVec(dst, src []float32) int {
	n := min(len(dst), len(src)) &^ 7
	if !haveAVX2 || n == 0 {
		return 0
	}
	siluAVX2(&dst[0], &src[0], n)
	return n
}
