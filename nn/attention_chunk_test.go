package nn

import (
	"math"
	"slices"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/tensor"
	"github.com/sdxl-go/sdxl/tensor/backendtest"
)

// TestChunkedAttention: an attention split into query-row chunks (here of
// 8 and 24 rows, the last one shorter) gives the single op's numbers bit
// for bit, on a plain backend (inputs left alive) and on a scope (inputs
// consumed, nothing left after the release).
func TestChunkedAttention(t *testing.T) {
	lb := backendtest.NewLive(cpu.New())
	const B, Lq, Lk, heads, C = 2, 100, 37, 4, 64
	mk := func(L int, seed float64) *tensor.Tensor {
		d := make([]float32, B*L*C)
		for i := range d {
			d[i] = float32(math.Sin(float64(i)*0.37 + seed))
		}
		return lb.FromFloat32(tensor.F32, tensor.Shape{B, L, C}, d)
	}
	q, k, v := mk(Lq, 0), mk(Lk, 1), mk(Lk, 2)
	one := multiHeadAttention(lb, q, k, v, heads, nil, math.Inf(1))
	want := lb.ToFloat32(one)
	one.Free()
	rowFlops := 4 * float64(B*Lk*C)
	for _, rows := range []int{8, 24} {
		got := multiHeadAttention(lb, q, k, v, heads, nil, rowFlops*float64(rows))
		if s := got.Shape(); !s.Equal(tensor.Shape{B, Lq, C}) {
			t.Fatalf("%d-row chunks: shape %v", rows, s)
		}
		if !slices.Equal(lb.ToFloat32(got), want) {
			t.Errorf("%d-row chunks differ from one op", rows)
		}
		got.Free()
	}
	if lb.Count() != 3 {
		t.Errorf("%d tensors live, want the 3 inputs", lb.Count())
	}

	s := tensor.NewScope(lb)
	got := multiHeadAttention(s, s.Own(q), s.Own(k), s.Own(v), heads, nil, rowFlops*8)
	if !slices.Equal(s.ToFloat32(got), want) {
		t.Errorf("chunks on a scope differ from one op")
	}
	s.Release()
	if lb.Count() != 0 {
		t.Errorf("on a scope: %d tensors left", lb.Count())
	}
}
