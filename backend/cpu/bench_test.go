package cpu

import (
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

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

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// flopsBench runs op b.N times and reports GFLOP/s of wall time and GFLOP
// per CPU-second per thread ("GFLOP/s/thread"): on a shared machine the
// second figure is the stable one, the first depends on the load.
func flopsBench(b *testing.B, _ *Backend, flops float64, op func()) {
	b.ResetTimer()
	c0 := cpuTime()
	for range b.N {
		op()
	}
	cpu := (cpuTime() - c0).Seconds()
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	if cpu > 0 {
		b.ReportMetric(flops*float64(b.N)/cpu/1e9, "GFLOP/cpu-s")
	}
}

// BenchmarkMatMul is a Linear layer at SDXL scale: [4096, 1280] x [1280, 1280]ᵀ.
func BenchmarkMatMul(b *testing.B) {
	be := New()
	x := benchRand(be, 4096, 1280)
	w := benchRand(be, 1280, 1280)
	flopsBench(b, be, 2*4096*1280*1280, func() { be.MatMul(x, w, false, true) })
}

// BenchmarkMatMulNN is the same product without transposes.
func BenchmarkMatMulNN(b *testing.B) {
	be := New()
	x := benchRand(be, 4096, 1280)
	w := benchRand(be, 1280, 1280)
	flopsBench(b, be, 2*4096*1280*1280, func() { be.MatMul(x, w, false, false) })
}

// BenchmarkConv2D is a 3x3 UNet ResNet conv: [2, 320, 64, 64] -> 320.
func BenchmarkConv2D(b *testing.B) {
	be := New()
	x := benchRand(be, 2, 320, 64, 64)
	w := benchRand(be, 320, 320, 3, 3)
	bias := benchRand(be, 320)
	flopsBench(b, be, 2*2*320*64*64*320*9, func() { be.Conv2D(x, w, bias, 1, 1) })
}

// BenchmarkAttentionSelf is SDXL self-attention at 1024x1024, first
// transformer level: B=2, H=5, L=4096, D=64.
func BenchmarkAttentionSelf(b *testing.B) {
	be := New()
	q := benchRand(be, 2, 5, 4096, 64)
	k := benchRand(be, 2, 5, 4096, 64)
	v := benchRand(be, 2, 5, 4096, 64)
	flopsBench(b, be, 2*2*2*5*4096*4096*64, func() { be.Attention(q, k, v, nil, 0.125) })
}

// BenchmarkAttentionCross is cross-attention to the 77 text tokens.
func BenchmarkAttentionCross(b *testing.B) {
	be := New()
	q := benchRand(be, 2, 5, 4096, 64)
	k := benchRand(be, 2, 5, 77, 64)
	v := benchRand(be, 2, 5, 77, 64)
	flopsBench(b, be, 2*2*2*5*4096*77*64, func() { be.Attention(q, k, v, nil, 0.125) })
}

// BenchmarkAttentionVAE is the VAE mid-block attention at 512x512: one
// head over the 64x64 latent (L=4096), D=512.
func BenchmarkAttentionVAE(b *testing.B) {
	be := New()
	q := benchRand(be, 1, 1, 4096, 512)
	k := benchRand(be, 1, 1, 4096, 512)
	v := benchRand(be, 1, 1, 4096, 512)
	flopsBench(b, be, 2*2*4096*4096*512, func() { be.Attention(q, k, v, nil, 1/float32(22.627417)) })
}

// BenchmarkGroupNormSiLU is a VAE decoder norm at 1024x1024 output:
// [1, 128, 512, 512], 32 groups, reported in elements per second.
func BenchmarkGroupNormSiLU(b *testing.B) {
	be := New()
	x := benchRand(be, 1, 128, 512, 512)
	w := benchRand(be, 128)
	bias := benchRand(be, 128)
	b.ResetTimer()
	for range b.N {
		be.GroupNormSiLU(x, 32, w, bias, 1e-6)
	}
	b.ReportMetric(float64(x.Numel())*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
}

// BenchmarkConv2DVAE is a VAE decoder conv at its widest resolution for a
// 512x512 image: [1, 128, 512, 512] -> 128, 3x3.
func BenchmarkConv2DVAE(b *testing.B) {
	be := New()
	x := benchRand(be, 1, 128, 512, 512)
	w := benchRand(be, 128, 128, 3, 3)
	bias := benchRand(be, 128)
	flopsBench(b, be, 2*128*512*512*128*9, func() { be.Conv2D(x, w, bias, 1, 1) })
}
