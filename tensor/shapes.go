package tensor

import "fmt"

// Shape helpers shared by every backend. Each validates the arguments of one
// Backend op and returns the output shape, panicking with a message that
// names the op and the shapes on a mismatch (shape errors are programming
// errors in model code, see Backend). Keeping them here means the CPU and
// CUDA backends accept exactly the same shapes and fail with the same words.

func shapePanic(op string, format string, args ...any) {
	panic(fmt.Sprintf("tensor: %s: %s", op, fmt.Sprintf(format, args...)))
}

// NormAxis turns a possibly negative axis into 0..rank-1 and panics naming
// op when it is out of range.
func NormAxis(op string, axis, rank int) int {
	a := axis
	if a < 0 {
		a += rank
	}
	if a < 0 || a >= rank {
		shapePanic(op, "axis %d out of range for rank %d", axis, rank)
	}
	return a
}

// BroadcastShapes returns the numpy-style broadcast of a and b: trailing
// dimensions are aligned and each pair must be equal or contain a 1.
func BroadcastShapes(op string, a, b Shape) Shape {
	n := max(len(a), len(b))
	out := make(Shape, n)
	for i := range n {
		da, db := 1, 1
		if j := len(a) - n + i; j >= 0 {
			da = a[j]
		}
		if j := len(b) - n + i; j >= 0 {
			db = b[j]
		}
		switch {
		case da == db:
			out[i] = da
		case da == 1:
			out[i] = db
		case db == 1:
			out[i] = da
		default:
			shapePanic(op, "shapes %s and %s do not broadcast (dimension %d: %d vs %d)", a, b, i-n, da, db)
		}
	}
	return out
}

// BroadcastStrides returns, for a dense row-major tensor of shape s
// broadcast to shape out (len(out) >= len(s)), the element stride of each
// output dimension in s's storage: 0 where s is broadcast.
func BroadcastStrides(s, out Shape) []int {
	st := make([]int, len(out))
	acc := 1
	for i := len(out) - 1; i >= 0; i-- {
		j := len(s) - len(out) + i
		if j < 0 {
			continue
		}
		if s[j] != 1 {
			st[i] = acc
		}
		acc *= s[j]
	}
	return st
}

// MatMulDims describes a validated MatMul: the broadcast batch shape and the
// matrix sizes of one product, C[M,N] = op(A)[M,K] op(B)[K,N].
type MatMulDims struct {
	Batch   Shape
	M, N, K int
}

// MatMulShape validates MatMul(a, b, transA, transB) and returns the output
// shape and sizes.
func MatMulShape(a, b Shape, transA, transB bool) (Shape, MatMulDims) {
	const op = "MatMul"
	if len(a) < 2 || len(b) < 2 {
		shapePanic(op, "operands %s and %s must have rank >= 2", a, b)
	}
	m, ka := a[len(a)-2], a[len(a)-1]
	if transA {
		m, ka = ka, m
	}
	kb, n := b[len(b)-2], b[len(b)-1]
	if transB {
		kb, n = n, kb
	}
	if ka != kb {
		shapePanic(op, "a %s (transA=%v) and b %s (transB=%v): inner dimensions %d and %d differ", a, transA, b, transB, ka, kb)
	}
	batch := BroadcastShapes(op, a[:len(a)-2], b[:len(b)-2])
	out := append(batch.Clone(), m, n)
	return out, MatMulDims{Batch: batch, M: m, N: n, K: ka}
}

// ConvOutSize is the output length of a convolution along one axis.
func ConvOutSize(op string, in, kernel, stride, padding int) int {
	if stride < 1 || padding < 0 {
		shapePanic(op, "stride %d and padding %d (want stride >= 1, padding >= 0)", stride, padding)
	}
	span := in + 2*padding - kernel
	if kernel < 1 || span < 0 {
		shapePanic(op, "kernel %d larger than padded input %d+2*%d", kernel, in, padding)
	}
	return span/stride + 1
}

// Conv2DShape validates Conv2D(x, w, bias, stride, padding); bias may be
// nil (pass a nil Shape).
func Conv2DShape(x, w, bias Shape, stride, padding int) Shape {
	const op = "Conv2D"
	if len(x) != 4 || len(w) != 4 {
		shapePanic(op, "x %s and w %s must both be rank 4 ([N C H W] and [O C kh kw])", x, w)
	}
	if x[1] != w[1] {
		shapePanic(op, "x %s has %d channels but w %s expects %d", x, x[1], w, w[1])
	}
	if bias != nil && (len(bias) != 1 || bias[0] != w[0]) {
		shapePanic(op, "bias %s does not match w %s (want [%d])", bias, w, w[0])
	}
	ho := ConvOutSize(op, x[2], w[2], stride, padding)
	wo := ConvOutSize(op, x[3], w[3], stride, padding)
	return Shape{x[0], w[0], ho, wo}
}

// CheckNormParams validates a norm's weight or bias ([n] or nil).
func CheckNormParams(op string, x Shape, n int, weight, bias Shape) {
	for _, p := range []struct {
		name string
		s    Shape
	}{{"weight", weight}, {"bias", bias}} {
		if p.s != nil && (len(p.s) != 1 || p.s[0] != n) {
			shapePanic(op, "%s %s does not match x %s (want [%d])", p.name, p.s, x, n)
		}
	}
}

// GroupNormShape validates GroupNorm(x, groups, weight, bias).
func GroupNormShape(x Shape, groups int, weight, bias Shape) {
	const op = "GroupNorm"
	if len(x) < 2 {
		shapePanic(op, "x %s must be [N C ...]", x)
	}
	if groups < 1 || x[1]%groups != 0 {
		shapePanic(op, "%d channels of x %s do not split into %d groups", x[1], x, groups)
	}
	CheckNormParams(op, x, x[1], weight, bias)
}

