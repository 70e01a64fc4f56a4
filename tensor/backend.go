package tensor

// Backend allocates tensors and computes on them. Every op returns a new
// tensor owned by the same backend and never modifies its inputs. Inputs
// must all belong to this backend. Unless stated otherwise an op's output
// has the dtype of its first input; backends compute in float32 (fp32
// accumulation for reductions, norms and softmax) whatever the storage type.
//
// Shape errors are programming errors in model code and panic with a message
// naming the op and the shapes; runtime failures that a user can cause (out
// of device memory, a missing library) are returned by the constructors of a
// backend or reported by Err.
type Backend interface {
	// Name identifies the backend ("cpu", "cuda:0").
	Name() string

	// Zeros allocates a zero-filled tensor.
	Zeros(dt DType, shape ...int) *Tensor
	// FromFloat32 copies host data into a new tensor of the given dtype
	// (rounding to nearest even for F16/BF16). len(data) must equal the
	// shape's element count.
	FromFloat32(dt DType, shape Shape, data []float32) *Tensor
	// ToFloat32 copies a tensor to the host, widening to float32.
	ToFloat32(t *Tensor) []float32
	// Free releases storage early (see Tensor.Free).
	Free(t *Tensor)
	// Err returns the first asynchronous failure (e.g. a kernel launch
	// error) since the backend was created, or nil. CPU never fails.
	Err() error

	// MatMul multiplies the last two dimensions: a is [..., M, K] (or
	// [..., K, M] with transA), b is [..., K, N] (or [..., N, K] with
	// transB). Leading (batch) dimensions broadcast; a rank-2 b against a
	// batched a is the common Linear case (x @ W^T with transB).
	MatMul(a, b *Tensor, transA, transB bool) *Tensor
	// Conv2D: x [N, C, H, W], w [O, C, kh, kw], bias [O] or nil.
	Conv2D(x, w, bias *Tensor, stride, padding int) *Tensor
	// GroupNorm over [N, C, ...] with C split into groups; weight and bias
	// are [C] (nil for none).
	GroupNorm(x *Tensor, groups int, weight, bias *Tensor, eps float32) *Tensor
	// LayerNorm normalises the last dimension; weight and bias are [D] or nil.
	LayerNorm(x *Tensor, weight, bias *Tensor, eps float32) *Tensor
	// Attention is scaled dot-product attention: q [B, H, Lq, D],
	// k [B, H, Lk, D], v [B, H, Lk, Dv] -> [B, H, Lq, Dv]. mask (nil for
	// none) is additive and broadcasts to [B, H, Lq, Lk].
	Attention(q, k, v, mask *Tensor, scale float32) *Tensor
	// Softmax over the last dimension.
	Softmax(x *Tensor) *Tensor

	// SiLU x*sigmoid(x); GELU the exact erf form; QuickGELU x*sigmoid(1.702x).
	SiLU(x *Tensor) *Tensor
	GELU(x *Tensor) *Tensor
	QuickGELU(x *Tensor) *Tensor
	// GEGLU splits the last dimension in halves (a, g) and returns a*gelu(g).
	GEGLU(x *Tensor) *Tensor

	// Add and Mul broadcast numpy-style (trailing dimensions aligned).
	Add(a, b *Tensor) *Tensor
	Mul(a, b *Tensor) *Tensor
	// Scale returns x*s.
	Scale(x *Tensor, s float32) *Tensor

	// Concat joins tensors along axis; all other dimensions must match.
	Concat(axis int, ts ...*Tensor) *Tensor
	// Slice keeps [start, end) of one axis.
	Slice(x *Tensor, axis, start, end int) *Tensor
	// Permute reorders dimensions: out.Dim(i) = x.Dim(perm[i]).
	Permute(x *Tensor, perm ...int) *Tensor
	// Upsample resizes [N, C, H, W] to [N, C, h, w] with nearest-neighbour
	// sampling as PyTorch's "nearest" does it: source index
	// floor(i * float32(H/h)), see NearestIndex (it differs from the exact
	// floor(i*H/h) for rare size ratios, never for the 2x and odd-size
	// resizes of the UNet and VAE).
	Upsample(x *Tensor, h, w int) *Tensor
	// Embedding gathers rows of table [V, D] for ids -> [len(ids), D].
	Embedding(table *Tensor, ids []int32) *Tensor
	// Cast converts the storage dtype.
	Cast(x *Tensor, dt DType) *Tensor
	// Mean averages over one axis, keeping it with size 1.
	Mean(x *Tensor, axis int) *Tensor
}

// GroupNormSiLUer is an optional fused GroupNorm followed by SiLU.
type GroupNormSiLUer interface {
	GroupNormSiLU(x *Tensor, groups int, weight, bias *Tensor, eps float32) *Tensor
}

// GroupNormSiLU uses the backend's fused op when it has one.
func GroupNormSiLU(b Backend, x *Tensor, groups int, weight, bias *Tensor, eps float32) *Tensor {
	if f, ok := b.(GroupNormSiLUer); ok {
		return f.GroupNormSiLU(x, groups, weight, bias, eps)
	}
	n := b.GroupNorm(x, groups, weight, bias, eps)
	out := b.SiLU(n)
	n.Free()
	return out
}

// Linear computes x @ w^T + bias for x [..., in], w [out, in], bias [out]
// or nil. Backends may implement Linearer to fuse the bias.
func Linear(b Backend, x, w, bias *Tensor) *Tensor {
	if f, ok := b.(Linearer); ok {
		return f.Linear(x, w, bias)
	}
	y := b.MatMul(x, w, false, true)
	if bias == nil {
		return y
	}
	out := b.Add(y, bias)
	y.Free()
	return out
}

// Linearer is an optional fused matmul + bias.
type Linearer interface {
	Linear(x, w, bias *Tensor) *Tensor
}

// AddMatMul computes c + a·b for a [M, K], b [K, N] and c [M, N] as a new
// tensor of c's dtype (LoRA merges: W + up·down). Backends may implement
// AddMatMuler so the product is never materialised.
func AddMatMul(be Backend, c, a, b *Tensor) *Tensor {
	if f, ok := be.(AddMatMuler); ok {
		return f.AddMatMul(c, a, b)
	}
	y := be.MatMul(a, b, false, false)
	out := be.Add(c, y)
	y.Free()
	return out
}

// AddMatMuler is an optional fused c + a·b (see AddMatMul).
type AddMatMuler interface {
	AddMatMul(c, a, b *Tensor) *Tensor
}
