package backendtest

import (
	"sync"

	"github.com/sdxl-go/sdxl/tensor"
)

// Live wraps a backend and counts the bytes of live tensors, each op's
// output from its creation until it is freed, as a device allocator would
// hold them: memory tests compare a forward pass's peak with an estimate,
// or check that a pass frees everything it made. Tensors are keyed by
// their storage handle, which reshaped views share. The fused ops of the
// optional interfaces count as one output. Like every backend it is safe
// for concurrent use (nn.InitRandom fills parameters in parallel); read
// Bytes and Peak when no op is running.
type Live struct {
	tensor.Backend
	// Bytes is what live tensors hold now, Peak its maximum since the last
	// Reset.
	Bytes, Peak int64
	held        map[any]int64
	mu          sync.Mutex
}

// NewLive wraps b.
func NewLive(b tensor.Backend) *Live { return &Live{Backend: b, held: map[any]int64{}} }

// Reset starts a measurement: tensors live so far are forgotten.
func (l *Live) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.Bytes, l.Peak = 0, 0
	l.held = map[any]int64{}
}

// Count is the number of live tensors.
func (l *Live) Count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.held)
}

func (l *Live) wrap(x *tensor.Tensor) *tensor.Tensor {
	if n := int64(x.Numel() * x.DType().Size()); n > 0 {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.held[x.Storage] = n
		l.Bytes += n
		l.Peak = max(l.Peak, l.Bytes)
	}
	return tensor.New(l, x.Shape(), x.DType(), x.Storage)
}

// Free implements tensor.Backend.
func (l *Live) Free(x *tensor.Tensor) {
	l.mu.Lock()
	if n, ok := l.held[x.Storage]; ok {
		l.Bytes -= n
		delete(l.held, x.Storage)
	}
	l.mu.Unlock()
	l.Backend.Free(x)
}

func (l *Live) Zeros(dt tensor.DType, shape ...int) *tensor.Tensor {
	return l.wrap(l.Backend.Zeros(dt, shape...))
}
func (l *Live) FromFloat32(dt tensor.DType, s tensor.Shape, d []float32) *tensor.Tensor {
	return l.wrap(l.Backend.FromFloat32(dt, s, d))
}
func (l *Live) MatMul(a, b *tensor.Tensor, ta, tb bool) *tensor.Tensor {
	return l.wrap(l.Backend.MatMul(a, b, ta, tb))
}
func (l *Live) Conv2D(x, w, b *tensor.Tensor, s, p int) *tensor.Tensor {
	return l.wrap(l.Backend.Conv2D(x, w, b, s, p))
}
func (l *Live) GroupNorm(x *tensor.Tensor, g int, w, b *tensor.Tensor, e float32) *tensor.Tensor {
	return l.wrap(l.Backend.GroupNorm(x, g, w, b, e))
}
func (l *Live) GroupNormSiLU(x *tensor.Tensor, g int, w, b *tensor.Tensor, e float32) *tensor.Tensor {
	return l.wrap(tensor.GroupNormSiLU(l.Backend, x, g, w, b, e))
}
func (l *Live) LayerNorm(x, w, b *tensor.Tensor, e float32) *tensor.Tensor {
	return l.wrap(l.Backend.LayerNorm(x, w, b, e))
}
func (l *Live) Attention(q, k, v, m *tensor.Tensor, s float32) *tensor.Tensor {
	return l.wrap(l.Backend.Attention(q, k, v, m, s))
}
func (l *Live) Linear(x, w, b *tensor.Tensor) *tensor.Tensor {
	return l.wrap(tensor.Linear(l.Backend, x, w, b))
}
func (l *Live) AddMatMul(c, a, b *tensor.Tensor) *tensor.Tensor {
	return l.wrap(tensor.AddMatMul(l.Backend, c, a, b))
}
func (l *Live) Softmax(x *tensor.Tensor) *tensor.Tensor   { return l.wrap(l.Backend.Softmax(x)) }
func (l *Live) SiLU(x *tensor.Tensor) *tensor.Tensor      { return l.wrap(l.Backend.SiLU(x)) }
func (l *Live) GELU(x *tensor.Tensor) *tensor.Tensor      { return l.wrap(l.Backend.GELU(x)) }
func (l *Live) QuickGELU(x *tensor.Tensor) *tensor.Tensor { return l.wrap(l.Backend.QuickGELU(x)) }
func (l *Live) GEGLU(x *tensor.Tensor) *tensor.Tensor     { return l.wrap(l.Backend.GEGLU(x)) }
func (l *Live) Add(a, b *tensor.Tensor) *tensor.Tensor    { return l.wrap(l.Backend.Add(a, b)) }
func (l *Live) Mul(a, b *tensor.Tensor) *tensor.Tensor    { return l.wrap(l.Backend.Mul(a, b)) }
func (l *Live) Scale(x *tensor.Tensor, s float32) *tensor.Tensor {
	return l.wrap(l.Backend.Scale(x, s))
}
func (l *Live) Concat(axis int, ts ...*tensor.Tensor) *tensor.Tensor {
	return l.wrap(l.Backend.Concat(axis, ts...))
}
func (l *Live) Slice(x *tensor.Tensor, axis, s, e int) *tensor.Tensor {
	return l.wrap(l.Backend.Slice(x, axis, s, e))
}
func (l *Live) Permute(x *tensor.Tensor, p ...int) *tensor.Tensor {
	return l.wrap(l.Backend.Permute(x, p...))
}
func (l *Live) Upsample(x *tensor.Tensor, h, w int) *tensor.Tensor {
	return l.wrap(l.Backend.Upsample(x, h, w))
}
func (l *Live) Embedding(tb *tensor.Tensor, ids []int32) *tensor.Tensor {
	return l.wrap(l.Backend.Embedding(tb, ids))
}
func (l *Live) Cast(x *tensor.Tensor, dt tensor.DType) *tensor.Tensor {
	return l.wrap(l.Backend.Cast(x, dt))
}
func (l *Live) Mean(x *tensor.Tensor, axis int) *tensor.Tensor {
	return l.wrap(l.Backend.Mean(x, axis))
}

var (
	_ tensor.Backend         = (*Live)(nil)
	_ tensor.GroupNormSiLUer = (*Live)(nil)
	_ tensor.Linearer        = (*Live)(nil)
	_ tensor.AddMatMuler     = (*Live)(nil)
)