// LayerNormShape validates LayerNorm(x, weight, bias).
func LayerNormShape(x Shape, weight, bias Shape) {
	const op = "LayerNorm"
	if len(x) < 1 {
		shapePanic(op, "x %s has no last dimension", x)
	}
	CheckNormParams(op, x, x[len(x)-1], weight, bias)
}

// AttentionShape validates Attention(q, k, v, mask); mask may be nil.
func AttentionShape(q, k, v, mask Shape) Shape {
	const op = "Attention"
	if len(q) != 4 || len(k) != 4 || len(v) != 4 {
		shapePanic(op, "q %s, k %s, v %s must be rank 4 [B H L D]", q, k, v)
	}
	if k[0] != q[0] || k[1] != q[1] || v[0] != q[0] || v[1] != q[1] {
		shapePanic(op, "batch/head dimensions of q %s, k %s, v %s differ", q, k, v)
	}
	if k[3] != q[3] {
		shapePanic(op, "q %s and k %s have different head sizes", q, k)
	}
	if v[2] != k[2] {
		shapePanic(op, "k %s and v %s have different lengths", k, v)
	}
	if mask != nil {
		full := Shape{q[0], q[1], q[2], k[2]}
		if len(mask) > 4 || !BroadcastShapes(op, mask, full).Equal(full) {
			shapePanic(op, "mask %s does not broadcast to %s", mask, full)
		}
	}
	return Shape{q[0], q[1], q[2], v[3]}
}

// GEGLUShape validates GEGLU(x): the last dimension must be even.
func GEGLUShape(x Shape) Shape {
	if len(x) < 1 || x[len(x)-1]%2 != 0 {
		shapePanic("GEGLU", "last dimension of x %s must be even", x)
	}
	out := x.Clone()
	out[len(out)-1] /= 2
	return out
}

// ConcatShape validates Concat(axis, shapes...) and returns the output shape
// and the normalised axis.
func ConcatShape(axis int, shapes ...Shape) (Shape, int) {
	const op = "Concat"
	if len(shapes) == 0 {
		shapePanic(op, "no tensors")
	}
	first := shapes[0]
	ax := NormAxis(op, axis, len(first))
	out := first.Clone()
	for _, s := range shapes[1:] {
		if len(s) != len(first) {
			shapePanic(op, "shapes %s and %s have different ranks", first, s)
		}
		for i := range s {
			if i != ax && s[i] != first[i] {
				shapePanic(op, "shapes %s and %s differ outside axis %d", first, s, ax)
			}
		}
		out[ax] += s[ax]
	}
	return out, ax
}

// SliceShape validates Slice(x, axis, start, end) and returns the output
// shape and the normalised axis.
func SliceShape(x Shape, axis, start, end int) (Shape, int) {
	const op = "Slice"
	ax := NormAxis(op, axis, len(x))
	if start < 0 || end < start || end > x[ax] {
		shapePanic(op, "range [%d, %d) out of bounds for axis %d of %s", start, end, ax, x)
	}
	out := x.Clone()
	out[ax] = end - start
	return out, ax
}

// PermuteShape validates Permute(x, perm...) and returns the output shape.
func PermuteShape(x Shape, perm []int) Shape {
	const op = "Permute"
	if len(perm) != len(x) {
		shapePanic(op, "perm %v has %d entries for x %s of rank %d", perm, len(perm), x, len(x))
	}
	seen := make([]bool, len(x))
	out := make(Shape, len(x))
	for i, p := range perm {
		if p < 0 || p >= len(x) || seen[p] {
			shapePanic(op, "perm %v is not a permutation of 0..%d (x %s)", perm, len(x)-1, x)
		}
		seen[p] = true
		out[i] = x[p]
	}
	return out
}

// UpsampleShape validates Upsample(x, h, w).
func UpsampleShape(x Shape, h, w int) Shape {
	if len(x) != 4 || h < 1 || w < 1 {
		shapePanic("Upsample", "x %s to %dx%d (want [N C H W] and positive size)", x, h, w)
	}
	return Shape{x[0], x[1], h, w}
}

// NearestIndex is PyTorch's "nearest" source index for output index dst
// when resizing in -> out without an explicit scale factor: the scale is
// the float32 in/out, and src = min(floor(float32(dst)*scale), in-1). This
// equals floor(dst*in/out) for every 2x and odd-size (2n±1) resize the
// models use, but differs in rare ratios (e.g. 2 -> 82 at 41), where torch's
// float arithmetic is what diffusers computes.
func NearestIndex(dst, in, out int) int {
	if out == in {
		return dst
	}
	if out == 2*in {
		return dst >> 1
	}
	scale := float32(in) / float32(out)
	src := int(float32(dst) * scale) // truncation == floor for dst >= 0
	return min(src, in-1)
}

// EmbeddingShape validates Embedding(table, ids).
func EmbeddingShape(table Shape, ids []int32) Shape {
	const op = "Embedding"
	if len(table) != 2 {
		shapePanic(op, "table %s must be [V D]", table)
	}
	for i, id := range ids {
		if id < 0 || int(id) >= table[0] {
			shapePanic(op, "id %d at position %d out of range for table %s", id, i, table)
		}
	}
	return Shape{len(ids), table[1]}
}

// MeanShape validates Mean(x, axis) and returns the output shape and the
// normalised axis.
func MeanShape(x Shape, axis int) (Shape, int) {
	ax := NormAxis("Mean", axis, len(x))
	out := x.Clone()
	out[ax] = 1
	return out, ax
}
