package vae

import (
	"context"
	"math"
	"os"
	"runtime/debug"
	"testing"
	"time"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/opprof"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/tensor"
)

// BenchmarkDecodeTiled4096 decodes 4096x4096 (latent 512x512) with the
// full-size SDXL VAE (random weights from the real config) on the CPU
// backend in tiles of the default 1024 pixels (36 tiles), and reports the
// process's peak RSS (maxrss-MB; 0 where the platform has no getrusage).
// Unless GOMEMLIMIT is set, the heap is limited to DecodeMemory's estimate
// plus the weights and 512 MB.
// Heavy (minutes on two cores): go test ./sdxl/vae -run '^$' -bench DecodeTiled4096 -benchtime 1x
func BenchmarkDecodeTiled4096(bm *testing.B) {
	b := cpu.New()
	v, err := New(config.SDXLVAE())
	if err != nil {
		bm.Fatal(err)
	}
	nn.InitRandom(b, v, tensor.F32, 3)
	const h, w = 512, 512
	est, err := v.DecodeMemory(1, 8*w, 8*h, &Tiling{})
	if err != nil {
		bm.Fatal(err)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// Without a limit the garbage collector lets the heap grow to
		// about twice the live peak (one 1024x1024 tile's activations):
		// hold it near the estimate, as the engine should on the CPU.
		limit := 4*int64(nn.CountParams(v)) + est.Total() + 512<<20
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(limit))
		bm.Logf("memory limit %d MB (estimate %d MB + weights + 512 MB)", limit>>20, est.Total()>>20)
	}
	d := make([]float32, 4*h*w)
	for i := range d {
		d[i] = float32(math.Sin(float64(i)*0.013)) * 4
	}
	z := b.FromFloat32(tensor.F32, tensor.Shape{1, 4, h, w}, d)
	bm.ResetTimer()
	for range bm.N {
		img, err := v.DecodeTiled(context.Background(), b, z, Tiling{Progress: func(done, total int) error {
			bm.Logf("tile %d/%d, maxrss %d MB", done, total, maxRSS()>>20)
			return nil
		}})
		if err != nil {
			bm.Fatal(err)
		}
		if s := img.Shape(); !s.Equal(tensor.Shape{1, 3, 8 * h, 8 * w}) {
			bm.Fatalf("shape %v", s)
		}
		img.Free()
	}
	bm.ReportMetric(float64(maxRSS()>>20), "maxrss-MB")
}

// BenchmarkVAEDecode512 decodes one 64x64 latent to a 512x512 image with
// the full-size SDXL VAE (random weights from the real config, float32) on
// the CPU backend, reporting CPU seconds per decode, the GFLOP/s of
// Conv2D inside the model and the process's peak RSS. It pairs with
// BenchmarkBaseUNet512 and ../shared/bench/torch_cpu_bench.py vae.
func BenchmarkVAEDecode512(bm *testing.B) {
	be := cpu.New()
	v, err := New(config.SDXLVAE())
	if err != nil {
		bm.Fatal(err)
	}
	nn.InitRandom(be, v, tensor.F32, 1)
	bm.Logf("kernel %s", be.Kernel())
	z := make([]float32, 4*64*64)
	for i := range z {
		z[i] = float32(math.Sin(float64(i) * 0.013))
	}
	zt := be.FromFloat32(tensor.F32, tensor.Shape{1, 4, 64, 64}, z)
	if _, err := v.Decode(context.Background(), be, nil, zt); err != nil { // packs the weights
		bm.Fatal(err)
	}
	prof := opprof.New(be, nil)
	bm.ResetTimer()
	c0 := opprof.CPUTime()
	start := time.Now()
	for range bm.N {
		img, err := v.Decode(context.Background(), prof, nil, zt)
		if err != nil {
			bm.Fatal(err)
		}
		img.Free()
	}
	bm.ReportMetric(time.Since(start).Seconds()/float64(bm.N), "s/op")
	bm.ReportMetric((opprof.CPUTime()-c0).Seconds()/float64(bm.N), "cpu-s/op")
	prof.ReportGFLOPS(bm, "Conv2D", "Attention")
	bm.ReportMetric(float64(maxRSS()>>20), "maxrss-MB")
}
