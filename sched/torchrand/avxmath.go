package torchrand

import "math"

// This file reproduces, in scalar float32 arithmetic, the Cephes-style
// polynomial log, sin and cos that PyTorch's AVX2 normal sampler uses
// (aten/src/ATen/native/cpu/avx_mathfun.h, after Julien Pommier's
// sse_mathfun). torch.randn on a CPU float32 tensor of 16 or more elements
// goes through these approximations, not through libm, so they must be
// matched operation by operation for bit-exact noise.
//
// PyTorch's x86 builds compile that header with -mfma under GCC, which
// contracts "a*b + c" pairs into fused multiply-adds (the intrinsics are
// plain vector arithmetic to GCC, and -ffp-contract=fast is its default).
// fmaf below is a single-rounding float32 FMA; which pairs are fused was
// established against torch 2.11's own output (small/rng.safetensors): all
// polynomial steps and range reductions, the log's y*z + e*q1 (fused on the
// y*z side), the log's final + e*q2, the cosine's last y*z - z/2 and the
// sine's y*x + x. Any other choice leaves about one value in a thousand one
// or two ulps off.

// Cephes constants, as float32 like the _ps256 tables.
const (
	cephesSQRTHF float32 = 0.707106781186547524
	logP0        float32 = 7.0376836292e-2
	logP1        float32 = -1.1514610310e-1
	logP2        float32 = 1.1676998740e-1
	logP3        float32 = -1.2420140846e-1
	logP4        float32 = +1.4249322787e-1
	logP5        float32 = -1.6668057665e-1
	logP6        float32 = +2.0000714765e-1
	logP7        float32 = -2.4999993993e-1
	logP8        float32 = +3.3333331174e-1
	logQ1        float32 = -2.12194440e-4
	logQ2        float32 = 0.693359375

	minusDP1   float32 = -0.78515625
	minusDP2   float32 = -2.4187564849853515625e-4
	minusDP3   float32 = -3.77489497744594108e-8
	sincofP0   float32 = -1.9515295891e-4
	sincofP1   float32 = 8.3321608736e-3
	sincofP2   float32 = -1.6666654611e-1
	coscofP0   float32 = 2.443315711809948e-005
	coscofP1   float32 = -1.388731625493765e-003
	coscofP2   float32 = 4.166664568298827e-002
	cephesFOPI float32 = 1.27323954473516 // 4 / pi
)

// fmaf is a float32 fused multiply-add: a*b+c rounded once.
func fmaf(a, b, c float32) float32 {
	p := float64(a) * float64(b) // exact: 24+24 bits fit in 53
	cd := float64(c)
	s := p + cd
	// TwoSum: s + e == p + c exactly.
	bb := s - p
	e := (p - (s - bb)) + (cd - bb)
	r := float32(s)
	if e == 0 || float64(r) == s {
		return r
	}
	// s was rounded to float32. Double rounding can only go wrong when s
	// sits exactly on a float32 midpoint; then e decides the direction.
	lo, hi := r, r
	if float64(r) < s {
		hi = math.Nextafter32(r, float32(math.Inf(1)))
	} else {
		lo = math.Nextafter32(r, float32(math.Inf(-1)))
	}
	mid := (float64(lo) + float64(hi)) / 2
	if s != mid {
		return r
	}
	if e > 0 {
		return hi
	}
	return lo
}

// madd is a fused a*b+c.
func madd(a, b, c float32) float32 { return fmaf(a, b, c) }

// avxLog is log256_ps for one lane. The argument is always in (0, 1] here.
func avxLog(x float32) float32 {
	invalid := x <= 0
	if x < math.Float32frombits(0x00800000) || x != x {
		// _mm256_max_ps(x, min_norm_pos) returns its second operand for NaN.
		x = math.Float32frombits(0x00800000)
	}
	bits := math.Float32bits(x)
	imm0 := int32(bits>>23) - 0x7f
	x = math.Float32frombits(bits&^0x7f800000 | math.Float32bits(0.5))
	e := float32(imm0)
	e += 1
	var tmp float32
	if x < cephesSQRTHF {
		tmp = x
		e -= 1
	}
	x -= 1
	x += tmp
	z := x * x
	y := logP0
	y = madd(y, x, logP1)
	y = madd(y, x, logP2)
	y = madd(y, x, logP3)
	y = madd(y, x, logP4)
	y = madd(y, x, logP5)
	y = madd(y, x, logP6)
	y = madd(y, x, logP7)
	y = madd(y, x, logP8)
	y *= x
	y = madd(y, z, float32(e*logQ1))
	y -= z * 0.5 // exact product: fused or not gives the same
	x += y
	x = madd(e, logQ2, x)
	if invalid {
		return float32(math.NaN())
	}
	return x
}

// avxSinCos is sincos256_ps for one lane.
func avxSinCos(x float32) (s, c float32) {
	signSin := math.Float32bits(x) & 0x80000000
	x = math.Float32frombits(math.Float32bits(x) &^ 0x80000000)
	y := x * cephesFOPI
	imm2 := int32(y) // cvttps: truncation
	imm2 = (imm2 + 1) &^ 1
	y = float32(imm2)
	imm4 := imm2
	swapSignSin := uint32(imm2&4) << 29
	polyMask := imm2&2 == 0
	x = madd(y, minusDP1, x)
	x = madd(y, minusDP2, x)
	x = madd(y, minusDP3, x)
	imm4 -= 2
	signCos := uint32(^imm4&4) << 29
	signSin ^= swapSignSin

	z := x * x
	yc := coscofP0
	yc = madd(yc, z, coscofP1)
	yc = madd(yc, z, coscofP2)
	yc *= z
	yc = madd(yc, z, -(z * 0.5))
	yc += 1

	ys := sincofP0
	ys = madd(ys, z, sincofP1)
	ys = madd(ys, z, sincofP2)
	ys *= z
	ys = madd(ys, x, x)

	var sinv, cosv float32
	if polyMask {
		sinv, cosv = ys, yc
	} else {
		sinv, cosv = yc, ys
	}
	s = math.Float32frombits(math.Float32bits(sinv) ^ signSin)
	c = math.Float32frombits(math.Float32bits(cosv) ^ signCos)
	return s, c
}
