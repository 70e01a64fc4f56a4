package cpu

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/sdxl-go/sdxl/tensor"
)

func randTensor(b *Backend, r *rand.Rand, dt tensor.DType, shape ...int) *tensor.Tensor {
	return b.FromFloat32(dt, shape, randSlice(r, tensor.Shape(shape).Numel()))
}

func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: element %d = %v, want %v", what, i, got[i], want[i])
		}
	}
}

// TestHalfStorage checks that F16 and BF16 tensors hold 16-bit patterns
// (half the bytes) with the values RoundF16/RoundBF16 give, and survive
// every way in and out.
func TestHalfStorage(t *testing.T) {
	forEachKernel(t, Options{}, func(t *testing.T, b *Backend) {
		r := rand.New(rand.NewPCG(1, 2))
		src := randSlice(r, 37)
		src = append(src, 0, float32(math.Inf(1)), 1e-7, 70000, -3e-41)
		for _, dt := range []tensor.DType{tensor.F16, tensor.BF16} {
			round := RoundF16
			if dt == tensor.BF16 {
				round = RoundBF16
			}
			want := make([]float32, len(src))
			for i, v := range src {
				want[i] = round(v)
			}
			x := b.FromFloat32(dt, tensor.Shape{len(src)}, src)
			if s := stor("", x); s.h == nil || s.f != nil {
				t.Fatalf("%v tensor not stored in 16 bits", dt)
			}
			sameBits(t, dt.String()+" round trip", b.ToFloat32(x), want)
			sameBits(t, dt.String()+" cast to F32", b.ToFloat32(b.Cast(b.FromFloat32(tensor.F32, tensor.Shape{len(src)}, src), dt)), want)
			sameBits(t, dt.String()+" Embedding", b.ToFloat32(b.Embedding(x.Reshape(-1, 1), []int32{3, 0, 41})), []float32{want[3], want[0], want[41]})
		}
	})
}

// TestHalfWeights checks the promise of --dtype f16 on the CPU: Linear and
// Conv2D with F16/BF16 weights and F32 activations give exactly the F32
// results of the rounded weights (widened while packing, computed in
// float32), on every kernel.
func TestHalfWeights(t *testing.T) {
	forEachKernel(t, Options{}, func(t *testing.T, b *Backend) {
		r := rand.New(rand.NewPCG(3, 4))
		for _, dt := range []tensor.DType{tensor.F16, tensor.BF16} {
			x := randTensor(b, r, tensor.F32, 2, 37, 300)
			wh := randTensor(b, r, dt, 70, 300)
			w32 := b.FromFloat32(tensor.F32, wh.Shape(), b.ToFloat32(wh))
			bias := randTensor(b, r, tensor.F32, 70)
			for range 2 { // packed on first use, reused after
				got := b.Linear(x, wh, bias)
				if got.DType() != tensor.F32 {
					t.Fatalf("Linear output %v, want F32", got.DType())
				}
				sameBits(t, dt.String()+" Linear", b.ToFloat32(got), b.ToFloat32(b.Linear(x, w32, bias)))
			}
			xc := randTensor(b, r, tensor.F32, 2, 5, 9, 11)
			ch := randTensor(b, r, dt, 17, 5, 3, 3)
			c32 := b.FromFloat32(tensor.F32, ch.Shape(), b.ToFloat32(ch))
			cb := randTensor(b, r, tensor.F32, 17)
			for range 2 {
				sameBits(t, dt.String()+" Conv2D", b.ToFloat32(b.Conv2D(xc, ch, cb, 1, 1)), b.ToFloat32(b.Conv2D(xc, c32, cb, 1, 1)))
			}
		}
	})
}

// TestPackedOnce checks that a Linear or Conv2D weight is packed at first
// use and then held only in packed form (once), that reading it back
// unpacks the same values, and that the packed form is reused.
func TestPackedOnce(t *testing.T) {
	b := New()
	r := rand.New(rand.NewPCG(5, 6))
	for _, dt := range []tensor.DType{tensor.F32, tensor.F16} {
		w := randTensor(b, r, dt, 33, 40)
		vals := b.ToFloat32(w)
		x := randTensor(b, r, tensor.F32, 3, 40)
		y1 := b.ToFloat32(b.Linear(x, w, nil))
		s := stor("", w)
		pw := s.packed
		if pw == nil || s.f != nil || s.h != nil {
			t.Fatalf("%v: after Linear: packed %v, row-major copies f=%v h=%v", dt, pw != nil, s.f != nil, s.h != nil)
		}
		sameBits(t, "unpacked weight", b.ToFloat32(w), vals)
		sameBits(t, "second Linear", b.ToFloat32(b.Linear(x, w, nil)), y1)
		if s.packed != pw {
			t.Fatalf("%v: the weight was packed again", dt)
		}
		// The same storage as a conv weight re-packs for the conv layout.
		cw := w.Reshape(33, 40, 1, 1)
		xc := randTensor(b, r, tensor.F32, 1, 40, 2, 3)
		want := b.Conv2D(xc, b.FromFloat32(dt, cw.Shape(), vals), nil, 1, 0)
		sameBits(t, "conv after linear", b.ToFloat32(b.Conv2D(xc, cw, nil, 1, 0)), b.ToFloat32(want))
		sameBits(t, "linear after conv", b.ToFloat32(b.Linear(x, w, nil)), y1)
	}
}

