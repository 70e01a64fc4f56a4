//go:build amd64 && !purego

package cpu

// kernelAVX2 is the AVX2/FMA micro-kernel in kernel_amd64.s; it has the
// contract of kernelGo.
//
//go:noescape
func kernelAVX2(k int, a, b, c *float32, ldc int, acc bool)

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

// kernel is the micro-kernel this machine runs, fixed at package
// initialisation.
var kernel = func() func(k int, a, b, c *float32, ldc int, acc bool) {
	if hasAVX2FMA() {
		return kernelAVX2
	}
	return kernelGo
}()
