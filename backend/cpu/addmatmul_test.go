package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sdxl-go/sdxl/tensor"
)

// TestAddMatMul: the fused c + a·b equals Add(c, MatMul(a, b)) bit for bit
// (inner dimension up to one GEMM block), in every dtype, on shapes with
// partial tiles and several row blocks, whether c is packed as a Linear
// weight or not (leaving c as it was), and matches a float64 reference.
func TestAddMatMul(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	fill := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	forEachKernel(t, Options{Threads: 3}, func(t *testing.T, b *Backend) {
		for _, s := range [][3]int{{1, 1, 1}, {7, 5, 3}, {64, 32, 1280}, {130, 4, 700}, {600, 256, 97}, {20, 300, 50}} {
			m, k, n := s[0], s[1], s[2]
			for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16} {
				av, bv, cv := fill(m*k), fill(k*n), fill(m*n)
				a := b.FromFloat32(tensor.F32, tensor.Shape{m, k}, av)
				bb := b.FromFloat32(tensor.F32, tensor.Shape{k, n}, bv)
				c := b.FromFloat32(dt, tensor.Shape{m, n}, cv)
				got := b.ToFloat32(b.AddMatMul(c, a, bb))
				want := b.ToFloat32(b.Add(c, b.MatMul(a, bb, false, false)))
				cw := b.ToFloat32(c)
				// The same with c packed as a Linear weight first: the
				// product accumulates into the unpacked copy, and c stays.
				pc := b.FromFloat32(dt, tensor.Shape{m, n}, cv)
				b.Linear(b.FromFloat32(tensor.F32, tensor.Shape{2, n}, fill(2*n)), pc, nil)
				gotPacked := b.ToFloat32(b.AddMatMul(pc, a, bb))
				pcAfter := b.ToFloat32(pc)
				worst := 0.0
				for i := range got {
					if math.Float32bits(gotPacked[i]) != math.Float32bits(got[i]) || math.Float32bits(pcAfter[i]) != math.Float32bits(cw[i]) {
						t.Fatalf("%v %v: a packed c gives %v (c now %v), an unpacked one %v (c %v)", s, dt, gotPacked[i], pcAfter[i], got[i], cw[i])
					}
					if k <= gemmKC && math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%v %v: element %d is %v, Add(MatMul) gives %v", s, dt, i, got[i], want[i])
					}
					row, col := i/n, i%n
					ref := float64(cw[i])
					for j := range k {
						ref += float64(av[row*k+j]) * float64(bv[j*n+col])
					}
					worst = max(worst, math.Abs(float64(got[i])-ref)/(1+math.Abs(ref)))
				}
				tol := 1e-4 // float32 sums of up to 300 N(0,1) products
				if dt != tensor.F32 {
					tol = 1e-2
				}
				if worst > tol {
					t.Errorf("%v %v: error %.3g vs float64", s, dt, worst)
				}
			}
		}
	})
}
