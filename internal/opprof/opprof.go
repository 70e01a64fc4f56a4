// Package opprof measures where a forward pass spends its time: a
// tensor.Backend wrapper that times every op. On an asynchronous backend
// (CUDA) the wrapped call is followed by Sync, so each op's time is its
// device time plus launch overhead; profiling therefore slows a run and is
// for reports (sdxl-run bench --profile), never for the normal path.
package opprof

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/sdxl-go/sdxl/tensor"
)

// Backend wraps another backend and accumulates time per op name. It also
// forwards the optional fused interfaces, so profiling does not change
// which kernels run.
type Backend struct {
	tensor.Backend
	// Sync waits for queued device work (nil for synchronous backends).
	Sync func() error

	mu    sync.Mutex
	stats map[string]*Stat
}

// Stat is the accumulated time of one op, and its floating-point work
// for the ops that do most of it (MatMul, Linear, Conv2D, Attention:
// 2·multiply-adds).
type Stat struct {
	Op    string
	Calls int
	Time  time.Duration
	Flops float64
}

// GFLOPS is the op's throughput, 0 when it counts no FLOPs.
func (s Stat) GFLOPS() float64 {
	if s.Time <= 0 {
		return 0
	}
	return s.Flops / s.Time.Seconds() / 1e9
}

// New wraps b; sync may be nil.
func New(b tensor.Backend, sync func() error) *Backend {
	return &Backend{Backend: b, Sync: sync, stats: map[string]*Stat{}}
}

func (p *Backend) time(op string, start time.Time) { p.timeFlops(op, start, 0) }

func (p *Backend) timeFlops(op string, start time.Time, flops float64) {
	if p.Sync != nil {
		p.Sync()
	}
	d := time.Since(start)
	p.mu.Lock()
	s := p.stats[op]
	if s == nil {
		s = &Stat{Op: op}
		p.stats[op] = s
	}
	s.Calls++
	s.Time += d
	s.Flops += flops
	p.mu.Unlock()
}

// Reset clears the statistics.
func (p *Backend) Reset() {
	p.mu.Lock()
	p.stats = map[string]*Stat{}
	p.mu.Unlock()
}

// Stats returns the ops sorted by decreasing time.
func (p *Backend) Stats() []Stat {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Stat, 0, len(p.stats))
	for _, s := range p.stats {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time > out[j].Time })
	return out
}

// Report writes a table of time shares.
func (p *Backend) Report(w io.Writer) {
	st := p.Stats()
	var total time.Duration
	for _, s := range st {
		total += s.Time
	}
	fmt.Fprintf(w, "%-16s %8s %12s %7s %9s\n", "op", "calls", "time", "share", "GFLOP/s")
	for _, s := range st {
		gf := ""
		if s.Flops > 0 {
			gf = fmt.Sprintf("%.1f", s.GFLOPS())
		}
		fmt.Fprintf(w, "%-16s %8d %12s %6.1f%% %9s\n", s.Op, s.Calls, s.Time.Round(time.Microsecond), 100*float64(s.Time)/float64(max(total, 1)), gf)
	}
}

