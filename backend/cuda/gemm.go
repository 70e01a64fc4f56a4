package cuda

import (
	"fmt"
	"math"

	"github.com/sdxl-go/sdxl/tensor"
)

// computeType is the cuBLAS compute type for GEMMs with storage dtype dt:
// float32 accumulation always; TF32 inputs only for F32 when allowed.
func (b *Backend) computeType(dt tensor.DType) int32 {
	if dt == tensor.F32 && b.opts.AllowTF32 {
		return cublasCompute32FFastTF32
	}
	return cublasCompute32F
}

// gemm issues a row-major product through cuBLAS.
func (d *devState) gemm(g rowGemm) error {
	if g.m == 0 || g.n == 0 || max(g.batch, 1) == 0 {
		return nil
	}
	c := g.colMajor(d.b.computeType(g.aType))
	if err := c.validate(); err != nil {
		return err
	}
	return d.dev.gemm(&c)
}

// promote converts the inputs of an op that needs one operand type (cuBLAS
// takes A and B of the same type) to F32 when their dtypes differ, and
// returns a function that frees the converted copies.
func (b *Backend) promote(ts ...*tensor.Tensor) ([]*tensor.Tensor, bool, func()) {
	same := true
	for _, t := range ts {
		if t != nil && t.DType() != ts[0].DType() {
			same = false
		}
	}
	if same {
		return ts, false, func() {}
	}
	out := make([]*tensor.Tensor, len(ts))
	var tmp []*tensor.Tensor
	for i, t := range ts {
		if t == nil || t.DType() == tensor.F32 {
			out[i] = t
			continue
		}
		out[i] = b.Cast(t, tensor.F32)
		tmp = append(tmp, out[i])
	}
	return out, true, func() {
		for _, t := range tmp {
			t.Free()
		}
	}
}

// MatMul implements tensor.Backend with cuBLAS (float32 accumulation).
// Operands of different dtypes are multiplied in F32.
func (b *Backend) MatMul(x, y *tensor.Tensor, transA, transB bool) *tensor.Tensor {
	const op = "MatMul"
	os, dims := tensor.MatMulShape(x.Shape(), y.Shape(), transA, transB)
	if in, promoted, done := b.promote(x, y); promoted {
		r := b.MatMul(in[0], in[1], transA, transB)
		out := b.Cast(r, x.DType())
		r.Free()
		done()
		return out
	}
	xm, ym := b.mem(op, x), b.mem(op, y)
	dt := x.DType()
	out, om := b.newTensor(dt, os)
	M, N, K := dims.M, dims.N, dims.K
	lda, ldb := K, N
	if transA {
		lda = M
	}
	if transB {
		ldb = K
	}
	xBatch := tensor.Shape(x.Shape()[:x.Rank()-2])
	yBatch := tensor.Shape(y.Shape()[:y.Rank()-2])
	nb := dims.Batch.Numel()
	base := rowGemm{transA: transA, transB: transB, m: M, n: N, k: K, alpha: 1,
		aType: dt, bType: dt, cType: dt, lda: lda, ldb: ldb, ldc: N, batch: 1}
	// The batch is issued as: one GEMM when y has no batch and x is not
	// transposed (x's batch folds into its rows, the Linear case); one
	// strided batched GEMM when neither operand is broadcast; otherwise one
	// GEMM per batch item at its broadcast offsets.
	var plan []rowGemm // a, b, c hold element offsets until the task runs
	switch {
	case yBatch.Numel() == 1 && !transA:
		g := base
		g.m = M * nb
		plan = append(plan, g)
	case xBatch.Numel() == nb && yBatch.Numel() == nb:
		g := base
		g.batch = nb
		g.strideA, g.strideB, g.strideC = int64(M*K), int64(K*N), int64(M*N)
		plan = append(plan, g)
	default:
		xs := tensor.BroadcastStrides(xBatch, dims.Batch)
		ys := tensor.BroadcastStrides(yBatch, dims.Batch)
		idx := make([]int, len(dims.Batch))
		for i := range nb {
			var xo, yo int
			for j := range idx {
				xo += idx[j] * xs[j]
				yo += idx[j] * ys[j]
			}
			g := base
			g.a, g.b, g.c = uint64(xo*M*K), uint64(yo*K*N), uint64(i*M*N)
			plan = append(plan, g)
			for j := len(idx) - 1; j >= 0; j-- {
				idx[j]++
				if idx[j] < dims.Batch[j] {
					break
				}
				idx[j] = 0
			}
		}
	}
	b.enqueue(op, x, func(d *devState) error {
		xp, err := d.ptr(xm)
		if err != nil {
			return err
		}
		yp, err := d.ptr(ym)
		if err != nil {
			return err
		}
		if err := d.alloc(om); err != nil || om.bytes == 0 {
			return err
		}
		if K == 0 {
			return d.dev.memsetZero(om.ptr, om.bytes)
		}
		for _, g := range plan {
			g.a = offset(xp, int64(g.a), dt)
			g.b = offset(yp, int64(g.b), dt)
			g.c = offset(om.ptr, int64(g.c), dt)
			if err := d.gemm(g); err != nil {
				return err
			}
		}
		return nil
	})
	return out
}

