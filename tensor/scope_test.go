package tensor_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/tensor"
	"github.com/sdxl-go/sdxl/tensor/backendtest"
)

func vec(b tensor.Backend, v ...float32) *tensor.Tensor {
	return b.FromFloat32(tensor.F32, tensor.Shape{len(v)}, v)
}

// TestScopeConsumes: an op frees the temporaries it reads as soon as it
// returns, borrowed reads do not, and tensors the scope did not make are
// never freed; Keep hands the result out.
func TestScopeConsumes(t *testing.T) {
	lb := backendtest.NewLive(cpu.New())
	x := vec(lb, 1, 2, 3, 4) // the caller's
	lb.Reset()
	s := tensor.NewScope(lb)
	a := s.Scale(x, 2)         // 16 bytes live
	c := s.Add(s.Borrow(a), a) // a is read twice: borrowed, then consumed
	out := s.Keep(s.Mul(c, x)) // c consumed; x is not the scope's
	if lb.Count() != 1 || lb.Peak != 2*16 {
		t.Errorf("%d tensors live, peak %d bytes; want the result alone, peak 32", lb.Count(), lb.Peak)
	}
	s.Release()
	if got := lb.ToFloat32(out); !slices.Equal(got, []float32{4, 16, 36, 64}) {
		t.Errorf("result %v", got)
	}
	if x.Storage == nil || out.Storage == nil || lb.Count() != 1 {
		t.Errorf("the input or the kept result was freed (%d live)", lb.Count())
	}
	// A reshaped borrow is still a borrow.
	s = tensor.NewScope(lb)
	y := s.Scale(x, 1)
	z := s.Mul(s.Borrow(y).Reshape(2, 2), s.Borrow(y).Reshape(2, 2))
	if y.Storage == nil || z.Storage == nil {
		t.Error("the reshaped borrow consumed its tensor")
	}
	s.Release()
	if y.Storage != nil || z.Storage != nil || lb.Count() != 1 {
		t.Errorf("Release left %d tensors live", lb.Count())
	}
}

// TestScopeChildren: a layer's scope consumes what its caller hands it
// unless borrowed, Keep makes the result the caller's temporary, Own
// adopts a plain tensor, and a context scope is a boundary.
func TestScopeChildren(t *testing.T) {
	lb := backendtest.NewLive(cpu.New())
	layer := func(b tensor.Backend, x *tensor.Tensor) *tensor.Tensor {
		s := tensor.NewScope(b)
		defer s.Release()
		return s.Keep(s.Add(s.Scale(s.Borrow(x), 3), x))
	}
	parent := tensor.NewScope(lb)
	h := parent.Scale(vec(parent, 1, 1), 1)
	skip := layer(parent, parent.Borrow(h)) // h survives
	h2 := layer(parent, h)                  // h is consumed inside
	if h.Storage != nil || skip.Storage == nil {
		t.Error("a handed temporary survived, or a borrowed one was freed")
	}
	parent.Add(skip, h2) // both were the parent's temporaries
	if skip.Storage != nil || h2.Storage != nil {
		t.Error("a kept result is not the parent's temporary")
	}
	plain := vec(lb, 5)
	parent.Scale(parent.Own(plain), 1)
	if plain.Storage != nil {
		t.Error("an owned plain tensor was not consumed")
	}
	entry := func(b tensor.Backend, x *tensor.Tensor) (out *tensor.Tensor, err error) {
		s := tensor.NewScopeContext(context.Background(), b)
		defer s.Exit(&err)
		return s.Keep(layer(s, x)), nil
	}
	in := parent.Scale(vec(parent, 2), 1)
	if _, err := entry(parent, in); err != nil || in.Storage == nil {
		t.Errorf("an entry point consumed its caller's input (err %v)", err)
	}
	parent.Release()
	if lb.Count() != 0 {
		t.Errorf("%d tensors live after Release", lb.Count())
	}
}

// TestScopeStop: once the context ends the next op stops the pass, Exit
// returns the context's error and frees every temporary.
func TestScopeStop(t *testing.T) {
	lb := backendtest.NewLive(cpu.New())
	x := vec(lb, 1, 2)
	lb.Reset()
	ctx, cancel := context.WithCancel(context.Background())
	ops := 0
	run := func() (_ *tensor.Tensor, err error) {
		s := tensor.NewScopeContext(ctx, lb)
		defer s.Exit(&err)
		h := x
		for range 10 {
			h = s.Add(h, x)
			if ops++; ops == 3 {
				cancel()
			}
		}
		return s.Keep(h), nil
	}
	out, err := run()
	if !errors.Is(err, context.Canceled) || out != nil || ops != 3 {
		t.Errorf("result %v, error %v after %d ops; want context.Canceled after 3", out, err, ops)
	}
	if lb.Count() != 0 {
		t.Errorf("%d tensors left live", lb.Count())
	}
	// Other panics pass through Exit.
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "was freed") {
			t.Errorf("panic %v, want the use-after-consume message", r)
		}
	}()
	func() (err error) {
		s := tensor.NewScopeContext(context.Background(), lb)
		defer s.Exit(&err)
		y := s.Scale(x, 1)
		s.Add(y, x)
		s.Add(y, x) // y was consumed
		return nil
	}()
}

func TestFreeAll(t *testing.T) {
	lb := backendtest.NewLive(cpu.New())
	a, b := vec(lb, 1), vec(lb, 2)
	tensor.FreeAll(a, nil, b, a)
	if lb.Count() != 0 || a.Storage != nil || b.Storage != nil {
		t.Errorf("%d tensors live", lb.Count())
	}
}

// A layer's forward pass on a Scope: each intermediate is freed by the op
// that reads it last, the input read twice is borrowed once, and the
// result is handed to the caller.
func ExampleScope() {
	b := cpu.New()
	x := b.FromFloat32(tensor.F32, tensor.Shape{3}, []float32{1, 2, 3})
	residual := func(b tensor.Backend, x *tensor.Tensor) *tensor.Tensor {
		s := tensor.NewScope(b)
		defer s.Release()
		h := s.SiLU(s.Scale(s.Borrow(x), 2)) // Scale's output is freed by SiLU
		return s.Keep(s.Add(x, h))           // h is freed by Add; x is the caller's
	}
	y := residual(b, x)
	defer y.Free()
	fmt.Printf("%.3f\n", b.ToFloat32(y))
	// Output: [2.762 5.928 8.985]
}
