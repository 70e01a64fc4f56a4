package cpu

import (
	"github.com/sdxl-go/sdxl/tensor"
)

// packedWeight is a weight matrix W (rows×cols, row-major) rearranged into
// panels of p rows, each stored column-major (k-major): element (r, c) is
// at ((r/p)*cols + c)*p + r%p, rows padded with zeros to a multiple of p.
// With p = gemmNR this is the packed op(B) = Wᵀ of a Linear weight
// [out, in]; with p = mr it is the packed A of a Conv2D weight
// [out, in·kh·kw] for that micro-kernel. Half-precision weights keep their
// 16-bit patterns (h) and are widened block by block inside the GEMM.
type packedWeight struct {
	rows, cols, p int
	dt            tensor.DType
	f             []float32 // F32 panels, or nil
	h             []uint16  // F16/BF16 panels, or nil
}

func (pw *packedWeight) asB() packedB {
	return packedB{k: pw.cols, n: pw.rows, data: pw.f, h: pw.h, dt: pw.dt}
}

func (pw *packedWeight) asA() *packedA {
	return &packedA{m: pw.rows, k: pw.cols, mr: pw.p, data: pw.f, h: pw.h, dt: pw.dt}
}

// weight returns w (a rows×cols matrix) packed in panels of p rows,
// packing it the first time and keeping only the packed form from then on
// (see storage). A different request (another shape or panel height, as
// when backends with different kernels share a model) re-packs it.
func (b *Backend) weight(op string, w *tensor.Tensor, rows, cols, p int) *packedWeight {
	s := stor(op, w)
	s.mu.Lock()
	defer s.mu.Unlock()
	if pw := s.packed; pw != nil && pw.rows == rows && pw.cols == cols && pw.p == p {
		return pw
	}
	f, h := s.f, s.h
	if pw := s.packed; pw != nil {
		f, h = unpanelize(pw.f, pw.rows, pw.cols, pw.p), unpanelize(pw.h, pw.rows, pw.cols, pw.p)
	}
	pw := &packedWeight{rows: rows, cols: cols, p: p, dt: s.dt}
	size := (rows + p - 1) / p * p * cols
	switch {
	case h != nil:
		pw.h = make([]uint16, size)
		b.parallel((rows+p-1)/p, max(1, (1<<16)/max(1, p*cols)), func(lo, hi int) {
			panelize(pw.h, h, rows, cols, p, lo, hi)
		})
	case p == gemmNR:
		pw.f = make([]float32, size)
		b.packB(b.threads, pw.f, true, cols, rows, f, cols)
	case p == b.mk.mr:
		pw.f = make([]float32, size)
		b.packAllA(b.threads, pw.f, false, rows, cols, f, cols)
	default:
		pw.f = make([]float32, size)
		panelize(pw.f, f, rows, cols, p, 0, (rows+p-1)/p)
	}
	s.packed, s.f, s.h = pw, nil, nil
	return pw
}

// unpack returns the row-major float32 values of a packed weight.
func (b *Backend) unpack(pw *packedWeight, n int) []float32 {
	if pw.f != nil {
		return unpanelize(pw.f, pw.rows, pw.cols, pw.p)
	}
	out := make([]float32, n)
	b.v.widen(pw.dt, out, unpanelize(pw.h, pw.rows, pw.cols, pw.p))
	return out
}

// panelize packs panels [lo, hi) of src (rows×cols) into dst (see
// packedWeight).
func panelize[T float32 | uint16](dst, src []T, rows, cols, p, lo, hi int) {
	for pi := lo; pi < hi; pi++ {
		pan := dst[pi*p*cols : (pi+1)*p*cols]
		n := min(p, rows-pi*p)
		if n < p {
			clear(pan)
		}
		for r := range n {
			row := src[(pi*p+r)*cols : (pi*p+r+1)*cols]
			for c, v := range row {
				pan[c*p+r] = v
			}
		}
	}
}

// unpanelize is the inverse of panelize over all panels (nil for nil).
func unpanelize[T float32 | uint16](src []T, rows, cols, p int) []T {
	if src == nil {
		return nil
	}
	out := make([]T, rows*cols)
	for r := range rows {
		pan := src[r/p*p*cols:]
		for c := range cols {
			out[r*cols+c] = pan[c*p+r%p]
		}
	}
	return out
}