func (p *Backend) MatMul(a, b *tensor.Tensor, ta, tb bool) *tensor.Tensor {
	_, d := tensor.MatMulShape(a.Shape(), b.Shape(), ta, tb)
	defer p.timeFlops("MatMul", time.Now(), 2*float64(d.Batch.Numel()*d.M*d.N*d.K))
	return p.Backend.MatMul(a, b, ta, tb)
}
func (p *Backend) Conv2D(x, w, bias *tensor.Tensor, stride, padding int) *tensor.Tensor {
	out := tensor.Conv2DShape(x.Shape(), w.Shape(), nil, stride, padding)
	defer p.timeFlops("Conv2D", time.Now(), 2*float64(out.Numel())*float64(w.Numel()/w.Dim(0)))
	return p.Backend.Conv2D(x, w, bias, stride, padding)
}
func (p *Backend) GroupNorm(x *tensor.Tensor, g int, w, b *tensor.Tensor, eps float32) *tensor.Tensor {
	defer p.time("GroupNorm", time.Now())
	return p.Backend.GroupNorm(x, g, w, b, eps)
}
func (p *Backend) LayerNorm(x, w, b *tensor.Tensor, eps float32) *tensor.Tensor {
	defer p.time("LayerNorm", time.Now())
	return p.Backend.LayerNorm(x, w, b, eps)
}
func (p *Backend) Attention(q, k, v, mask *tensor.Tensor, scale float32) *tensor.Tensor {
	// Q·Kᵀ and P·V.
	defer p.timeFlops("Attention", time.Now(), 2*float64(q.Numel()/q.Dim(-1))*float64(k.Dim(-2))*float64(q.Dim(-1)+v.Dim(-1)))
	return p.Backend.Attention(q, k, v, mask, scale)
}
func (p *Backend) Softmax(x *tensor.Tensor) *tensor.Tensor {
	defer p.time("Softmax", time.Now())
	return p.Backend.Softmax(x)
}
func (p *Backend) SiLU(x *tensor.Tensor) *tensor.Tensor {
	defer p.time("SiLU", time.Now())
	return p.Backend.SiLU(x)
}
func (p *Backend) GELU(x *tensor.Tensor) *tensor.Tensor {
	defer p.time("GELU", time.Now())
	return p.Backend.GELU(x)
}
func (p *Backend) QuickGELU(x *tensor.Tensor) *tensor.Tensor {
	defer p.time("QuickGELU", time.Now())
	return p.Backend.QuickGELU(x)
}
func (p *Backend) GEGLU(x *tensor.Tensor) *tensor.Tensor {
	defer p.time("GEGLU", time.Now())
	return p.Backend.GEGLU(x)
}
func (p *Backend) Add(a, b *tensor.Tensor) *tensor.Tensor {
	defer p.time("Add", time.Now())
	return p.Backend.Add(a, b)
}
func (p *Backend) Mul(a, b *tensor.Tensor) *tensor.Tensor {
	defer p.time("Mul", time.Now())
	return p.Backend.Mul(a, b)
}
func (p *Backend) Scale(x *tensor.Tensor, s float32) *tensor.Tensor {
	defer p.time("Scale", time.Now())
	return p.Backend.Scale(x, s)
}
func (p *Backend) Concat(axis int, ts ...*tensor.Tensor) *tensor.Tensor {
	defer p.time("Concat", time.Now())
	return p.Backend.Concat(axis, ts...)
}
func (p *Backend) Slice(x *tensor.Tensor, axis, start, end int) *tensor.Tensor {
	defer p.time("Slice", time.Now())
	return p.Backend.Slice(x, axis, start, end)
}
func (p *Backend) Permute(x *tensor.Tensor, perm ...int) *tensor.Tensor {
	defer p.time("Permute", time.Now())
	return p.Backend.Permute(x, perm...)
}
func (p *Backend) Upsample(x *tensor.Tensor, h, w int) *tensor.Tensor {
	defer p.time("Upsample", time.Now())
	return p.Backend.Upsample(x, h, w)
}
func (p *Backend) Embedding(t *tensor.Tensor, ids []int32) *tensor.Tensor {
	defer p.time("Embedding", time.Now())
	return p.Backend.Embedding(t, ids)
}
func (p *Backend) Cast(x *tensor.Tensor, dt tensor.DType) *tensor.Tensor {
	defer p.time("Cast", time.Now())
	return p.Backend.Cast(x, dt)
}
func (p *Backend) Mean(x *tensor.Tensor, axis int) *tensor.Tensor {
	defer p.time("Mean", time.Now())
	return p.Backend.Mean(x, axis)
}

// GroupNormSiLU forwards the fused op when the wrapped backend has it.
func (p *Backend) GroupNormSiLU(x *tensor.Tensor, g int, w, b *tensor.Tensor, eps float32) *tensor.Tensor {
	defer p.time("GroupNormSiLU", time.Now())
	return tensor.GroupNormSiLU(p.Backend, x, g, w, b, eps)
}

// Linear forwards the fused op when the wrapped backend has it.
func (p *Backend) Linear(x, w, b *tensor.Tensor) *tensor.Tensor {
	defer p.timeFlops("Linear", time.Now(), 2*float64(x.Numel())*float64(w.Dim(0)))
	return tensor.Linear(p.Backend, x, w, b)
}

// MetricReporter is what ReportGFLOPS reports to (a *testing.B).
type MetricReporter interface {
	ReportMetric(n float64, unit string)
}

// ReportGFLOPS reports the throughput of each named op that counted FLOPs
// as a benchmark metric "<op>-GFLOP/s".
func (p *Backend) ReportGFLOPS(r MetricReporter, ops ...string) {
	for _, s := range p.Stats() {
		for _, op := range ops {
			if s.Op == op && s.Flops > 0 {
				r.ReportMetric(s.GFLOPS(), op+"-GFLOP/s")
			}
		}
	}
}
