package cpu

import (
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/tensor"
)

// TestFreeRecycles checks that a freed output's buffer serves the next op
// of its size, that the result is right, and that using a freed tensor (or
// a view of it) panics instead of reading a recycled buffer.
func TestFreeRecycles(t *testing.T) {
	b := New()
	n := outPoolMin
	x := b.FromFloat32(tensor.F32, tensor.Shape{n}, make([]float32, n))
	y := b.Scale(x, 2)
	view := y.Reshape(1, n)
	buf := &stor("", y).f[0]
	y.Free()
	x.Free() // not pooled twice: x's buffer joins y's
	x = b.FromFloat32(tensor.F32, tensor.Shape{n}, make([]float32, n))
	w := b.Scale(x, 3) // takes a freed buffer
	if &stor("", w).f[0] != buf && &stor("", x).f[0] != buf {
		t.Error("the freed buffer was not reused")
	}
	if got := b.ToFloat32(w); got[0] != 0 || got[n-1] != 0 {
		t.Fatalf("Scale into a recycled buffer = %v, %v", got[0], got[n-1])
	}
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(r.(string), "stored elements") {
				t.Errorf("use of a view of a freed tensor: recover() = %v", r)
			}
		}()
		b.Scale(view, 1)
	}()
	small := b.Scale(b.FromFloat32(tensor.F32, tensor.Shape{8}, make([]float32, 8)), 1)
	small.Free()
	if b.outs.bytes != 0 && len(b.outs.free[8]) != 0 {
		t.Error("a small buffer was pooled")
	}
}
