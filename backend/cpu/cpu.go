// Package cpu is the pure-Go tensor.Backend: the numerical oracle of the
// engine. Every tensor's storage is a dense row-major []float32 whatever
// its dtype; F16 and BF16 tensors hold values already rounded to that
// precision (round to nearest even) when they are created and after every
// op, so the backend models reduced-precision storage while computing in
// float32 (float64 for the statistics of norms and reductions).
//
// Ops run on goroutines bounded by the backend's thread count over
// independent work (GEMM blocks, batch items, rows, groups). GEMMs go
// through the package's packed, register-tiled SGEMM (gemm.go).
//
// # Kernels
//
// The hot loops exist at three instruction-set levels (Kernel): portable
// Go ("generic", also what the purego build tag and non-amd64 machines
// run), AVX2+FMA ("avx2": a 6×16 ymm micro-kernel) and AVX-512F
// ("avx512": a 14×32 zmm micro-kernel, the elementwise loops staying
// AVX2). A backend uses the best level that CPUID and the OS (XCR0 saving
// the ymm, or opmask and zmm, state) allow, unless Options.Kernel or the
// SDXL_CPU_KERNEL environment variable (read once, when the backend is
// built) names another:
//
//	SDXL_CPU_KERNEL=avx2 go test ./...   # the backend as before AVX-512
//
// The avx2 and avx512 GEMMs are bit-identical (the same fused
// multiply-adds in the same order); generic rounds each product before
// adding, and its exp, GELU and SiLU use math.Exp and math.Erfc, so its
// results differ in the last bits. Forcing avx2 reproduces results from
// before the AVX-512 kernel existed bit for bit.
package cpu

import (
	"fmt"
	"math"
	"runtime"

	"github.com/x448/float16"

	"github.com/sdxl-go/sdxl/tensor"
)

// Backend is the CPU backend. Its only state after construction is a cache
// of GEMM packing buffers; it is safe for concurrent use by several
// goroutines.
type Backend struct {
	threads int
	mk      *microKernel // the GEMM micro-kernel
	v       isa          // the level of the vectorised loops (mk.isa)
	pools   *gemmPools
	outs    *outPool
	// noRecycle: Free does not pool buffers (Options.NoRecycle).
	noRecycle bool
	// poison makes every new output allocation start as NaN, so that a test
	// notices an op that forgets to write part of its output.
	poison bool
}

// Options configure a Backend. The zero value is the default backend.
type Options struct {
	// Threads bounds the goroutines one op uses; <= 0 means GOMAXPROCS.
	Threads int
	// PoisonAllocations fills every op's output buffer with NaN before the
	// op writes it (a debug aid for conformance tests; slower).
	PoisonAllocations bool
	// NoRecycle makes Free drop buffers instead of recycling them as later
	// outputs (see Backend.Free): for measuring the heap model code needs.
	NoRecycle bool
	// Kernel selects the instruction set of the hot loops; "" means the
	// SDXL_CPU_KERNEL environment variable, or the best this machine
	// supports when that is unset or "auto".
	Kernel Kernel
}

// New returns a CPU backend using GOMAXPROCS threads. It panics when
// SDXL_CPU_KERNEL names an unknown or unsupported kernel (Open returns
// that as an error).
func New() *Backend { return NewWithOptions(Options{}) }

// NewWithThreads returns a CPU backend whose ops use at most n goroutines
// (n <= 0 means GOMAXPROCS); it panics where New does.
func NewWithThreads(n int) *Backend { return NewWithOptions(Options{Threads: n}) }

// NewWithOptions returns a CPU backend configured by o. It panics when
// the kernel is unknown or unsupported; use Open to get that as an error.
func NewWithOptions(o Options) *Backend {
	b, err := Open(o)
	if err != nil {
		panic(err)
	}
	return b
}

// Open returns a CPU backend configured by o, or an error naming the
// option or environment variable when the requested kernel is unknown or
// this machine cannot run it.
func Open(o Options) (*Backend, error) {
	mk, err := resolveKernel(o.Kernel)
	if err != nil {
		return nil, err
	}
	t := o.Threads
	if t <= 0 {
		t = runtime.GOMAXPROCS(0)
	}
	return &Backend{threads: t, mk: mk, v: mk.isa, pools: newGemmPools(), outs: &outPool{}, poison: o.PoisonAllocations, noRecycle: o.NoRecycle}, nil
}

// Kernel is the instruction set this backend's hot loops run on.
func (b *Backend) Kernel() Kernel { return b.mk.name }

