package unet

import (
	"context"
	"errors"
	"os"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/tensor"
)

// BenchmarkBaseUNetCancel measures how long a full-size SDXL base UNet
// forward (random weights, batch 2, CPU) takes to return after its context
// is cancelled. The pass checks the context before every op, so the
// latency is the rest of the op running at the cancel plus the unwinding.
// It reports the longest op of an uncancelled forward (the bound), the
// latency of a cancel just before that op starts (the worst case) and of
// a cancel by a timer in the middle of a forward (a typical case).
// SDXL_CANCEL_SIZE is the image side in pixels (default 1024). Full-size:
// run it alone, under the heavy lock:
//
//	go test ./sdxl/unet -run X -bench BaseUNetCancel -benchtime 1x
func BenchmarkBaseUNetCancel(bm *testing.B) {
	side := 1024
	if v := os.Getenv("SDXL_CANCEL_SIZE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n%8 != 0 {
			bm.Fatalf("SDXL_CANCEL_SIZE=%q: want a positive multiple of 8", v)
		}
		side = n
	}
	be := cpu.New()
	u, err := New(config.SDXLBaseUNet())
	if err != nil {
		bm.Fatal(err)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(4*nn.CountParams(u) + 4<<30))
	}
	nn.InitRandom(be, u, tensor.F32, 1)
	benchCancel(bm, be, u, side)
}

// benchCancel is BenchmarkBaseUNetCancel on u at side x side pixels.
func benchCancel(bm *testing.B, be *cpu.Backend, u *UNet, side int) {
	// A first forward packs the weights, as a generation's first step does
	// (at any size: a 64x64 image is quickest).
	warm := benchInput(be, u, 2, 8, 8)
	out, err := u.Forward(context.Background(), be, warm, nil)
	if err != nil {
		bm.Fatal(err)
	}
	tensor.FreeAll(out, warm.Sample, warm.EncoderHiddenStates, warm.TextEmbeds)
	in := benchInput(be, u, 2, side/8, side/8)
	bm.ResetTimer()
	for range bm.N {
		clk := &opClock{Backend: be}
		start := time.Now()
		out, err := u.Forward(context.Background(), clk, in, nil)
		if err != nil {
			bm.Fatal(err)
		}
		out.Free()
		full := time.Since(start)
		bm.Logf("%dx%d: forward %v, %d ops, longest %s %v (op %d); longest of each: %v", side, side, full, clk.n, clk.maxOp, clk.max, clk.maxAt, clk.byOp)

		// Worst case: cancelled as the longest op starts.
		worst := cancelLatency(bm, u, in, func(ctx context.Context, cancel func()) tensor.Backend {
			return &opClock{Backend: be, at: clk.maxAt, hook: cancel}
		})
		// Typical case: cancelled by a timer halfway through.
		mid := cancelLatency(bm, u, in, func(ctx context.Context, cancel func()) tensor.Backend {
			time.AfterFunc(full/2, cancel)
			return be
		})
		bm.ReportMetric(full.Seconds(), "forward-s")
		bm.ReportMetric(clk.max.Seconds(), "longest-op-s")
		bm.ReportMetric(worst.Seconds(), "cancel-worst-s")
		bm.ReportMetric(mid.Seconds(), "cancel-mid-s")
	}
}

// cancelLatency runs a forward on the backend setup returns, which
// arranges for cancel to be called, and returns the time from the cancel
// to the forward's return.
func cancelLatency(bm *testing.B, u *UNet, in Input, setup func(context.Context, func()) tensor.Backend) time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var at time.Time
	b := setup(ctx, func() { at = time.Now(); cancel() })
	out, err := u.Forward(ctx, b, in, nil)
	end := time.Now()
	if !errors.Is(err, context.Canceled) || out != nil {
		bm.Fatalf("cancelled forward: result %v, error %v", out, err)
	}
	return end.Sub(at)
}

// opClock is the CPU backend timing every op (the longest one is kept);
// with hook set, it calls hook just before op number at starts.
type opClock struct {
	*cpu.Backend
	n, maxAt, at int
	max          time.Duration
	maxOp        string
	hook         func()
	byOp         map[string]time.Duration // the longest of each op
}