// Linear implements tensor.Linearer: x [..., in] @ w[out, in]^T + bias as
// one GEMM whose C starts as the broadcast bias (beta = 1), so the sum is
// rounded once.
func (b *Backend) Linear(x, w, bias *tensor.Tensor) *tensor.Tensor {
	const op = "Linear"
	if x.Rank() < 1 || w.Rank() != 2 || x.Dim(-1) != w.Dim(1) {
		panic(fmt.Sprintf("tensor: %s: x %v and w %v (want x [..., in] and w [out, in])", op, x.Shape(), w.Shape()))
	}
	if bias != nil && (bias.Rank() != 1 || bias.Dim(0) != w.Dim(0)) {
		panic(fmt.Sprintf("tensor: %s: bias %v does not match w %v", op, bias.Shape(), w.Shape()))
	}
	if x.DType() != w.DType() {
		y := b.MatMul(x, w, false, true)
		if bias == nil {
			return y
		}
		out := b.Add(y, bias)
		y.Free()
		return out
	}
	xm, wm, bm := b.mem(op, x), b.mem(op, w), b.optMem(op, bias)
	dt := x.DType()
	in, outF := w.Dim(1), w.Dim(0)
	lead := x.Shape()[:x.Rank()-1]
	rows := lead.Numel()
	os := append(lead.Clone(), outF)
	out, om := b.newTensor(dt, os)
	dtb := dt
	if bias != nil {
		dtb = bias.DType()
	}
	forceWide := b.forceWide
	b.enqueue(op, x, func(d *devState) error {
		xp, wp, bp, err := d.ptr3(xm, wm, bm)
		if err != nil {
			return err
		}
		if err := d.alloc(om); err != nil || om.bytes == 0 {
			return err
		}
		n := int64(rows * outF)
		beta := float32(0)
		if bias != nil {
			a := newArgs().i64(n).i64(1).i64(int64(outF)).ptr(bp).i32(dtc(dtb)).ptr(om.ptr).i32(dtc(dt)).i32(wide(n, forceWide))
			if err := d.launch1D(modElementwise, "k_bias_fill", n, a); err != nil {
				return err
			}
			beta = 1
		} else if in == 0 {
			return d.dev.memsetZero(om.ptr, om.bytes)
		}
		if in == 0 {
			return nil
		}
		return d.gemm(rowGemm{transB: true, m: rows, n: outF, k: in, alpha: 1, beta: beta,
			a: xp, b: wp, c: om.ptr, aType: dt, bType: dt, cType: dt, lda: in, ldb: in, ldc: outF, batch: 1})
	})
	return out
}

