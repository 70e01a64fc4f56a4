package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// TestGEMMAgainstGonum cross-checks the packed SGEMM against gonum's
// independent pure-Go Sgemm on awkward sizes in every transpose
// combination: both are float32 sums, so they agree to float32 rounding.
func TestGEMMAgainstGonum(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	be := New()
	var worst float64
	for _, sz := range [][3]int{{33, 17, 300}, {150, 129, 64}, {5, 1000, 7}, {64, 64, 64}} {
		m, n, k := sz[0], sz[1], sz[2]
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				a, bm := randSlice(r, m*k), randSlice(r, k*n)
				lda, ldb := k, n
				ta, tb := blas.NoTrans, blas.NoTrans
				if tA {
					lda, ta = m, blas.Trans
				}
				if tB {
					ldb, tb = k, blas.Trans
				}
				got := make([]float32, m*n)
				want := make([]float32, m*n)
				be.sgemm(tA, tB, m, n, k, a, lda, bm, ldb, got, n, false)
				gonum.Implementation{}.Sgemm(ta, tb, m, n, k, 1, a, lda, bm, ldb, 0, want, n)
				var num, den float64
				for i := range got {
					d := float64(got[i] - want[i])
					num += d * d
					den += float64(want[i]) * float64(want[i])
				}
				e := math.Sqrt(num / den)
				if e > 1e-6 {
					t.Errorf("%dx%dx%d tA=%v tB=%v: relative difference from gonum %.3g", m, n, k, tA, tB, e)
				}
				worst = math.Max(worst, e)
			}
		}
	}
	t.Logf("max relative difference from gonum Sgemm: %.3g", worst)
}

// BenchmarkMatMulGonum is BenchmarkMatMul through gonum's Sgemm: the
// baseline the packed SGEMM replaced.
func BenchmarkMatMulGonum(b *testing.B) {
	be := New()
	x := benchRand(be, 4096, 1280)
	w := benchRand(be, 1280, 1280)
	xs, ws := be.data("", x), be.data("", w)
	c := make([]float32, 4096*1280)
	flopsBench(b, be, 2*4096*1280*1280, func() {
		gonum.Implementation{}.Sgemm(blas.NoTrans, blas.Trans, 4096, 1280, 1280, 1, xs, 1280, ws, 1280, 0, c, 1280)
	})
}
