package controlnet

import (
	"bufio"
	"context"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/unet"
	"github.com/sdxl-go/sdxl/tensor"
)

// benchInput is a batch of 2 (classifier-free guidance) at h x w latents
// with a control image of 8h x 8w.
func benchInput(b tensor.Backend, c *ControlNet, h, w int) Input {
	mk := func(scale, offset float64, shape ...int) *tensor.Tensor {
		d := make([]float32, tensor.Shape(shape).Numel())
		for i := range d {
			d[i] = float32(offset + scale*math.Sin(float64(i)*0.013))
		}
		return b.FromFloat32(tensor.F32, shape, d)
	}
	pos, neg := unet.BaseTimeIDs(unet.TimeIDParams{OriginalSize: [2]int{8 * h, 8 * w}, TargetSize: [2]int{8 * h, 8 * w}})
	e := c.Config().Encoder
	pooled := *e.ProjectionClassEmbeddingsInputDim - len(pos)**e.AdditionTimeEmbedDim
	return Input{
		Sample:              mk(1, 0, 2, e.InChannels, h, w),
		Timesteps:           []float32{500},
		EncoderHiddenStates: mk(1, 0, 2, 77, e.CrossAttentionDim[0]),
		TextEmbeds:          mk(1, 0, 2, pooled),
		TimeIDs:             append(neg, pos...),
		Cond:                mk(0.5, 0.5, 2, 3, 8*h, 8*w),
		Scale:               1,
	}
}

// BenchmarkCannySDXL512 runs one forward of the full-size SDXL ControlNet
// (diffusers/controlnet-canny-sdxl-1.0's config, random weights:
// 1,251,014,160 parameters, 5.0 GB in float32) at 512x512 (latents 64x64,
// a 512x512 control image), batch 2, on the CPU backend; it reports the
// process's peak resident memory. Run it alone, under the heavy lock:
//
//	flock /tmp/sdxl-heavy.lock go test -run '^$' -bench CannySDXL512 -benchtime 1x ./sdxl/controlnet
func BenchmarkCannySDXL512(bm *testing.B) {
	be := cpu.New()
	c, err := New(cannyConfig(bm))
	if err != nil {
		bm.Fatal(err)
	}
	params := nn.CountParams(c)
	if os.Getenv("GOMEMLIMIT") == "" {
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(4*params + 2<<30))
	}
	start := time.Now()
	nn.InitRandom(be, c, tensor.F32, 1)
	bm.Logf("random init of %d parameters (%.2f GB in float32): %v", params, float64(4*params)/1e9, time.Since(start))
	benchForward(bm, be, c)
	if gb, ok := peakRSS(); ok {
		bm.ReportMetric(gb, "peak-RSS-GB")
	}
}

// BenchmarkSmallControlNet is the small golden ControlNet at 64x64
// latents, batch 2: a quick regression figure.
func BenchmarkSmallControlNet(bm *testing.B) {
	be := cpu.New()
	c, err := LoadDir(be, golden.Path(bm, smallDir), LoadOptions{})
	if err != nil {
		bm.Fatal(err)
	}
	benchForward(bm, be, c)
}

// benchForward times forwards at 64x64 latents (512x512), batch 2.
func benchForward(bm *testing.B, be tensor.Backend, c *ControlNet) {
	in := benchInput(be, c, 64, 64)
	bm.ResetTimer()
	for range bm.N {
		out, err := c.Forward(context.Background(), be, in, nil)
		if err != nil {
			bm.Fatal(err)
		}
		out.Free()
	}
	bm.StopTimer()
}

// peakRSS reads the process's peak resident set (VmHWM) in GB, on Linux.
func peakRSS() (float64, bool) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb * 1024 / 1e9, err == nil
		}
	}
	return 0, false
}
