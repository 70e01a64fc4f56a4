//go:build amd64 && !purego

package cpu

import (
	"math"

	"github.com/sdxl-go/sdxl/tensor"
)

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

// kernelAVX512 is the 14×32 AVX-512F micro-kernel (kernel512_amd64.s):
// kernelGo's contract over two 16-column B panels bstride floats apart.
//
//go:noescape
func kernelAVX512(k int, a, b, c *float32, ldc, bstride int, acc bool)

// kernelAVX512x16 is the 14×16 tile of kernelAVX512 for a lone last panel.
//
//go:noescape
func kernelAVX512x16(k int, a, b, c *float32, ldc int, acc bool)

// kernelAVX512Direct is kernelAVX512 reading row kk of B (32 floats) at
// b + offs[kk]: direct convolution.
//
//go:noescape
func kernelAVX512Direct(k int, a, b, c *float32, ldc int, offs *int32, acc bool)

// kernelAVX2Direct is kernelAVX2 reading row kk of B (16 floats) at
// b + offs[kk].
//
//go:noescape
func kernelAVX2Direct(k int, a, b, c *float32, ldc int, offs *int32, acc bool)

//go:noescape
func packRows14AVX2(dst, src *float32, lda, k8 int)

//go:noescape
func widenF16AVX2(dst *float32, src *uint16, n int)

//go:noescape
func widenBF16AVX2(dst *float32, src *uint16, n int)

// cpuFeatures is what CPUID and XCR0 say this machine and its OS support.
type cpuFeatures struct{ avx2FMA, f16c, avx512 bool }

func detectCPU() cpuFeatures {
	maxID, _, _, _ := cpuid(0, 0)
	if maxID < 7 {
		return cpuFeatures{}
	}
	_, _, ecx1, _ := cpuid(1, 0)
	const fma, osxsave, avx = 1 << 12, 1 << 27, 1 << 28
	if ecx1&(fma|osxsave|avx) != fma|osxsave|avx {
		return cpuFeatures{}
	}
	xcr0, _ := xgetbv()
	if xcr0&6 != 6 { // the OS saves XMM and YMM state
		return cpuFeatures{}
	}
	_, ebx7, _, _ := cpuid(7, 0)
	var f cpuFeatures
	f.avx2FMA = ebx7&(1<<5) != 0
	f.f16c = ecx1&(1<<29) != 0
	// AVX-512F, and the OS saving the opmask, ZMM0-15 upper halves and
	// ZMM16-31 (XCR0 bits 5-7).
	f.avx512 = f.avx2FMA && ebx7&(1<<16) != 0 && xcr0&0xe0 == 0xe0
	return f
}

var features = detectCPU()

// microKernels are the kernels of this build, in Kernels' order.
var microKernels = []microKernel{
	genericKernel,
	{name: KernelAVX2, isa: isaAVX2, supported: features.avx2FMA, mr: gemmMR, mc: gemmMC, one: kernelAVX2, direct: kernelAVX2Direct},
	{name: KernelAVX512, isa: isaAVX512, supported: features.avx512, mr: 14, mc: 168, one: kernelAVX512x16, two: kernelAVX512, direct: kernelAVX512Direct},
}

// expSumVec computes the longest multiple-of-8 prefix of expSum with AVX2,
// returning its length and sum (0, 0 without AVX2).
func expSumVec(v isa, x []float32, scale, shift float32) (int, float64) {
	n := len(x) &^ 7
	if !v.avx2() || n == 0 {
		return 0, 0
	}
	return n, expSumAVX2(&x[0], n, scale, shift)
}

// maxVec returns the length of the prefix of x it reduced and its maximum
// (0 and -Inf without AVX2).
func maxVec(v isa, x []float32) (int, float32) {
	n := len(x) &^ 7
	if !v.avx2() || n == 0 {
		return 0, float32(math.Inf(-1))
	}
	return n, maxAVX2(&x[0], n)
}

// scaleVec multiplies the longest multiple-of-8 prefix of x by s and
// returns its length (0 without AVX2).
func scaleVec(v isa, x []float32, s float32) int {
	n := len(x) &^ 7
	if !v.avx2() || n == 0 {
		return 0
	}
	scaleAVX2(&x[0], n, s)
	return n
}

