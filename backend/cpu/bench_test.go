package cpu

import (
	"math/rand/v2"
	"testing"

	"github.com/sdxl-go/sdxl/tensor"
)

func benchRand(b *Backend, shape ...int) *tensor.Tensor {
	r := rand.New(rand.NewPCG(1, 2))
	s := tensor.Shape(shape)
	d := make([]float32, s.Numel())
	for i := range d {
		d[i] = float32(r.Float64()*2 - 1)
	}
	return b.FromFloat32(tensor.F32, s, d)
}

// reportFlops reports GFLOP/s for an op of flops floating-point operations.
func reportFlops(b *testing.B, flops float64) {
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// BenchmarkMatMul is a Linear layer at SDXL scale: [4096, 1280] x [1280, 1280]ᵀ.
func BenchmarkMatMul(b *testing.B) {
	be := New()
	x := benchRand(be, 4096, 1280)
	w := benchRand(be, 1280, 1280)
	b.ResetTimer()
	for range b.N {
		be.MatMul(x, w, false, true)
	}
	reportFlops(b, 2*4096*1280*1280)
}

// BenchmarkMatMulNN is the same product without transposes.
func BenchmarkMatMulNN(b *testing.B) {
	be := New()
	x := benchRand(be, 4096, 1280)
	w := benchRand(be, 1280, 1280)
	b.ResetTimer()
	for range b.N {
		be.MatMul(x, w, false, false)
	}
	reportFlops(b, 2*4096*1280*1280)
}

// BenchmarkConv2D is a 3x3 UNet ResNet conv: [2, 320, 64, 64] -> 320.
func BenchmarkConv2D(b *testing.B) {
	be := New()
	x := benchRand(be, 2, 320, 64, 64)
	w := benchRand(be, 320, 320, 3, 3)
	bias := benchRand(be, 320)
	b.ResetTimer()
	for range b.N {
		be.Conv2D(x, w, bias, 1, 1)
	}
	reportFlops(b, 2*2*320*64*64*320*9)
}

// BenchmarkAttentionSelf is SDXL self-attention at 1024x1024, first
// transformer level: B=2, H=5, L=4096, D=64.
func BenchmarkAttentionSelf(b *testing.B) {
	be := New()
	q := benchRand(be, 2, 5, 4096, 64)
	k := benchRand(be, 2, 5, 4096, 64)
	v := benchRand(be, 2, 5, 4096, 64)
	b.ResetTimer()
	for range b.N {
		be.Attention(q, k, v, nil, 0.125)
	}
	reportFlops(b, 2*2*2*5*4096*4096*64)
}

// BenchmarkAttentionCross is cross-attention to the 77 text tokens.
func BenchmarkAttentionCross(b *testing.B) {
	be := New()
	q := benchRand(be, 2, 5, 4096, 64)
	k := benchRand(be, 2, 5, 77, 64)
	v := benchRand(be, 2, 5, 77, 64)
	b.ResetTimer()
	for range b.N {
		be.Attention(q, k, v, nil, 0.125)
	}
	reportFlops(b, 2*2*2*5*4096*77*64)
}
