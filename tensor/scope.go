package tensor

import (
	"context"
	"fmt"
)

// Scope is a Backend that owns the tensors its ops return and frees each
// one as soon as an op has read it for the last time, so that a layer's
// forward pass reads like the math and still holds no more memory than
// hand-placed frees would:
//
//	func (r *Block) Forward(b tensor.Backend, x *tensor.Tensor) *tensor.Tensor {
//		s := tensor.NewScope(b)
//		defer s.Release()
//		h := r.Conv.Forward(s, r.Norm.Forward(s, s.Borrow(x))) // the norm's output is freed by the conv
//		return s.Keep(s.Add(x, h))                             // h is freed by the add
//	}
//
// The rules:
//
//   - Every tensor an op of the scope returns is a temporary of the scope.
//   - An op consumes the temporaries it reads: they are freed as soon as it
//     returns. A temporary read more than once is read through Borrow by
//     every op but the last. Tensors no scope owns (the inputs of a caller
//     that uses a plain Backend, weights) are never freed.
//   - NewScope on a Scope (a layer called with its caller's scope) makes a
//     child scope. The caller's temporaries that the layer reads are
//     consumed like its own: a layer frees what it is handed unless the
//     caller passes a Borrow (a skip connection it reads again later).
//   - Keep hands a result to the parent scope, where it is a temporary
//     like any other (or, under a plain Backend, to the caller, who frees
//     it as before).
//   - Release frees what the scope still owns: temporaries never consumed,
//     everything after an early return or a panic.
//
// A scope made by NewScopeContext also stops the pass when its context
// ends: the next op panics with a value that Exit, deferred by the function
// that made the scope, turns into the context's error after freeing every
// temporary. So a long forward pass notices cancellation between any two
// ops without checks in the model code.
//
// Reading a consumed tensor panics, naming the op. Ops must not be called
// concurrently on one scope. Backends must use comparable Storage handles
// (a pointer), which the scope keys its bookkeeping by, so that a
// reshaped view and its tensor are one temporary.
type Scope struct {
	b      Backend // the backend that computes (never a Scope)
	parent *Scope
	ctx    context.Context
	// boundary stops the ownership search of s and its children (see
	// NewScopeContext).
	boundary bool
	// owned maps the storage of each temporary to the tensor registered
	// for it.
	owned map[any]*Tensor
	// borrows is shared by a scope tree: the views Borrow made, by
	// storage, so that freeing a storage also detaches its views (a live
	// view would keep CPU memory from the garbage collector).
	borrows map[any][]*Tensor
}

// NewScope returns a scope over b; on a Scope it returns a child of it.
func NewScope(b Backend) *Scope {
	s := &Scope{b: b, owned: map[any]*Tensor{}}
	if p, ok := b.(*Scope); ok {
		s.b, s.parent, s.ctx, s.borrows = p.b, p, p.ctx, p.borrows
	} else {
		s.borrows = map[any][]*Tensor{}
	}
	return s
}

// NewScopeContext is the scope of a model's entry point (a UNet or VAE
// forward pass): its ops stop the pass once ctx ends (see Scope), and
// neither it nor its children consume tensors of the scopes above it, so
// that the entry point's inputs stay the caller's even when it passes its
// own scope. The function that makes it must defer Exit.
func NewScopeContext(ctx context.Context, b Backend) *Scope {
	s := NewScope(b)
	s.ctx, s.boundary = ctx, true
	return s
}

// stop is the panic value of an op that found its scope's context ended.
type stop struct{ err error }

// Exit is Release for a scope made by NewScopeContext, deferred by the
// function that made it with a pointer to its error result: when an op
// stopped the pass because the context ended, Exit recovers and sets *errp
// to the context's error (errors.Is(err, context.Canceled) holds for a
// cancelled one). Other panics continue.
func (s *Scope) Exit(errp *error) {
	s.Release()
	if r := recover(); r != nil {
		st, ok := r.(stop)
		if !ok {
			panic(r)
		}
		if errp != nil {
			*errp = st.err
		}
	}
}

// Release frees every temporary the scope still owns.
func (s *Scope) Release() {
	for k, t := range s.owned {
		delete(s.owned, k)
		s.free(k, t)
	}
}

// Keep hands t, a temporary of s, to the parent scope (or, without one,
// to the caller) and returns it. Tensors s does not own are returned as
// they are.
func (s *Scope) Keep(t *Tensor) *Tensor {
	if t == nil || t.Storage == nil {
		return t
	}
	reg, ok := s.owned[t.Storage]
	if !ok {
		return t
	}
	delete(s.owned, t.Storage)
	if s.parent != nil {
		if !t.borrowed {
			reg = t
		}
		s.parent.owned[t.Storage] = reg
	}
	return t
}