// TestReplacedWeightRepacks is the LoRA-merge case: the merged weight is a
// new tensor (ops never write their inputs), so its first use packs the
// merged values; the old weight keeps computing with its own.
func TestReplacedWeightRepacks(t *testing.T) {
	forEachKernel(t, Options{}, func(t *testing.T, b *Backend) {
		r := rand.New(rand.NewPCG(7, 8))
		x := randTensor(b, r, tensor.F32, 5, 64)
		w := randTensor(b, r, tensor.F32, 48, 64)
		old := b.ToFloat32(b.Linear(x, w, nil))
		merged := b.Add(w, b.Scale(randTensor(b, r, tensor.F32, 48, 64), 0.5))
		fresh := b.FromFloat32(tensor.F32, merged.Shape(), b.ToFloat32(merged))
		sameBits(t, "merged", b.ToFloat32(b.Linear(x, merged, nil)), b.ToFloat32(b.Linear(x, fresh, nil)))
		sameBits(t, "old weight", b.ToFloat32(b.Linear(x, w, nil)), old)
		// The same for a conv weight.
		xc := randTensor(b, r, tensor.F32, 1, 4, 6, 6)
		cw := randTensor(b, r, tensor.F32, 8, 4, 3, 3)
		b.Conv2D(xc, cw, nil, 1, 1)
		cm := b.Add(cw, cw)
		sameBits(t, "merged conv", b.ToFloat32(b.Conv2D(xc, cm, nil, 1, 1)), b.ToFloat32(b.Conv2D(xc, b.FromFloat32(tensor.F32, cm.Shape(), b.ToFloat32(cm)), nil, 1, 1)))
	})
}

// TestSharedWeightAcrossKernels packs one conv weight for backends with
// different micro-kernels (different A panel heights) in turn.
func TestSharedWeightAcrossKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	base := New()
	xc := randTensor(base, r, tensor.F32, 1, 7, 5, 5)
	cw := randTensor(base, r, tensor.F32, 30, 7, 3, 3)
	ref := b32(base, base.Conv2D(xc, base.FromFloat32(tensor.F32, cw.Shape(), base.ToFloat32(cw)), nil, 1, 1))
	for range 2 {
		for _, k := range Kernels() {
			b := NewWithOptions(Options{Kernel: k})
			got := b32(b, b.Conv2D(xc, cw, nil, 1, 1))
			for i := range got {
				if d := math.Abs(float64(got[i] - ref[i])); d > 1e-5*(1+math.Abs(float64(ref[i]))) {
					t.Fatalf("%s: element %d = %v, want %v", k, i, got[i], ref[i])
				}
			}
		}
	}
}

func b32(b *Backend, t *tensor.Tensor) []float32 { return b.ToFloat32(t) }

// TestConcurrentFirstUse runs the first Linear of a weight on many
// goroutines at once (run with -race): one packs, all agree.
func TestConcurrentFirstUse(t *testing.T) {
	b := New()
	r := rand.New(rand.NewPCG(11, 12))
	vals := randSlice(r, 64*96)
	x := randTensor(b, r, tensor.F32, 9, 96)
	want := b.ToFloat32(b.Linear(x, b.FromFloat32(tensor.F32, tensor.Shape{64, 96}, vals), nil))
	w := b.FromFloat32(tensor.F32, tensor.Shape{64, 96}, vals)
	var wg sync.WaitGroup
	outs := make([][]float32, 8)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				outs[i] = b.ToFloat32(b.Linear(x, w, nil))
			} else {
				outs[i] = b.ToFloat32(b.Add(w, w)) // a reader while packing
			}
		}()
	}
	wg.Wait()
	for i, o := range outs {
		if i%2 == 0 {
			sameBits(t, "concurrent Linear", o, want)
		} else {
			for j := range o {
				if o[j] != 2*vals[j] {
					t.Fatalf("concurrent reader: element %d = %v, want %v", j, o[j], 2*vals[j])
				}
			}
		}
	}
}
