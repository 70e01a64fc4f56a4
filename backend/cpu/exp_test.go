package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestExpSum checks expSum (the vector exponential on amd64) against
// math.Exp over the float32 range softmax and SiLU use, plus the clamped
// and special values.
func TestExpSum(t *testing.T) {
	forEachISA(t, func(t *testing.T, v isa) {
		var xs []float32
		for x := float32(-87); x < 88.3; x += 0.00731 {
			xs = append(xs, x)
		}
		xs = append(xs, 0, -0.0, 1e-30, -1e-30, 88.37, -87.3, -100, -1e4, float32(math.Inf(-1)))
		r := rand.New(rand.NewPCG(7, 8))
		for range 1000 {
			xs = append(xs, float32(r.NormFloat64()*10))
		}
		for _, scale := range []float32{1, 0.125, -1} {
			x := append([]float32(nil), xs...)
			sum := v.expSum(x, scale, 0.5)
			var worst, want float64
			for i, v := range xs {
				e := math.Exp(float64(v*scale - 0.5))
				want += float64(x[i])
				if e < 1e-37 { // clamped: tiny but not exactly zero
					if x[i] > 1e-37 || x[i] < 0 {
						t.Fatalf("scale %v: exp(%v) = %v, want ~%v", scale, v, x[i], e)
					}
					continue
				}
				if math.IsInf(e, 1) || e > 1e38 {
					continue
				}
				rel := math.Abs(float64(x[i])-e) / e
				if rel > 3e-7 {
					t.Fatalf("scale %v: exp(%v·%v−0.5) = %v, want %v (rel err %.3g)", scale, v, scale, x[i], e, rel)
				}
				worst = math.Max(worst, rel)
			}
			if !math.IsInf(want, 0) && math.Abs(sum-want) > 1e-12*want {
				t.Errorf("scale %v: sum %v, want the sum of the outputs %v", scale, sum, want)
			}
			t.Logf("scale %v: max relative error %.3g (float32 ulp is 6e-8)", scale, worst)
		}
		nan := []float32{1, 2, 3, 4, 5, 6, 7, float32(math.NaN()), 9}
		v.expSum(nan, 1, 0)
		if !math.IsNaN(float64(nan[7])) {
			t.Errorf("exp(NaN) = %v, want NaN", nan[7])
		}
	})
}

func BenchmarkExpSum(b *testing.B) {
	v := New().v
	x := make([]float32, 4096)
	for range b.N {
		for i := range x {
			x[i] = float32(-i) * 0.001
		}
		v.expSum(x, 1, 0)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(x)), "ns/elem")
}

func TestMaxScale(t *testing.T) {
	forEachISA(t, func(t *testing.T, v isa) {
		r := rand.New(rand.NewPCG(9, 10))
		for _, n := range []int{1, 7, 8, 9, 16, 17, 100} {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			for pos := range n { // the maximum at every position
				y := append([]float32(nil), x...)
				y[pos] = 10
				if m := v.maxf(y); m != 10 {
					t.Fatalf("n=%d: maxf with 10 at %d = %v", n, pos, m)
				}
			}
			y := append([]float32(nil), x...)
			v.scalef(y, 0.37)
			for i := range y {
				if y[i] != x[i]*0.37 {
					t.Fatalf("n=%d: scalef element %d = %v, want %v", n, i, y[i], x[i]*0.37)
				}
			}
		}
	})
}

// TestGELU checks geluRow (the AVX2 polynomial on amd64) against the exact
// erf GELU in float64. The float32 exponent −x²/2 carries an absolute
// rounding error of about x²·3e-8, so the relative error grows in the
// negative tail, where GELU itself vanishes (|GELU(−6)| < 1e-8).
func TestGELU(t *testing.T) {
	forEachISA(t, func(t *testing.T, v isa) {
		var xs []float32
		for x := float32(-10); x < 10; x += 0.000731 {
			xs = append(xs, x)
		}
		xs = append(xs, 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 50, -50, float32(math.Inf(1)))
		got := make([]float32, len(xs))
		v.geluRow(got, xs)
		var worst3, worstAll float64
		for i, v := range xs {
			x := float64(v)
			want := 0.5 * x * math.Erfc(-x/math.Sqrt2) // 1+erf(z) = erfc(−z), exact in the tail
			if math.IsInf(want, 0) {
				if float64(got[i]) != want {
					t.Fatalf("gelu(%v) = %v, want %v", v, got[i], want)
				}
				continue
			}
			d := math.Abs(float64(got[i]) - want)
			rel := d / math.Max(math.Abs(want), 1e-300)
			// 10 float32 ulps plus the exponent's rounding, relative.
			if bound := 6e-7 + 1e-7*x*x; !(rel <= bound) && !(d < 1e-30) {
				t.Fatalf("gelu(%v) = %v, want %v (rel err %.3g > %.3g)", v, got[i], want, rel, bound)
			}
			if math.Abs(x) <= 3 {
				worst3 = math.Max(worst3, rel)
			}
			worstAll = math.Max(worstAll, d)
		}
		t.Logf("max relative error for |x| <= 3: %.3g; max absolute error: %.3g", worst3, worstAll)
	})
}

func BenchmarkGELU(b *testing.B) {
	v := New().v
	x := make([]float32, 4096)
	for i := range x {
		x[i] = float32(i)*0.002 - 4
	}
	y := make([]float32, len(x))
	for range b.N {
		v.geluRow(y, x)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(x)), "ns/elem")
}

// TestSiLU checks silu (vectorised on amd64) against x·sigmoid(x) in
// float64, in place and out of place.
func TestSiLU(t *testing.T) {
	forEachISA(t, func(t *testing.T, v isa) {
		var xs []float32
		for x := float32(-100); x < 100; x += 0.00917 {
			xs = append(xs, x)
		}
		xs = append(xs, 0, float32(math.Copysign(0, -1)), 1e-30, 89, -89, 200, -200)
		got := make([]float32, len(xs))
		v.silu(got, xs)
		inPlace := append([]float32(nil), xs...)
		v.silu(inPlace, inPlace)
		var worst float64
		for i, v := range xs {
			x := float64(v)
			want := x / (1 + math.Exp(-x))
			d := math.Abs(float64(got[i]) - want)
			rel := d / math.Max(math.Abs(want), 1e-300)
			if !(rel <= 4e-7) && !(d < 1e-30) {
				t.Fatalf("v.silu(%v) = %v, want %v (rel err %.3g)", v, got[i], want, rel)
			}
			if math.Float32bits(inPlace[i]) != math.Float32bits(got[i]) {
				t.Fatalf("v.silu(%v) in place = %v, out of place %v", v, inPlace[i], got[i])
			}
			if math.Abs(want) > 1e-30 {
				worst = math.Max(worst, rel)
			}
		}
		t.Logf("max relative error %.3g (where |silu| > 1e-30)", worst)
	})
}
