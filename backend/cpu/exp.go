package cpu

import "math"

// expSum replaces every x[i] by e^(x[i]·scale − shift) (the product and
// the difference rounded to float32) and returns the sum of the results,
// accumulated in float64. It is the hot loop of softmax and SiLU: on amd64
// with AVX2 the bulk runs as an 8-wide vector polynomial (Cephes' expf,
// about 1 float32 ulp), the tail and other machines use math.Exp.
func (v isa) expSum(x []float32, scale, shift float32) float64 {
	done, sum := expSumVec(v, x, scale, shift)
	for i := done; i < len(x); i++ {
		e := math.Exp(float64(x[i]*scale - shift))
		x[i] = float32(e)
		sum += float64(x[i])
	}
	return sum
}

// maxf returns the maximum of the non-empty x (NaNs are not propagated:
// softmax turns them into NaN through the exponentials anyway).
func (v isa) maxf(x []float32) float32 {
	done, m := maxVec(v, x)
	for _, v := range x[done:] {
		if v > m {
			m = v
		}
	}
	return m
}

// scalef multiplies x by s in place.
func (v isa) scalef(x []float32, s float32) {
	for i := scaleVec(v, x, s); i < len(x); i++ {
		x[i] *= s
	}
}