func (c *opClock) time(op string, f func() *tensor.Tensor) *tensor.Tensor {
	c.n++
	if c.hook != nil && c.n == c.at {
		c.hook()
	}
	start := time.Now()
	out := f()
	d := time.Since(start)
	if d > c.max {
		c.max, c.maxOp, c.maxAt = d, op+" "+out.Shape().String(), c.n
	}
	if c.byOp == nil {
		c.byOp = map[string]time.Duration{}
	}
	c.byOp[op] = max(c.byOp[op], d)
	return out
}

func (c *opClock) MatMul(a, b *tensor.Tensor, ta, tb bool) *tensor.Tensor {
	return c.time("MatMul", func() *tensor.Tensor { return c.Backend.MatMul(a, b, ta, tb) })
}

func (c *opClock) Conv2D(x, w, bias *tensor.Tensor, stride, pad int) *tensor.Tensor {
	return c.time("Conv2D", func() *tensor.Tensor { return c.Backend.Conv2D(x, w, bias, stride, pad) })
}

func (c *opClock) GroupNorm(x *tensor.Tensor, g int, w, bias *tensor.Tensor, eps float32) *tensor.Tensor {
	return c.time("GroupNorm", func() *tensor.Tensor { return c.Backend.GroupNorm(x, g, w, bias, eps) })
}

func (c *opClock) GroupNormSiLU(x *tensor.Tensor, g int, w, bias *tensor.Tensor, eps float32) *tensor.Tensor {
	return c.time("GroupNormSiLU", func() *tensor.Tensor { return c.Backend.GroupNormSiLU(x, g, w, bias, eps) })
}

func (c *opClock) LayerNorm(x, w, bias *tensor.Tensor, eps float32) *tensor.Tensor {
	return c.time("LayerNorm", func() *tensor.Tensor { return c.Backend.LayerNorm(x, w, bias, eps) })
}

func (c *opClock) Attention(q, k, v, mask *tensor.Tensor, scale float32) *tensor.Tensor {
	return c.time("Attention", func() *tensor.Tensor { return c.Backend.Attention(q, k, v, mask, scale) })
}

func (c *opClock) Linear(x, w, bias *tensor.Tensor) *tensor.Tensor {
	return c.time("Linear", func() *tensor.Tensor { return c.Backend.Linear(x, w, bias) })
}

func (c *opClock) AddMatMul(y, a, b *tensor.Tensor) *tensor.Tensor {
	return c.time("AddMatMul", func() *tensor.Tensor { return c.Backend.AddMatMul(y, a, b) })
}

func (c *opClock) GEGLU(x *tensor.Tensor) *tensor.Tensor {
	return c.time("GEGLU", func() *tensor.Tensor { return c.Backend.GEGLU(x) })
}

func (c *opClock) SiLU(x *tensor.Tensor) *tensor.Tensor {
	return c.time("SiLU", func() *tensor.Tensor { return c.Backend.SiLU(x) })
}

func (c *opClock) Add(a, b *tensor.Tensor) *tensor.Tensor {
	return c.time("Add", func() *tensor.Tensor { return c.Backend.Add(a, b) })
}

func (c *opClock) Mul(a, b *tensor.Tensor) *tensor.Tensor {
	return c.time("Mul", func() *tensor.Tensor { return c.Backend.Mul(a, b) })
}

func (c *opClock) Scale(x *tensor.Tensor, f float32) *tensor.Tensor {
	return c.time("Scale", func() *tensor.Tensor { return c.Backend.Scale(x, f) })
}

func (c *opClock) Concat(axis int, ts ...*tensor.Tensor) *tensor.Tensor {
	return c.time("Concat", func() *tensor.Tensor { return c.Backend.Concat(axis, ts...) })
}

func (c *opClock) Slice(x *tensor.Tensor, axis, start, end int) *tensor.Tensor {
	return c.time("Slice", func() *tensor.Tensor { return c.Backend.Slice(x, axis, start, end) })
}

func (c *opClock) Permute(x *tensor.Tensor, perm ...int) *tensor.Tensor {
	return c.time("Permute", func() *tensor.Tensor { return c.Backend.Permute(x, perm...) })
}

func (c *opClock) Upsample(x *tensor.Tensor, h, w int) *tensor.Tensor {
	return c.time("Upsample", func() *tensor.Tensor { return c.Backend.Upsample(x, h, w) })
}