// Borrow returns t for a read that must not consume it: a view of the same
// data that ops read without freeing (and so are its reshapes). A tensor
// read by several ops is borrowed by every one but the last, which
// consumes it. A tensor no scope of the tree owns is returned as it is.
func (s *Scope) Borrow(t *Tensor) *Tensor {
	if t == nil || t.Storage == nil || s.owner(t) == nil {
		return t
	}
	v := &Tensor{shape: t.shape, dtype: t.dtype, backend: t.backend, Storage: t.Storage, borrowed: true}
	s.borrows[t.Storage] = append(s.borrows[t.Storage], v)
	return v
}

// Own makes t a temporary of s, for a function documented to free what it
// is handed: its ops then consume t like their own results. A borrowed
// view stays borrowed.
func (s *Scope) Own(t *Tensor) *Tensor {
	if t == nil || t.Storage == nil || t.backend == nil || t.borrowed {
		return t
	}
	k := t.Storage
	if o := s.owner(t); o != nil {
		reg := o.owned[k]
		delete(o.owned, k)
		s.owned[k] = reg
		return t
	}
	s.owned[k] = t
	return t
}

// owner returns the scope of s's tree (s or an ancestor up to the first
// boundary) that owns t's storage, or nil.
func (s *Scope) owner(t *Tensor) *Scope {
	for o := s; o != nil; o = o.parent {
		if _, ok := o.owned[t.Storage]; ok {
			return o
		}
		if o.boundary {
			break
		}
	}
	return nil
}

// drop frees t, a temporary of o, and detaches t.
func (s *Scope) drop(o *Scope, t *Tensor) {
	k := t.Storage
	reg := o.owned[k]
	delete(o.owned, k)
	if reg != t {
		t.Storage = nil
	}
	s.free(k, reg)
}

// free releases storage k, registered as t, and detaches its views.
func (s *Scope) free(k any, t *Tensor) {
	t.Free()
	for _, v := range s.borrows[k] {
		v.Storage = nil
	}
	delete(s.borrows, k)
}

// enter checks an op's inputs and the context before the op runs.
func (s *Scope) enter(op string, in ...*Tensor) {
	for i, t := range in {
		if t != nil && t.backend != nil && t.Storage == nil {
			panic(fmt.Sprintf("tensor: %s: input %d (%s) was freed: an earlier op consumed it (read it through Scope.Borrow until its last use)", op, i, t))
		}
	}
	if s.ctx != nil {
		if err := s.ctx.Err(); err != nil {
			panic(stop{fmt.Errorf("stopped before %s: %w", op, err)})
		}
	}
}

// leave registers an op's output as a temporary of s and consumes its
// inputs.
func (s *Scope) leave(out *Tensor, in ...*Tensor) *Tensor {
	for _, t := range in {
		if t == nil || t.Storage == nil || (out != nil && t.Storage == out.Storage) || t.borrowed {
			continue
		}
		if o := s.owner(t); o != nil {
			s.drop(o, t)
		}
	}
	if out != nil && out.Storage != nil {
		s.owned[out.Storage] = out
	}
	return out
}

// unary runs a one-input op f.
func (s *Scope) unary(op string, x *Tensor, f func(*Tensor) *Tensor) *Tensor {
	s.enter(op, x)
	return s.leave(f(x), x)
}

// binary runs a two-input op f.
func (s *Scope) binary(op string, a, b *Tensor, f func(a, b *Tensor) *Tensor) *Tensor {
	s.enter(op, a, b)
	return s.leave(f(a, b), a, b)
}

// Name implements Backend.
func (s *Scope) Name() string { return s.b.Name() }

// Err implements Backend.
func (s *Scope) Err() error { return s.b.Err() }

// Free implements Backend: t is freed now, whoever owns it.
func (s *Scope) Free(t *Tensor) {
	if t == nil || t.Storage == nil {
		return
	}
	if o := s.owner(t); o != nil {
		s.drop(o, t)
		return
	}
	t.Free()
}

// Zeros implements Backend.
func (s *Scope) Zeros(dt DType, shape ...int) *Tensor {
	s.enter("Zeros")
	return s.leave(s.b.Zeros(dt, shape...))
}

// FromFloat32 implements Backend.
func (s *Scope) FromFloat32(dt DType, shape Shape, data []float32) *Tensor {
	s.enter("FromFloat32")
	return s.leave(s.b.FromFloat32(dt, shape, data))
}

// ToFloat32 implements Backend; like every op it consumes a temporary.
func (s *Scope) ToFloat32(t *Tensor) []float32 {
	s.enter("ToFloat32", t)
	out := s.b.ToFloat32(t)
	s.leave(nil, t)
	return out
}

// MatMul implements Backend.
func (s *Scope) MatMul(a, b *Tensor, transA, transB bool) *Tensor {
	s.enter("MatMul", a, b)
	return s.leave(s.b.MatMul(a, b, transA, transB), a, b)
}

// Conv2D implements Backend.
func (s *Scope) Conv2D(x, w, bias *Tensor, stride, padding int) *Tensor {
	s.enter("Conv2D", x, w, bias)
	return s.leave(s.b.Conv2D(x, w, bias, stride, padding), x, w, bias)
}