// geluVec computes GELU of the longest multiple-of-8 prefix of src into
// dst and returns its length (0 without AVX2).
func geluVec(v isa, dst, src []float32) int {
	n := min(len(dst), len(src)) &^ 7
	if !v.avx2() || n == 0 {
		return 0
	}
	geluAVX2(&dst[0], &src[0], n)
	return n
}

// packTransVec packs the first k&^7 steps of a full 16-column panel of
// Bᵀ (see packB) and returns how many it packed (0 without AVX2).
func packTransVec(v isa, dst, src []float32, ldb, k int) int {
	k8 := k &^ 7
	if !v.avx2() || k8 == 0 {
		return 0
	}
	// Bounds: the last row's last element and the last packed value.
	_ = src[(gemmNR-1)*ldb+k8-1]
	_ = dst[k8*gemmNR-1]
	packTransAVX2(&dst[0], &src[0], ldb, k8)
	return k8
}

// packRowsVec packs the first k&^7 steps of a full micro-panel of A of
// mr rows (6 or 14; see packA) and returns how many it packed (0 without
// AVX2 or for another mr).
func packRowsVec(v isa, mr int, dst, src []float32, lda, k int) int {
	k8 := k &^ 7
	if !v.avx2() || k8 == 0 || (mr != 6 && mr != 14) {
		return 0
	}
	_ = src[(mr-1)*lda+k8-1]
	_ = dst[k8*mr-1]
	if mr == 6 {
		packRowsAVX2(&dst[0], &src[0], lda, k8)
	} else {
		packRows14AVX2(&dst[0], &src[0], lda, k8)
	}
	return k8
}

// sumVec returns the length of the longest multiple-of-8 prefix of x and
// its float64 sum (0, 0 without AVX2).
func sumVec(v isa, x []float32) (int, float64) {
	n := len(x) &^ 7
	if !v.avx2() || n == 0 {
		return 0, 0
	}
	return n, sumAVX2(&x[0], n)
}

// sqDevVec is sumVec for Σ(x−mean)².
func sqDevVec(v isa, x []float32, mean float64) (int, float64) {
	n := len(x) &^ 7
	if !v.avx2() || n == 0 {
		return 0, 0
	}
	return n, sqDevAVX2(&x[0], n, mean)
}

// affineVec applies affine to the longest multiple-of-8 prefix of src and
// returns its length (0 without AVX2).
func affineVec(v isa, dst, src []float32, scale, shift float64) int {
	n := min(len(dst), len(src)) &^ 7
	if !v.avx2() || n == 0 {
		return 0
	}
	affineAVX2(&dst[0], &src[0], n, scale, shift)
	return n
}

// siluVec applies SiLU to the longest multiple-of-8 prefix of src (dst may
// be src) and returns its length (0 without AVX2).
func siluVec(v isa, dst, src []float32) int {
	n := min(len(dst), len(src)) &^ 7
	if !v.avx2() || n == 0 {
		return 0
	}
	siluAVX2(&dst[0], &src[0], n)
	return n
}

// fmaPeakYMM and fmaPeakZMM run n iterations of 12 independent fused
// multiply-adds on ymm (8 floats) or zmm (16 floats) registers: the FMA
// ceiling that the kernel benchmarks report their fraction of.
func fmaPeakYMM(n int)
func fmaPeakZMM(n int)

// widenVec widens the longest multiple-of-8 prefix of src (16-bit
// patterns of dt) into dst and returns its length (0 without AVX2, or for
// F16 without F16C).
func widenVec(v isa, dt tensor.DType, dst []float32, src []uint16) int {
	n := min(len(dst), len(src)) &^ 7
	if !v.avx2() || n == 0 {
		return 0
	}
	switch {
	case dt == tensor.F16 && features.f16c:
		widenF16AVX2(&dst[0], &src[0], n)
	case dt == tensor.BF16:
		widenBF16AVX2(&dst[0], &src[0], n)
	default:
		return 0
	}
	return n
}
