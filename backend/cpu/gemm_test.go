package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestGEMM checks the packed SGEMM directly (beyond the conformance
// suite's MatMul cases) with every kernel: every transpose combination,
// sizes around the micro-tiles (6×16, 14×32) and the cache blocks (kc=256,
// mc=144 or 168), leading dimensions larger than the matrices,
// accumulation onto C, and NaN in C's previous contents being ignored when
// not accumulating.
func TestGEMM(t *testing.T) {
	forEachKernel(t, Options{}, testGEMM)
}

func testGEMM(t *testing.T, b *Backend) {
	r := rand.New(rand.NewPCG(3, 4))
	sizes := [][3]int{
		{1, 1, 1}, {5, 15, 3}, {6, 16, 7}, {7, 17, 257}, {13, 33, 256},
		{145, 31, 513}, {290, 5, 40}, {7, 3100, 300}, {150, 70, 1},
		{12, 32, 8}, {12, 32, 16}, {18, 48, 9}, {14, 32, 9}, {15, 64, 5},
		{29, 47, 20}, {170, 50, 70}, {28, 96, 260},
	}
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

// TestKernelMatchesGo checks every micro-kernel tile of this machine
// against the portable Go kernel, 16 columns at a time: they agree to
// float32 rounding (the assembly fuses multiply-adds, so the bits may
// differ slightly). Columns of C beyond the tile stay untouched.
func TestKernelMatchesGo(t *testing.T) {
	forEachKernel(t, Options{}, func(t *testing.T, b *Backend) {
		mk := b.mk
		r := rand.New(rand.NewPCG(5, 6))
		for _, k := range []int{0, 1, 2, 7, 256} {
			for _, acc := range []bool{false, true} {
				for _, two := range []bool{false, true} {
					if two && mk.two == nil {
						continue
					}
					panels := 1
					if two {
						panels = 2
					}
					checkTile(t, r, mk, k, panels, acc)
				}
			}
		}
	})
}

// checkTile compares one call of mk's tile (panels B panels wide) with
// kernelGo applied to each 6-row, 16-column piece.
func checkTile(t *testing.T, r *rand.Rand, mk *microKernel, k, panels int, acc bool) {
	t.Helper()
	mr, width := mk.mr, panels*gemmNR
	kk := max(k, 1) // k == 0 still needs valid pointers
	a := randSlice(r, kk*mr)
	bp := randSlice(r, panels*kk*gemmNR)
	ldc := width + 5
	c1 := randSlice(r, mr*ldc)
	c2 := append([]float32(nil), c1...)
	mk.call(panels == 2, k, &a[0], &bp[0], &c1[0], ldc, kk*gemmNR, acc)
	// The reference: rows in groups of 6 (A repacked), 16 columns a panel.
	for r0 := 0; r0 < mr; r0 += gemmMR {
		sub := make([]float32, kk*gemmMR)
		for p := range k {
			for i := range min(gemmMR, mr-r0) {
				sub[p*gemmMR+i] = a[p*mr+r0+i]
			}
		}
		var tile [gemmMR * 21]float32
		for p := range panels {
			kernelGo(k, &sub[0], &bp[p*kk*gemmNR], &tile[0], 21, false)
			for i := range min(gemmMR, mr-r0) {
				for j := range gemmNR {
					v := tile[i*21+j]
					if acc {
						v += c2[(r0+i)*ldc+p*gemmNR+j]
					}
					c2[(r0+i)*ldc+p*gemmNR+j] = v
				}
			}
		}
	}
	for i := range c1 {
		if d := math.Abs(float64(c1[i] - c2[i])); d > 1e-5*float64(k+1) {
			t.Fatalf("%s k=%d panels=%d acc=%v: element %d (row %d, col %d): kernel %v, Go %v", mk.name, k, panels, acc, i, i/ldc, i%ldc, c1[i], c2[i])
		}
		if i%ldc >= width && c1[i] != c2[i] {
			t.Fatalf("%s: wrote C beyond the tile at row %d col %d", mk.name, i/ldc, i%ldc)
		}
	}
}

// TestFusedKernelsBitIdentical checks the promise of the package doc: the
// assembly GEMMs (avx2, avx512) give the same bits, whatever their tiles,
// on products with edges in every direction and several kc blocks.
func TestFusedKernelsBitIdentical(t *testing.T) {
	var fused []*Backend
	for _, k := range Kernels() {
		if k != KernelGeneric {
			fused = append(fused, NewWithOptions(Options{Kernel: k}))
		}
	}
	if len(fused) < 2 {
		t.Skipf("only %v on this machine: nothing to compare", Kernels())
	}
	r := rand.New(rand.NewPCG(11, 12))
	for _, sz := range [][3]int{{173, 77, 600}, {14, 32, 256}, {300, 333, 40}, {5, 40, 513}} {
		m, n, k := sz[0], sz[1], sz[2]
		a, bm := randSlice(r, m*k), randSlice(r, k*n)
		var ref []float32
		for i, b := range fused {
			c := make([]float32, m*n)
			b.sgemm(false, true, m, n, k, a, k, bm, k, c, n, false)
			if i == 0 {
				ref = c
				continue
			}
			for j := range c {
				if math.Float32bits(c[j]) != math.Float32bits(ref[j]) {
					t.Fatalf("%dx%dx%d: %s and %s differ at %d: %v vs %v", m, n, k, fused[0].Kernel(), b.Kernel(), j, ref[j], c[j])
				}
			}
		}
	}
	t.Logf("bit-identical: %v", Kernels()[1:])
}