var _ tensor.Backend = (*Backend)(nil)
var _ tensor.GroupNormSiLUer = (*Backend)(nil)
var _ tensor.Linearer = (*Backend)(nil)

// Name implements tensor.Backend.
func (b *Backend) Name() string { return "cpu" }

// Threads reports how many goroutines one op may use.
func (b *Backend) Threads() int { return b.threads }

// Err implements tensor.Backend; the CPU backend never fails asynchronously.
func (b *Backend) Err() error { return nil }

// Free implements tensor.Backend: a large float32 buffer that is not a
// packed weight goes back to the backend for the output of a later op
// (see outPool); the garbage collector reclaims everything else. As on
// CUDA, a freed tensor and every Reshape view of it must not be used
// again.
func (b *Backend) Free(t *tensor.Tensor) {
	s, ok := t.Storage.(*storage)
	if !ok {
		return
	}
	s.mu.Lock()
	f := s.f
	s.f, s.n = nil, 0
	s.mu.Unlock()
	if f != nil && !b.noRecycle {
		b.outs.put(f)
	}
}

// alloc returns an output buffer of n elements that the caller overwrites
// completely (NaN-filled in poison mode).
func (b *Backend) alloc(n int) []float32 {
	s := b.outs.get(n)
	if s == nil {
		s = make([]float32, n)
	}
	if b.poison {
		nan := float32(math.NaN())
		for i := range s {
			s[i] = nan
		}
	}
	return s
}

// wrap turns a freshly computed buffer into a tensor of dtype dt (F16
// and BF16 values are rounded to nearest even and stored in 16 bits).
func (b *Backend) wrap(dt tensor.DType, shape tensor.Shape, data []float32) *tensor.Tensor {
	switch dt {
	case tensor.F32:
		return tensor.New(b, shape, dt, newF32(data))
	case tensor.F16, tensor.BF16:
		return tensor.New(b, shape, dt, b.narrow(dt, data))
	}
	panic(fmt.Sprintf("cpu: unsupported dtype %v", dt))
}

// optShape is the shape of an optional tensor (nil for none).
func optShape(t *tensor.Tensor) tensor.Shape {
	if t == nil {
		return nil
	}
	return t.Shape()
}

// Zeros implements tensor.Backend.
func (b *Backend) Zeros(dt tensor.DType, shape ...int) *tensor.Tensor {
	s := tensor.Shape(shape)
	for _, d := range s {
		if d < 0 {
			panic(fmt.Sprintf("cpu: Zeros: negative dimension in %v", s))
		}
	}
	if dt == tensor.F32 {
		return tensor.New(b, s, dt, newF32(make([]float32, s.Numel())))
	}
	return b.wrap(dt, s, make([]float32, s.Numel()))
}

// FromFloat32 implements tensor.Backend.
func (b *Backend) FromFloat32(dt tensor.DType, shape tensor.Shape, src []float32) *tensor.Tensor {
	if len(src) != shape.Numel() {
		panic(fmt.Sprintf("cpu: FromFloat32: %d values for shape %v (%d elements)", len(src), shape, shape.Numel()))
	}
	if dt != tensor.F32 {
		return b.wrap(dt, shape, src) // narrowing copies
	}
	d := b.alloc(len(src))
	copy(d, src)
	return b.wrap(dt, shape, d)
}

// ToFloat32 implements tensor.Backend.
func (b *Backend) ToFloat32(t *tensor.Tensor) []float32 {
	f, fresh := b.values("ToFloat32", t)
	if fresh {
		return f
	}
	return append([]float32(nil), f...)
}

// Cast implements tensor.Backend.
func (b *Backend) Cast(x *tensor.Tensor, dt tensor.DType) *tensor.Tensor {
	xs := b.data("Cast", x)
	if dt != tensor.F32 {
		return b.wrap(dt, x.Shape(), xs) // narrowing copies
	}
	out := b.alloc(len(xs))
	copy(out, xs)
	return b.wrap(dt, x.Shape(), out)
}

// RoundF16 rounds v to the nearest float16 (ties to even), as stored by an
// F16 tensor.
func RoundF16(v float32) float32 { return float16.Fromfloat32(v).Float32() }

// RoundBF16 rounds v to the nearest bfloat16 (ties to even), as stored by a
// BF16 tensor. NaN stays NaN.
func RoundBF16(v float32) float32 {
	u := math.Float32bits(v)
	if u&0x7fffffff > 0x7f800000 { // NaN: keep it quiet, drop the low bits
		return math.Float32frombits((u | 0x00400000) & 0xffff0000)
	}
	u += 0x7fff + (u>>16)&1
	return math.Float32frombits(u & 0xffff0000)
}
