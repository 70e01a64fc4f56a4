package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestGEMM checks the packed SGEMM directly (beyond the conformance
// suite's MatMul cases): every transpose combination, sizes around the
// micro-tile (6×16) and the cache blocks (kc=256, mc=144),
// leading dimensions larger than the matrices, accumulation onto C, and
// NaN in C's previous contents being ignored when not accumulating.
func TestGEMM(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	sizes := [][3]int{
		{1, 1, 1}, {5, 15, 3}, {6, 16, 7}, {7, 17, 257}, {13, 33, 256},
		{145, 31, 513}, {290, 5, 40}, {7, 3100, 300}, {150, 70, 1},
		{12, 32, 8}, {12, 32, 16}, {18, 48, 9},
	}
	b := New()
	var worst float64
	for _, sz := range sizes {
		m, n, k := sz[0], sz[1], sz[2]
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				for _, acc := range []bool{false, true} {
					for _, threads := range []int{1, 3} {
						name := fmt.Sprintf("%dx%dx%d tA=%v tB=%v acc=%v threads=%d", m, n, k, tA, tB, acc, threads)
						worst = math.Max(worst, checkGEMM(t, r, b, name, m, n, k, tA, tB, acc, threads))
					}
				}
			}
		}
	}
	t.Logf("max |C-ref|/Σ|terms| = %.3g", worst)
}

// checkGEMM returns the largest error relative to the sum of the absolute
// terms of an element.
func checkGEMM(t *testing.T, r *rand.Rand, b *Backend, name string, m, n, k int, tA, tB, acc bool, threads int) float64 {
	t.Helper()
	// Pad every leading dimension by 3 so strides differ from widths.
	ar, ac := m, k
	if tA {
		ar, ac = k, m
	}
	br, bc := k, n
	if tB {
		br, bc = n, k
	}
	lda, ldb, ldc := ac+3, bc+3, n+3
	a := randSlice(r, ar*lda)
	bm := randSlice(r, br*ldb)
	c := randSlice(r, m*ldc)
	if !acc {
		for i := range c {
			c[i] = float32(math.NaN())
		}
	}
	c0 := append([]float32(nil), c...)
	b.sgemmThreads(threads, tA, tB, m, n, k, a, lda, bm, ldb, c, ldc, acc)
	var maxErr float64
	for i := range m {
		for j := range n {
			var s, mag float64
			for p := range k {
				var x, y float64
				if tA {
					x = float64(a[p*lda+i])
				} else {
					x = float64(a[i*lda+p])
				}
				if tB {
					y = float64(bm[j*ldb+p])
				} else {
					y = float64(bm[p*ldb+j])
				}
				s += x * y
				mag += math.Abs(x * y)
			}
			if acc {
				s += float64(c0[i*ldc+j])
				mag += math.Abs(float64(c0[i*ldc+j]))
			}
			got := float64(c[i*ldc+j])
			// float32 summation of k terms: error below k·eps·Σ|terms|.
			bound := float64(k+1) * 6e-8 * mag
			if e := math.Abs(got - s); !(e <= bound) {
				t.Fatalf("%s: C[%d,%d] = %v, want %v (bound %.3g)", name, i, j, got, s, bound)
			}
			maxErr = math.Max(maxErr, math.Abs(got-s)/math.Max(mag, 1e-30))
		}
		// Padding columns of C must be untouched.
		for j := n; j < ldc; j++ {
			if math.Float32bits(c[i*ldc+j]) != math.Float32bits(c0[i*ldc+j]) {
				t.Fatalf("%s: wrote C[%d,%d] beyond n", name, i, j)
			}
		}
	}
	return maxErr
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.Float64()*2 - 1)
	}
	return s
}

// TestKernelMatchesGo checks that the machine's micro-kernel (assembly on
// amd64) and the portable Go kernel agree to float32 rounding (the
// assembly fuses multiply-adds, so the bits may differ slightly).
func TestKernelMatchesGo(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, k := range []int{0, 1, 2, 7, 256} {
		for _, acc := range []bool{false, true} {
			a := randSlice(r, k*gemmMR)
			bp := randSlice(r, k*gemmNR)
			const ldc = gemmNR + 5
			c1 := randSlice(r, gemmMR*ldc)
			c2 := append([]float32(nil), c1...)
			aa, bb := &a, &bp
			if k == 0 {
				z1, z2 := make([]float32, 1), make([]float32, 1)
				aa, bb = &z1, &z2
			}
			kernel(k, &(*aa)[0], &(*bb)[0], &c1[0], ldc, acc)
			kernelGo(k, &(*aa)[0], &(*bb)[0], &c2[0], ldc, acc)
			for i := range c1 {
				if d := math.Abs(float64(c1[i] - c2[i])); d > 1e-5*float64(k+1) {
					t.Fatalf("k=%d acc=%v: element %d: kernel %v, Go %v", k, acc, i, c1[i], c2[i])
				}
			}
		}
	}
}
