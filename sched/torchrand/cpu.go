package torchrand

import (
	"math"

	"github.com/x448/float16"
)

// CPU reproduces torch.Generator("cpu"): an mt19937 engine plus the cached
// second Box-Muller value that ATen's CPUGeneratorImpl keeps between calls.
// A CPU generator is not safe for concurrent use (torch locks a mutex; here
// the caller owns the generator).
type CPU struct {
	mt mt19937
	// nextDouble is CPUGeneratorImpl::next_double_normal_sample_: the sine
	// half of the last scalar Box-Muller pair, consumed by the next scalar
	// normal draw. manual_seed clears it.
	nextDouble    float64
	hasNextDouble bool
	seed          uint64
}

// NewCPU returns a generator in the state of
// torch.Generator("cpu").manual_seed(seed).
func NewCPU(seed uint64) *CPU {
	g := &CPU{}
	g.ManualSeed(seed)
	return g
}

// ManualSeed reseeds the generator like Generator.manual_seed: the engine
// restarts from seed and the cached normal value is dropped.
func (g *CPU) ManualSeed(seed uint64) {
	g.seed = seed
	g.mt.seed(seed)
	g.hasNextDouble = false
	g.nextDouble = 0
}

// InitialSeed is the seed last given to ManualSeed.
func (g *CPU) InitialSeed() uint64 { return g.seed }

// Random is CPUGeneratorImpl::random(): the next 32-bit engine output.
func (g *CPU) Random() uint32 { return g.mt.uint32() }

// Random64 is CPUGeneratorImpl::random64(): two outputs, the first one in
// the high half.
func (g *CPU) Random64() uint64 {
	hi := g.mt.uint32()
	lo := g.mt.uint32()
	return uint64(hi)<<32 | uint64(lo)
}

// uniformFloat is at::uniform_real_distribution<float>(0, 1): 24 random bits
// scaled by 2^-24.
func (g *CPU) uniformFloat() float32 {
	return float32(g.mt.uint32()&(1<<24-1)) * (1.0 / (1 << 24))
}

// uniformDouble is at::uniform_real_distribution<double>(0, 1): 53 bits of
// random64 scaled by 2^-53.
func (g *CPU) uniformDouble() float64 {
	return float64(g.Random64()&(1<<53-1)) * (1.0 / (1 << 53))
}

// uniformHalf is at::uniform_real_distribution<c10::Half>(0, 1): 11 bits.
func (g *CPU) uniformHalf() float32 {
	return float32(g.mt.uint32()&(1<<11-1)) * (1.0 / (1 << 11))
}

// normalDouble is at::normal_distribution<double>(0, 1) with the generator's
// cache: Box-Muller on two doubles, returning r*cos and keeping r*sin.
func (g *CPU) normalDouble() float64 {
	if g.hasNextDouble {
		g.hasNextDouble = false
		return g.nextDouble
	}
	u1 := g.uniformDouble()
	u2 := g.uniformDouble()
	r := math.Sqrt(-2 * math.Log1p(-u2))
	theta := 2 * math.Pi * u1
	g.nextDouble = r * math.Sin(theta)
	g.hasNextDouble = true
	return r * math.Cos(theta)
}

// Randn is torch.randn(n, generator=g) in float32: the values a tensor of
// n contiguous elements receives, whatever its shape. Fewer than 16
// elements take ATen's serial path (double Box-Muller per element, with the
// generator's cached value); 16 or more take the vectorised normal_fill
// (24-bit uniforms, then Box-Muller over blocks of 16 with the AVX2
// polynomial log/sincos, the tail block recomputed from fresh uniforms).
func (g *CPU) Randn(n int) []float32 {
	out := make([]float32, n)
	g.FillRandn(out)
	return out
}

// FillRandn fills dst like Randn(len(dst)).
func (g *CPU) FillRandn(dst []float32) {
	n := len(dst)
	if n < 16 {
		for i := range dst {
			dst[i] = float32(g.normalDouble())
		}
		return
	}
	for i := range dst {
		dst[i] = g.uniformFloat()
	}
	for i := 0; i+16 <= n; i += 16 {
		normalFill16AVX2(dst[i : i+16])
	}
	if n%16 != 0 {
		tail := dst[n-16:]
		for i := range tail {
			tail[i] = g.uniformFloat()
		}
		normalFill16AVX2(tail)
	}
}

// normalFill16AVX2 is normal_fill_16_AVX2 with mean 0 and std 1 (the final
// fmadd(n, std, mean) is then exact).
func normalFill16AVX2(d []float32) {
	const twoPi = float32(2 * math.Pi)
	for j := 0; j < 8; j++ {
		u1 := 1 - d[j]
		u2 := d[j+8]
		radius := float32(math.Sqrt(float64(-2 * avxLog(u1)))) // sqrt is correctly rounded in both precisions
		theta := twoPi * u2
		s, c := avxSinCos(theta)
		d[j] = radius * c
		d[j+8] = radius * s
	}
}

// RandnHalf is torch.randn(n, dtype=torch.float16, generator=g), widened to
// float32 (exactly). Fewer than 16 elements come from the double serial
// path; otherwise ATen's scalar normal_fill<c10::Half>, whose intermediate
// radius and angle are themselves rounded to half precision.
func (g *CPU) RandnHalf(n int) []float32 {
	out := make([]float32, n)
	if n < 16 {
		for i := range out {
			out[i] = half(float32(g.normalDouble()))
		}
		return out
	}
	for i := range out {
		out[i] = g.uniformHalf()
	}
	for i := 0; i+16 <= n; i += 16 {
		normalFill16Half(out[i : i+16])
	}
	if n%16 != 0 {
		tail := out[n-16:]
		for i := range tail {
			tail[i] = g.uniformHalf()
		}
		normalFill16Half(tail)
	}
	return out
}

// normalFill16Half is normal_fill_16<c10::Half> with mean 0 and std 1.
// c10's reduced-precision math overloads (c10/util/BFloat16-math.h) make
// std::log, std::sqrt, std::sin and std::cos of a Half return a Half, and
// Half*Half arithmetic rounds its float result back to Half, so every
// intermediate below is rounded to half precision. The angle is the one
// exception: 2.0f * pi<double> * u2 is a double product, narrowed to float
// and then to Half on assignment.
func normalFill16Half(d []float32) {
	for j := 0; j < 8; j++ {
		u1 := half(1 - d[j]) // Half(1) - Half: exact
		u2 := d[j+8]
		radius := half(float32(math.Sqrt(float64(half(-2 * half(logf(u1)))))))
		theta := half(float32(2 * math.Pi * float64(u2)))
		d[j] = half(radius * half(cosf(theta)))
		d[j+8] = half(radius * half(sinf(theta)))
	}
}

// half rounds a float32 to the nearest float16 (ties to even) and back.
func half(x float32) float32 { return float16.Fromfloat32(x).Float32() }

// logf, sinf and cosf stand in for glibc's single-precision functions,
// which are correctly rounded or within one ulp of it; the results here
// are rounded again to half precision, which hides such differences.
func logf(x float32) float32 { return float32(math.Log(float64(x))) }
func sinf(x float32) float32 { return float32(math.Sin(float64(x))) }
func cosf(x float32) float32 { return float32(math.Cos(float64(x))) }
