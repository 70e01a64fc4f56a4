package cpu

import (
	"fmt"
	"os"
	"strings"
)

// Kernel names the instruction set the backend's hot loops run on: the
// GEMM micro-kernel (and so Linear, MatMul, Conv2D and Attention) and the
// vectorised elementwise loops (exp, GELU, SiLU, norms, packing).
type Kernel string

const (
	// KernelGeneric is portable Go everywhere: what every machine
	// computes without assembly (and what the purego build tag selects).
	KernelGeneric Kernel = "generic"
	// KernelAVX2 is the 6×16 AVX2+FMA micro-kernel (ymm) with the AVX2
	// elementwise loops: the backend as it was before AVX-512 existed.
	KernelAVX2 Kernel = "avx2"
	// KernelAVX512 is a 14×32 AVX-512F micro-kernel (zmm) with the AVX2
	// elementwise loops. Its GEMM sums are bit-identical to KernelAVX2's
	// (same fused multiply-adds in the same order, the same kc blocking).
	KernelAVX512 Kernel = "avx512"
)

// KernelEnv is the environment variable that selects the kernel of a
// backend whose Options.Kernel is empty: "generic", "avx2" or "avx512"
// ("" or "auto": the best this machine supports). It is read once, when
// the backend is constructed.
const KernelEnv = "SDXL_CPU_KERNEL"

// Kernels lists the kernels this machine can run, portable Go first and
// the fastest last.
func Kernels() []Kernel {
	var ks []Kernel
	for _, mk := range microKernels {
		if mk.supported {
			ks = append(ks, mk.name)
		}
	}
	return ks
}

// BestKernel is the fastest kernel this machine supports.
func BestKernel() Kernel {
	ks := Kernels()
	return ks[len(ks)-1]
}

// resolveKernel picks the kernel for Options.Kernel k, falling back to
// the environment and then to the best supported.
func resolveKernel(k Kernel) (*microKernel, error) {
	src := "Options.Kernel"
	if k == "" {
		k = Kernel(strings.ToLower(strings.TrimSpace(os.Getenv(KernelEnv))))
		src = KernelEnv
	}
	if k == "" || k == "auto" {
		k = BestKernel()
	}
	for i := range microKernels {
		mk := &microKernels[i]
		if mk.name != k {
			continue
		}
		if !mk.supported {
			return nil, fmt.Errorf("cpu: %s=%s: this CPU (or its OS) does not support it; supported: %v", src, k, Kernels())
		}
		return mk, nil
	}
	return nil, fmt.Errorf("cpu: %s=%q: unknown kernel (want generic, avx2, avx512 or auto)", src, k)
}

// isa is the instruction-set level of the vectorised loops, ordered so
// that a comparison says whether a level is available.
type isa uint8

const (
	isaGeneric isa = iota
	isaAVX2
	isaAVX512
)

// avx2 reports whether the AVX2 loops may run.
func (v isa) avx2() bool { return v >= isaAVX2 }

// microKernel is one GEMM micro-kernel and the blocking that suits it.
// A call computes an mr×16 tile of C (one) or an mr×32 tile from two
// consecutive 16-column B panels bstride floats apart (two, when the
// kernel has it); both have kernelGo's contract otherwise.
type microKernel struct {
	name      Kernel
	isa       isa
	supported bool
	mr        int // rows of an A micro-panel
	mc        int // rows of C per GEMM job, a multiple of mr
	one       func(k int, a, b, c *float32, ldc int, acc bool)
	two       func(k int, a, b, c *float32, ldc, bstride int, acc bool)
	// direct is the widest tile (16·panelStep columns) reading row kk of B
	// at b + offs[kk] floats: a convolution's input read in place. nil
	// where the kernel has none (convolutions then pack B).
	direct func(k int, a, b, c *float32, ldc int, offs *int32, acc bool)
}

// panelStep is how many B panels one call of the widest tile covers.
func (mk *microKernel) panelStep() int {
	if mk.two != nil {
		return 2
	}
	return 1
}

// genericKernel is the portable micro-kernel, present on every machine.
var genericKernel = microKernel{name: KernelGeneric, isa: isaGeneric, supported: true, mr: gemmMR, mc: gemmMC, one: kernelGo}

func (v isa) String() string {
	switch v {
	case isaAVX2:
		return "ymm"
	case isaAVX512:
		return "zmm"
	}
	return "scalar"
}
