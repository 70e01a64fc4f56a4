package cpu

import "sync"

// outPool recycles the float32 buffers of freed tensors as outputs of
// later ops. Model code frees its intermediates (Tensor.Free, as the CUDA
// backend needs), and the same shapes come back at every layer and step:
// reusing a buffer skips the runtime's zeroing of a fresh allocation and
// the page faults of memory the runtime had returned to the system, and
// keeps the garbage collector from piling up dead activations. Only
// buffers of at least outPoolMin elements are kept, at most outPoolMax
// bytes in all; buffers are matched by exact length.
type outPool struct {
	mu    sync.Mutex
	free  map[int][][]float32
	bytes int64
}

const (
	outPoolMin = 1 << 16 // elements (256 KiB)
	outPoolMax = 1 << 30 // bytes
)

// get returns a pooled buffer of exactly n elements, or nil.
func (p *outPool) get(n int) []float32 {
	if n < outPoolMin {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.free[n]
	if len(l) == 0 {
		return nil
	}
	s := l[len(l)-1]
	l[len(l)-1] = nil
	p.free[n] = l[:len(l)-1]
	p.bytes -= 4 * int64(n)
	return s
}

// put offers s, whose tensor was freed, for reuse.
func (p *outPool) put(s []float32) {
	n := len(s)
	if n < outPoolMin {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bytes+4*int64(n) > outPoolMax {
		return
	}
	if p.free == nil {
		p.free = map[int][][]float32{}
	}
	p.free[n] = append(p.free[n], s[:n:n])
	p.bytes += 4 * int64(n)
}