// Conv2D implements tensor.Backend as GEMMs: a 1x1 stride-1 convolution
// multiplies the weights by the image directly; any other goes through an
// im2col buffer, in chunks of output positions bounded by convChunkBytes.
// The output starts as the broadcast bias when there is one (beta = 1).
func (b *Backend) Conv2D(x, w, bias *tensor.Tensor, stride, padding int) *tensor.Tensor {
	const op = "Conv2D"
	os := tensor.Conv2DShape(x.Shape(), w.Shape(), optShape(bias), stride, padding)
	if in, promoted, done := b.promote(x, w); promoted {
		r := b.Conv2D(in[0], in[1], bias, stride, padding)
		out := b.Cast(r, x.DType())
		r.Free()
		done()
		return out
	}
	xm, wm, bm := b.mem(op, x), b.mem(op, w), b.optMem(op, bias)
	dt := x.DType()
	dtb := dt
	if bias != nil {
		dtb = bias.DType()
	}
	N, C, H, W := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	O, kh, kw := w.Dim(0), w.Dim(2), w.Dim(3)
	Ho, Wo := os[2], os[3]
	HWo := Ho * Wo
	CK := C * kh * kw
	direct := kh == 1 && kw == 1 && stride == 1 && padding == 0
	chunk := HWo
	if !direct && CK > 0 {
		chunk = int(min(int64(HWo), max(1, b.convChunkBytes/int64(CK*dt.Size()))))
	}
	if !direct && (int64(C)*int64(H)*int64(W) > math.MaxInt32 || int64(HWo) > math.MaxInt32 || int64(CK) > math.MaxInt32) {
		panic(fmt.Sprintf("cuda: %s: image %v too large for the im2col kernel (2^31 elements per image)", op, x.Shape()))
	}
	forceWide := b.forceWide
	out, om := b.newTensor(dt, os)
	b.enqueue(op, x, func(d *devState) error {
		xp, wp, bp, err := d.ptr3(xm, wm, bm)
		if err != nil {
			return err
		}
		if err := d.alloc(om); err != nil || om.bytes == 0 {
			return err
		}
		n := int64(N * O * HWo)
		beta := float32(0)
		if bias != nil {
			a := newArgs().i64(n).i64(int64(HWo)).i64(int64(O)).ptr(bp).i32(dtc(dtb)).ptr(om.ptr).i32(dtc(dt)).i32(wide(n, forceWide))
			if err := d.launch1D(modElementwise, "k_bias_fill", n, a); err != nil {
				return err
			}
			beta = 1
		} else if CK == 0 {
			return d.dev.memsetZero(om.ptr, om.bytes)
		}
		if CK == 0 {
			return nil
		}
		// out[n] (O x HWo) = w (O x CK) · cols (CK x HWo)
		g := rowGemm{m: O, k: CK, alpha: 1, beta: beta, b: 0, aType: dt, bType: dt, cType: dt, lda: CK, ldc: HWo, batch: 1}
		g.a = wp
		if direct {
			// One strided batch over the images, sharing the weights
			// (stride 0).
			g.n, g.ldb = HWo, HWo
			g.b, g.c = xp, om.ptr
			g.batch, g.strideB, g.strideC = N, int64(C*H*W), int64(O*HWo)
			return d.gemm(g)
		}
		col, err := d.temp(CK * chunk * dt.Size())
		if err != nil {
			return err
		}
		defer d.release(col)
		for i := range N {
			img := offset(xp, int64(i*C*H*W), dt)
			for p0 := 0; p0 < HWo; p0 += chunk {
				P := min(chunk, HWo-p0)
				a := newArgs().i32(CK).i32(C).i32(H).i32(W).i32(kh).i32(kw).i32(stride).i32(padding).i32(Wo).
					i32(p0).i32(P).ptr(img).i32(dtc(dt)).ptr(col.ptr).i32(dtc(dt))
				if err := d.launchIm2col(CK, P, a); err != nil {
					return err
				}
				g.n, g.ldb = P, P
				g.b = col.ptr
				g.c = offset(om.ptr, int64(i*O*HWo+p0), dt)
				if err := d.gemm(g); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return out
}

// launchIm2col runs k_im2col over rows x positions: 256-thread blocks along
// the positions, the rows along grid.y (both grid-strided), about as many
// threads in all as launch1D would start.
func (d *devState) launchIm2col(rows, positions int, a *kargs) error {
	const block = 256
	gx := min(int64(positions+block-1)/block, d.maxGrid)
	gy := min(int64(rows), max(1, d.maxGrid/gx), maxGridY)
	return d.dev.launch(modElementwise, "k_im2col", [3]uint32{uint32(gx), uint32(gy), 1}, [3]uint32{block, 1, 1}, a)
}
