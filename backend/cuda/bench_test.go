package cuda

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sdxl-go/sdxl/tensor"
)

// Benchmarks on a real GPU (they skip without one). Each reports TFLOP/s
// (or GB/s for memory-bound ops) computed from the op's arithmetic and the
// wall time between two Syncs, so queueing overhead counts.

func benchGPU(b *testing.B, o Options) *Backend {
	b.Helper()
	g := newGPU(b, o)
	return g
}

func randTensor(g *Backend, rng *rand.Rand, dt tensor.DType, scale float32, shape ...int) *tensor.Tensor {
	d := make([]float32, tensor.Shape(shape).Numel())
	for i := range d {
		d[i] = (rng.Float32()*2 - 1) * scale
	}
	return g.FromFloat32(dt, shape, d)
}

// runTimed runs op b.N times after a warm-up and reports work per second.
func runTimed(b *testing.B, g *Backend, work float64, unit string, op func() *tensor.Tensor) {
	b.Helper()
	op().Free() // compile kernels, fill the pool
	if err := g.Sync(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		op().Free()
	}
	if err := g.Sync(); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start).Seconds()
	b.StopTimer()
	b.ReportMetric(work*float64(b.N)/el/1e12, unit)
	b.ReportMetric(float64(g.PeakBytes())/(1<<20), "peak-MiB")
}

// BenchmarkMatMulF16 is a Linear-shaped product: 4096x1280 @ (1280x1280)^T,
// F16 storage, float32 accumulation.
func BenchmarkMatMulF16(b *testing.B) {
	for _, dt := range []tensor.DType{tensor.F16, tensor.BF16, tensor.F32} {
		b.Run(fmt.Sprintf("4096x1280x1280-%v", dt), func(b *testing.B) {
			g := benchGPU(b, Options{})
			rng := rand.New(rand.NewPCG(1, 1))
			x := randTensor(g, rng, dt, 1, 4096, 1280)
			w := randTensor(g, rng, dt, 0.03, 1280, 1280)
			runTimed(b, g, 2*4096*1280*1280, "TFLOP/s", func() *tensor.Tensor { return g.MatMul(x, w, false, true) })
		})
	}
}

// BenchmarkAttention uses SDXL's shapes at 1024x1024 (batch 2 for CFG, head
// size 64): self-attention at the 64x64 level (10 heads, 4096 tokens) and
// the 32x32 level (20 heads, 1024 tokens), cross-attention to 77 text
// tokens, and the VAE mid-block (one head of 512 over 128x128 = 16384
// tokens, F32).
func BenchmarkAttention(b *testing.B) {
	cases := []struct {
		name         string
		B, H, Lq, Lk int
		D            int
		dt           tensor.DType
		paths        []string
	}{
		{"self-64x64", 2, 10, 4096, 4096, 64, tensor.F16, []string{attnFlash, attnGEMM, attnGeneric}},
		{"self-64x64", 2, 10, 4096, 4096, 64, tensor.F32, []string{attnGEMM, attnGeneric}},
		{"self-32x32", 2, 20, 1024, 1024, 64, tensor.F16, []string{attnFlash, attnGEMM}},
		{"self-32x32", 2, 20, 1024, 1024, 64, tensor.F32, []string{attnGeneric, attnGEMM}},
		{"cross-64x64", 2, 10, 4096, 77, 64, tensor.F16, []string{attnFlash, attnGEMM}},
		{"vae-mid-128x128", 1, 1, 16384, 16384, 512, tensor.F32, []string{attnGEMM}},
	}
	for _, c := range cases {
		for _, path := range c.paths {
			b.Run(fmt.Sprintf("%s-%v-%s", c.name, c.dt, path), func(b *testing.B) {
				g := benchGPU(b, Options{Attention: path})
				if got := g.attentionPath(c.D, c.D, c.dt, c.Lq, c.Lk); got != path {
					b.Skipf("path %s unavailable here (would use %s)", path, got)
				}
				rng := rand.New(rand.NewPCG(2, 2))
				q := randTensor(g, rng, c.dt, 1, c.B, c.H, c.Lq, c.D)
				k := randTensor(g, rng, c.dt, 1, c.B, c.H, c.Lk, c.D)
				v := randTensor(g, rng, c.dt, 1, c.B, c.H, c.Lk, c.D)
				flops := 4 * float64(c.B*c.H) * float64(c.Lq) * float64(c.Lk) * float64(c.D)
				runTimed(b, g, flops, "TFLOP/s", func() *tensor.Tensor { return g.Attention(q, k, v, nil, 0.125) })
			})
		}
	}
}

// BenchmarkConv2D is SDXL's most common convolution at 1024x1024: 320 ->
// 320 channels, 3x3, on a 128x128 latent, batch 2, F16.
func BenchmarkConv2D(b *testing.B) {
	g := benchGPU(b, Options{})
	rng := rand.New(rand.NewPCG(3, 3))
	x := randTensor(g, rng, tensor.F16, 1, 2, 320, 128, 128)
	w := randTensor(g, rng, tensor.F16, 0.02, 320, 320, 3, 3)
	bias := randTensor(g, rng, tensor.F16, 0.1, 320)
	flops := 2 * 2 * 320 * 128 * 128 * 320 * 9.0
	runTimed(b, g, flops, "TFLOP/s", func() *tensor.Tensor { return g.Conv2D(x, w, bias, 1, 1) })
}

// BenchmarkGroupNormSiLU reports effective bandwidth (one read and one
// write of the activation) with 32 groups on SDXL shapes: the UNet's
// 128x128 level ([2 320 128 128] F16) and a VAE decoder level at 1024x1024
// output ([1 128 512 512] F32), with the groups split over the GPU
// ("split", the default) and with one block per group ("per-group").
func BenchmarkGroupNormSiLU(b *testing.B) {
	for _, c := range []struct {
		name  string
		dt    tensor.DType
		shape []int
	}{
		{"unet-2x320x128x128", tensor.F16, []int{2, 320, 128, 128}},
		{"vae-1x128x512x512", tensor.F32, []int{1, 128, 512, 512}},
	} {
		for _, split := range []bool{true, false} {
			mode := "split"
			if !split {
				mode = "per-group"
			}
			b.Run(c.name+"-"+c.dt.String()+"-"+mode, func(b *testing.B) {
				g := benchGPU(b, Options{})
				if !split {
					g.gnTargetBlocks = 1 // never more blocks than groups
				}
				rng := rand.New(rand.NewPCG(4, 4))
				x := randTensor(g, rng, c.dt, 1, c.shape...)
				bytes := 2 * float64(tensor.Shape(c.shape).Numel()*c.dt.Size())
				runTimed(b, g, bytes, "TB/s", func() *tensor.Tensor { return g.GroupNormSiLU(x, 32, nil, nil, 1e-5) })
			})
		}
	}
}

// BenchmarkOpOverhead measures the per-op cost of queueing and launching
// a tiny kernel (the floor for a UNet's thousands of small ops).
func BenchmarkOpOverhead(b *testing.B) {
	g := benchGPU(b, Options{})
	x := g.Zeros(tensor.F16, 256)
	op := func() *tensor.Tensor { return g.Scale(x, 2) }
	op().Free()
	g.Sync()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		op().Free()
	}
	g.Sync()
	b.ReportMetric(time.Since(start).Seconds()/float64(b.N)*1e6, "us/op")
}
