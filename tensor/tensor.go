// Package tensor defines the engine's n-dimensional array and the Backend
// interface that every compute backend implements.
//
// A Tensor is a shape, a dtype and an opaque storage handle owned by exactly
// one Backend. Model code never reads a tensor's memory element by element:
// it calls Backend ops, so the same UNet, VAE and CLIP code runs on the pure-Go
// CPU backend (the numerical oracle) and on the CUDA backend. Data crosses the
// host boundary only through Backend.FromFloat32 and Backend.ToFloat32.
//
// Every tensor is dense and row-major (C order). Ops that change layout
// (Permute, Slice, Concat) materialise a new tensor; Reshape is free.
//
// A tensor whose Backend is nil is a "meta" tensor: it has a shape and dtype
// but no storage. Models are first built from their configs out of meta
// tensors, which lets loaders check every key and shape (and count
// parameters) before any weight is read.
package tensor

import (
	"fmt"
	"slices"
	"strings"
)

// DType is the element type of a tensor's storage.
type DType uint8

const (
	F32 DType = iota
	F16
	BF16
)

func (d DType) String() string {
	switch d {
	case F32:
		return "F32"
	case F16:
		return "F16"
	case BF16:
		return "BF16"
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Size is the number of bytes one element occupies.
func (d DType) Size() int {
	if d == F32 {
		return 4
	}
	return 2
}

// ParseDType accepts "f32", "f16", "bf16" (any case, also "float32" etc.).
func ParseDType(s string) (DType, error) {
	switch strings.ToLower(s) {
	case "f32", "float32", "fp32":
		return F32, nil
	case "f16", "float16", "fp16", "half":
		return F16, nil
	case "bf16", "bfloat16":
		return BF16, nil
	}
	return F32, fmt.Errorf("unknown dtype %q (want f32, f16 or bf16)", s)
}

// Shape is a list of dimension sizes, outermost first.
type Shape []int

// Numel is the number of elements (1 for a 0-d shape).
func (s Shape) Numel() int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// Equal reports whether two shapes are identical.
func (s Shape) Equal(o Shape) bool {
	if len(s) != len(o) {
		return false
	}
	for i := range s {
		if s[i] != o[i] {
			return false
		}
	}
	return true
}

// Clone returns a copy that does not alias s.
func (s Shape) Clone() Shape { return append(Shape(nil), s...) }

func (s Shape) String() string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// Tensor is a dense row-major array living on one Backend.
type Tensor struct {
	shape   Shape
	dtype   DType
	backend Backend
	// Storage is the backend's handle for the data (a []float32 on the CPU
	// backend, a device pointer on CUDA). Only the owning backend reads it.
	Storage any
	// borrowed marks a view made by Scope.Borrow (and its reshapes): ops
	// of a scope read it without consuming it.
	borrowed bool
}

// New wraps backend storage into a tensor. Backends call it; model code
// obtains tensors from Backend methods.
func New(b Backend, shape Shape, dt DType, storage any) *Tensor {
	return &Tensor{shape: shape.Clone(), dtype: dt, backend: b, Storage: storage}
}

// Meta returns a storage-less tensor that only records shape and dtype.
func Meta(dt DType, shape ...int) *Tensor {
	return &Tensor{shape: Shape(shape).Clone(), dtype: dt}
}

// Shape returns the tensor's shape. Callers must not modify it.
func (t *Tensor) Shape() Shape { return t.shape }

// Dim returns dimension i; negative i counts from the end.
func (t *Tensor) Dim(i int) int {
	if i < 0 {
		i += len(t.shape)
	}
	return t.shape[i]
}

// Rank is the number of dimensions.
func (t *Tensor) Rank() int { return len(t.shape) }

// DType returns the storage element type.
func (t *Tensor) DType() DType { return t.dtype }

// Numel is the number of elements.
func (t *Tensor) Numel() int { return t.shape.Numel() }

// Backend returns the owning backend, or nil for a meta tensor.
func (t *Tensor) Backend() Backend { return t.backend }

// IsMeta reports whether the tensor has no storage.
func (t *Tensor) IsMeta() bool { return t.backend == nil }

func (t *Tensor) String() string {
	return fmt.Sprintf("Tensor(%s, %s)", t.shape, t.dtype)
}

// Reshape returns a view with a new shape over the same storage. One
// dimension may be -1 and is inferred. It panics on a size mismatch, which
// is always a programming error in model code.
func (t *Tensor) Reshape(shape ...int) *Tensor {
	s := Shape(shape).Clone()
	infer := -1
	known := 1
	for i, d := range s {
		if d == -1 {
			if infer >= 0 {
				panic("tensor: Reshape with two -1 dimensions")
			}
			infer = i
			continue
		}
		known *= d
	}
	if infer >= 0 {
		if known == 0 || t.Numel()%known != 0 {
			panic(fmt.Sprintf("tensor: cannot reshape %s to %v", t.shape, shape))
		}
		s[infer] = t.Numel() / known
	}
	if s.Numel() != t.Numel() {
		panic(fmt.Sprintf("tensor: cannot reshape %s to %v", t.shape, shape))
	}
	return &Tensor{shape: s, dtype: t.dtype, backend: t.backend, Storage: t.Storage, borrowed: t.borrowed}
}

// Free releases the tensor's storage back to its backend. Using the tensor
// afterwards is an error. Freeing is optional on the CPU backend (the garbage
// collector reclaims memory) but keeps GPU memory bounded.
func (t *Tensor) Free() {
	if t == nil || t.backend == nil || t.Storage == nil {
		return
	}
	t.backend.Free(t)
	t.Storage = nil
}

// FreeAll frees each tensor of ts once; nil and repeated entries are
// allowed (a struct of results that may alias one another frees them with
// one call).
func FreeAll(ts ...*Tensor) {
	for i, t := range ts {
		if t != nil && !slices.Contains(ts[:i], t) {
			t.Free()
		}
	}
}
