package cuda

import (
	"testing"
	"time"

	"github.com/sdxl-go/sdxl/tensor"
)

// nullDevice accepts every call and does nothing: with it, a benchmark
// measures only the Go side of an op (shape checks, tensor and closure
// allocation, the hand-off to the device thread, the pool), which is what
// a GPU cannot hide when kernels are short.
type nullDevice struct {
	next     uint64
	launches int
}

func (n *nullDevice) info() DeviceInfo {
	return DeviceInfo{Name: "null", Major: 9, SMs: 132, MaxThreadsPerSM: 2048, TotalMemory: 80 << 30}
}
func (n *nullDevice) memAlloc(size int) (uint64, error) {
	n.next += uint64(size+4095) &^ 4095
	return n.next, nil
}
func (n *nullDevice) memFree(uint64) error          { return nil }
func (n *nullDevice) memsetZero(uint64, int) error  { return nil }
func (n *nullDevice) upload(uint64, []byte) error   { return nil }
func (n *nullDevice) download([]byte, uint64) error { return nil }
func (n *nullDevice) prepare(*kernelModule) error   { return nil }
func (n *nullDevice) gemm(*gemmCall) error          { return nil }
func (n *nullDevice) sync() error                   { return nil }
func (n *nullDevice) close() error                  { return nil }
func (n *nullDevice) launch(_ *kernelModule, name string, grid, block [3]uint32, _ *kargs) error {
	n.launches++
	return checkLaunch(name, grid, block)
}

func newNullBackend(tb testing.TB) *Backend {
	tb.Helper()
	b, err := newBackend("null", Options{}, func() (device, error) { return &nullDevice{}, nil })
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Close() })
	return b
}

// BenchmarkDispatch is the Go-side cost per op on a device that does
// nothing: an elementwise op and its Free, queued back to back as a UNet
// forward does, synchronised once at the end.
func BenchmarkDispatch(b *testing.B) {
	for _, c := range []struct {
		name string
		op   func(g *Backend, x, y *tensor.Tensor) *tensor.Tensor
	}{
		{"Scale", func(g *Backend, x, _ *tensor.Tensor) *tensor.Tensor { return g.Scale(x, 2) }},
		{"Add", func(g *Backend, x, y *tensor.Tensor) *tensor.Tensor { return g.Add(x, y) }},
		{"Linear", func(g *Backend, x, y *tensor.Tensor) *tensor.Tensor { return g.Linear(x, y, nil) }},
		{"GroupNormSiLU", func(g *Backend, x, _ *tensor.Tensor) *tensor.Tensor {
			return g.GroupNormSiLU(x.Reshape(2, 320, 32, 32), 32, nil, nil, 1e-5)
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			g := newNullBackend(b)
			x := g.Zeros(tensor.F16, 2*32*32, 320)
			y := g.Zeros(tensor.F16, 320, 320)
			if c.name == "Add" {
				y = g.Zeros(tensor.F16, 320)
			}
			g.Sync()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				c.op(g, x, y).Free()
			}
			if err := g.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N)/1e3, "us/op")
		})
	}
}
