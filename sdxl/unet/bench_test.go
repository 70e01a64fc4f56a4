package unet

import (
	"context"
	"math"
	"os"
	"runtime/debug"
	"testing"
	"time"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/internal/memlimit"
	"github.com/sdxl-go/sdxl/internal/opprof"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/tensor"
)

func benchInput(b tensor.Backend, u *UNet, batch, h, w int) Input {
	mk := func(shape ...int) *tensor.Tensor {
		d := make([]float32, tensor.Shape(shape).Numel())
		for i := range d {
			d[i] = float32(math.Sin(float64(i) * 0.013))
		}
		return b.FromFloat32(tensor.F32, shape, d)
	}
	pos, neg := BaseTimeIDs(TimeIDParams{OriginalSize: [2]int{8 * h, 8 * w}, TargetSize: [2]int{8 * h, 8 * w}})
	var ids []float32
	for i := range batch {
		if i%2 == 0 {
			ids = append(ids, neg...)
		} else {
			ids = append(ids, pos...)
		}
	}
	return Input{
		Sample:              mk(batch, u.InChannels(), h, w),
		Timesteps:           []float32{500},
		EncoderHiddenStates: mk(batch, 77, u.CrossAttentionDim()),
		TextEmbeds:          mk(batch, u.ProjectionClassEmbeddingsInputDim()-len(pos)*u.AdditionTimeEmbedDim()),
		TimeIDs:             ids,
	}
}

// BenchmarkBaseUNet512 runs one full-size SDXL base UNet forward (random
// weights from the real config, 10.3 GB of float32 parameters) at 512x512
// (latent 64x64), batch 2 (classifier-free guidance), on the CPU backend.
// Besides the time it reports the CPU seconds per forward, the GFLOP/s of
// Linear and Conv2D inside the model and the process's peak RSS.
// Run it alone: go test ./sdxl/unet -run X -bench BaseUNet512 -benchtime=1x
// (SDXL_CPU_KERNEL=avx2 for the ymm kernel).
func BenchmarkBaseUNet512(bm *testing.B) {
	be := cpu.New()
	u, err := New(config.SDXLBaseUNet())
	if err != nil {
		bm.Fatal(err)
	}
	params := nn.CountParams(u)
	if os.Getenv("GOMEMLIMIT") == "" {
		// The live heap is the 10.3 GB of weights; without a limit the
		// garbage collector lets the heap grow to twice that.
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(4*params + 2<<30))
	}
	start := time.Now()
	nn.InitRandom(be, u, tensor.F32, 1)
	bm.Logf("random init of %d parameters: %v; kernel %s", params, time.Since(start), be.Kernel())
	in := benchInput(be, u, 2, 64, 64)
	// A first forward packs the weights (once for good), as the first
	// step of a generation does.
	if _, err := u.Forward(context.Background(), be, in, nil); err != nil {
		bm.Fatal(err)
	}
	prof := opprof.New(be, nil)
	bm.ResetTimer()
	c0 := opprof.CPUTime()
	for range bm.N {
		out, err := u.Forward(context.Background(), prof, in, nil)
		if err != nil {
			bm.Fatal(err)
		}
		out.Free()
	}
	bm.ReportMetric((opprof.CPUTime()-c0).Seconds()/float64(bm.N), "cpu-s/op")
	prof.ReportGFLOPS(bm, "Linear", "Conv2D", "Attention")
	bm.ReportMetric(float64(memlimit.PeakRSS()>>20), "maxrss-MB")
}

// BenchmarkSmallBase is the small golden model (real topology) at 64x64
// latents, batch 2: a quick regression figure.
func BenchmarkSmallBase(bm *testing.B) {
	be := cpu.New()
	u, err := LoadDir(be, golden.Path(bm, "small/models/sdxl-small-base/unet"), LoadOptions{})
	if err != nil {
		bm.Fatal(err)
	}
	in := benchInput(be, u, 2, 64, 64)
	bm.ResetTimer()
	for range bm.N {
		out, err := u.Forward(context.Background(), be, in, nil)
		if err != nil {
			bm.Fatal(err)
		}
		out.Free()
	}
}