// GroupNorm implements Backend.
func (s *Scope) GroupNorm(x *Tensor, groups int, weight, bias *Tensor, eps float32) *Tensor {
	s.enter("GroupNorm", x, weight, bias)
	return s.leave(s.b.GroupNorm(x, groups, weight, bias, eps), x, weight, bias)
}

// GroupNormSiLU implements GroupNormSiLUer with b's fused op when it has
// one.
func (s *Scope) GroupNormSiLU(x *Tensor, groups int, weight, bias *Tensor, eps float32) *Tensor {
	s.enter("GroupNormSiLU", x, weight, bias)
	return s.leave(GroupNormSiLU(s.b, x, groups, weight, bias, eps), x, weight, bias)
}

// LayerNorm implements Backend.
func (s *Scope) LayerNorm(x, weight, bias *Tensor, eps float32) *Tensor {
	s.enter("LayerNorm", x, weight, bias)
	return s.leave(s.b.LayerNorm(x, weight, bias, eps), x, weight, bias)
}

// Attention implements Backend.
func (s *Scope) Attention(q, k, v, mask *Tensor, scale float32) *Tensor {
	s.enter("Attention", q, k, v, mask)
	return s.leave(s.b.Attention(q, k, v, mask, scale), q, k, v, mask)
}

// Softmax implements Backend.
func (s *Scope) Softmax(x *Tensor) *Tensor { return s.unary("Softmax", x, s.b.Softmax) }

// SiLU implements Backend.
func (s *Scope) SiLU(x *Tensor) *Tensor { return s.unary("SiLU", x, s.b.SiLU) }

// GELU implements Backend.
func (s *Scope) GELU(x *Tensor) *Tensor { return s.unary("GELU", x, s.b.GELU) }

// QuickGELU implements Backend.
func (s *Scope) QuickGELU(x *Tensor) *Tensor { return s.unary("QuickGELU", x, s.b.QuickGELU) }

// GEGLU implements Backend.
func (s *Scope) GEGLU(x *Tensor) *Tensor { return s.unary("GEGLU", x, s.b.GEGLU) }

// Add implements Backend.
func (s *Scope) Add(a, b *Tensor) *Tensor { return s.binary("Add", a, b, s.b.Add) }

// Mul implements Backend.
func (s *Scope) Mul(a, b *Tensor) *Tensor { return s.binary("Mul", a, b, s.b.Mul) }

// Scale implements Backend.
func (s *Scope) Scale(x *Tensor, f float32) *Tensor {
	s.enter("Scale", x)
	return s.leave(s.b.Scale(x, f), x)
}

// Concat implements Backend.
func (s *Scope) Concat(axis int, ts ...*Tensor) *Tensor {
	s.enter("Concat", ts...)
	return s.leave(s.b.Concat(axis, ts...), ts...)
}

// Slice implements Backend.
func (s *Scope) Slice(x *Tensor, axis, start, end int) *Tensor {
	s.enter("Slice", x)
	return s.leave(s.b.Slice(x, axis, start, end), x)
}

// Permute implements Backend.
func (s *Scope) Permute(x *Tensor, perm ...int) *Tensor {
	s.enter("Permute", x)
	return s.leave(s.b.Permute(x, perm...), x)
}

// Upsample implements Backend.
func (s *Scope) Upsample(x *Tensor, h, w int) *Tensor {
	s.enter("Upsample", x)
	return s.leave(s.b.Upsample(x, h, w), x)
}

// Embedding implements Backend.
func (s *Scope) Embedding(table *Tensor, ids []int32) *Tensor {
	s.enter("Embedding", table)
	return s.leave(s.b.Embedding(table, ids), table)
}

// Cast implements Backend.
func (s *Scope) Cast(x *Tensor, dt DType) *Tensor {
	s.enter("Cast", x)
	return s.leave(s.b.Cast(x, dt), x)
}

// Mean implements Backend.
func (s *Scope) Mean(x *Tensor, axis int) *Tensor {
	s.enter("Mean", x)
	return s.leave(s.b.Mean(x, axis), x)
}

// Linear implements Linearer with b's fused op when it has one.
func (s *Scope) Linear(x, w, bias *Tensor) *Tensor {
	s.enter("Linear", x, w, bias)
	return s.leave(Linear(s.b, x, w, bias), x, w, bias)
}

// AddMatMul implements AddMatMuler with b's fused op when it has one.
func (s *Scope) AddMatMul(c, a, b *Tensor) *Tensor {
	s.enter("AddMatMul", c, a, b)
	return s.leave(AddMatMul(s.b, c, a, b), c, a, b)
}

var (
	_ Backend         = (*Scope)(nil)
	_ GroupNormSiLUer = (*Scope)(nil)
	_ Linearer        = (*Scope)(nil)
	_ AddMatMuler     = (*Scope)(nil)
)
