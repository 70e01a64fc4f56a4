package cpu

import (
	"fmt"
	"math"
	"sync"

	"github.com/x448/float16"

	"github.com/sdxl-go/sdxl/tensor"
)

// storage is the memory behind a CPU tensor: Tensor.Storage holds a
// *storage, shared by Reshape views. F32 tensors keep float32 values, F16
// and BF16 tensors their 16-bit patterns (half the bytes); ops widen them
// to float32 and compute in float32.
//
// A storage is written only by the op that creates it (ops never modify
// their inputs), so it is immutable afterwards. That makes it safe to
// cache a packed form: the first time a tensor is the weight of a Linear
// or a Conv2D, its values are rearranged into the GEMM's panel layout
// (packWeight) and the row-major copy is dropped, so a weight is held once
// and never re-packed. Reading such a tensor any other way (ToFloat32, an
// elementwise op) unpacks a temporary row-major copy. Replacing a weight,
// as a LoRA merge does (w' = w + ΔW is a new tensor from Add), gives a new
// storage without a packed form; the old panels go with the old storage.
type storage struct {
	mu sync.Mutex
	dt tensor.DType
	n  int       // elements
	f  []float32 // F32 values in row-major order, or nil when packed
	h  []uint16  // F16/BF16 bit patterns in row-major order, or nil
	// packed is the data in a GEMM operand layout (see packWeight), or nil.
	packed *packedWeight
}

// newF32 wraps float32 values as an F32 tensor's storage.
func newF32(f []float32) *storage { return &storage{dt: tensor.F32, n: len(f), f: f} }

// newHalf wraps 16-bit patterns as an F16 or BF16 tensor's storage.
func newHalf(dt tensor.DType, h []uint16) *storage { return &storage{dt: dt, n: len(h), h: h} }

// stor returns t's storage, panicking (a programming error) when t is
// nil, freed, a meta tensor or not a CPU tensor.
func stor(op string, t *tensor.Tensor) *storage {
	if t == nil {
		panic(fmt.Sprintf("cpu: %s: nil tensor", op))
	}
	s, ok := t.Storage.(*storage)
	if !ok {
		panic(fmt.Sprintf("cpu: %s: %v has no CPU storage (meta, freed or from another backend)", op, t))
	}
	if s.n != t.Numel() {
		panic(fmt.Sprintf("cpu: %s: %v has %d stored elements", op, t, s.n))
	}
	return s
}

// data returns t's values as float32 in row-major order: F32 storage
// itself (callers must not write it), or a widened or unpacked copy.
func (b *Backend) data(op string, t *tensor.Tensor) []float32 {
	f, _ := b.values(op, t)
	return f
}

// values is data, also saying whether the slice is a fresh copy.
func (b *Backend) values(op string, t *tensor.Tensor) (f []float32, fresh bool) {
	s := stor(op, t)
	s.mu.Lock()
	f, h, pw := s.f, s.h, s.packed
	s.mu.Unlock()
	switch {
	case h != nil:
		out := make([]float32, len(h))
		b.v.widen(s.dt, out, h)
		return out, true
	case pw != nil && f == nil:
		return b.unpack(pw, s.n), true
	}
	return f, false
}

// halfBits returns the row-major 16-bit patterns of a half-precision
// storage that is not packed, or nil.
func (s *storage) halfBits() []uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.h
}

// narrow stores float32 values as an F16 or BF16 storage, rounding to
// nearest even.
func (b *Backend) narrow(dt tensor.DType, f []float32) *storage {
	h := make([]uint16, len(f))
	b.parallel(len(f), 1<<14, func(lo, hi int) { narrowHalf(dt, h[lo:hi], f[lo:hi]) })
	return newHalf(dt, h)
}

// narrowHalf rounds src to dt's 16-bit patterns (nearest even; NaN stays
// NaN).
func narrowHalf(dt tensor.DType, dst []uint16, src []float32) {
	if dt == tensor.F16 {
		for i, v := range src {
			dst[i] = float16.Fromfloat32(v).Bits()
		}
		return
	}
	for i, v := range src {
		dst[i] = uint16(math.Float32bits(RoundBF16(v)) >> 16)
	}
}

// widenHalf is the portable widening of 16-bit patterns to float32.
func widenHalf(dt tensor.DType, dst []float32, src []uint16) {
	if dt == tensor.F16 {
		for i, h := range src {
			dst[i] = float16.Frombits(h).Float32()
		}
		return
	}
	for i, h := range src {
		dst[i] = math.Float32frombits(uint32(h) << 16)
	}
}

// widen converts 16-bit patterns of dt to float32 (vectorised where the
// CPU has F16C and AVX2).
func (v isa) widen(dt tensor.DType, dst []float32, src []uint16) {
	i := widenVec(v, dt, dst, src)
	widenHalf(dt, dst[i:len(src)], src[i:])
}
