package cuda

import (
	"fmt"
	"strings"

	"github.com/sdxl-go/sdxl/tensor"
)

// Attention implementations.
const (
	attnFlash   = "flash"   // tensor-core flash attention, head size 64, F16/BF16 (flash.cu)
	attnGeneric = "generic" // fused float32 kernel, head size <= 1024, any dtype (attention.cu)
	attnGEMM    = "gemm"    // cuBLAS scores in chunks of queries, softmax, cuBLAS P·V
)

// genericMaxHead is the largest head size the generic kernel handles
// (32 lanes x 32 registers).
const genericMaxHead = 1024

// flashAvailable compiles the flash module once (on first use) and reports
// why it cannot be used, if so. A failure here is not a backend failure:
// attention falls back to the other implementations.
func (b *Backend) flashAvailable() error {
	b.flashOnce.Do(func() {
		if b.info.Major < 8 {
			b.flashErr = fmt.Errorf("compute capability %d.%d < 8.0", b.info.Major, b.info.Minor)
			return
		}
		if b.closed.Load() {
			b.flashErr = fmt.Errorf("backend closed")
			return
		}
		done := make(chan error, 1)
		// Run even after a failure elsewhere, and do not record a compile
		// failure as the backend's error.
		b.submit(task{op: "prepare flash attention", always: true, fn: func(d *devState) error {
			done <- d.dev.prepare(modFlash)
			return nil
		}})
		select {
		case b.flashErr = <-done:
		case <-b.stopped:
			b.flashErr = fmt.Errorf("backend closed")
		}
	})
	return b.flashErr
}

// attentionPath picks the implementation for head sizes D, Dv, storage
// dtype dt and Lq x Lk scores.
func (b *Backend) attentionPath(D, Dv int, dt tensor.DType, lq, lk int) string {
	flashOK := D == 64 && Dv == 64 && (dt == tensor.F16 || dt == tensor.BF16)
	genericOK := max(D, Dv) <= genericMaxHead
	switch strings.ToLower(b.opts.Attention) {
	case attnFlash:
		if flashOK && b.flashAvailable() == nil {
			return attnFlash
		}
	case attnGeneric:
		if genericOK {
			return attnGeneric
		}
	case attnGEMM:
		return attnGEMM
	}
	if flashOK && b.flashAvailable() == nil {
		return attnFlash
	}
	// The generic kernel streams keys one at a time per warp, with a warp
	// reduction per key: fine for short sequences and small heads, slow for
	// big ones, where cuBLAS wins. At SDXL's 64x64 level in F32 (20 heads of
	// 4096 x 4096, head size 64) it issues about 25 warp instructions per
	// query-key pair (~9 ms on an H100 at best) against ~2 ms of GEMMs and
	// ~2 ms of softmax traffic, so problems above 2^20 scores per head go
	// to cuBLAS (BenchmarkAttention's self-64x64 F32 cases compare them).
	if genericOK && (max(D, Dv) <= 128 || int64(lq)*int64(lk) <= 1<<16) && int64(lq)*int64(lk) <= 1<<20 {
		return attnGeneric
	}
	return attnGEMM
}

// Attention implements tensor.Backend: softmax(q·k^T*scale + mask)·v with
// float32 accumulation and no materialised score matrix (flash or generic
// kernel), or with scores materialised for a bounded chunk of queries at a
// time (GEMM path, for large head sizes). Inputs of mixed dtypes are
// computed in F32.
func (b *Backend) Attention(q, k, v, mask *tensor.Tensor, scale float32) *tensor.Tensor {
	const op = "Attention"
	os := tensor.AttentionShape(q.Shape(), k.Shape(), v.Shape(), optShape(mask))
	if in, promoted, done := b.promote(q, k, v); promoted {
		r := b.Attention(in[0], in[1], in[2], mask, scale)
		out := b.Cast(r, q.DType())
		r.Free()
		done()
		return out
	}
	qm, km, vm, mm := b.mem(op, q), b.mem(op, k), b.mem(op, v), b.optMem(op, mask)
	dt := q.DType()
	B, H, Lq, D := q.Dim(0), q.Dim(1), q.Dim(2), q.Dim(3)
	Lk, Dv := k.Dim(2), v.Dim(3)
	var ms maskStrides
	dtm := tensor.F32
	if mask != nil {
		full := tensor.Shape{B, H, Lq, Lk}
		st := tensor.BroadcastStrides(mask.Shape(), full)
		ms = maskStrides{int64(st[0]), int64(st[1]), int64(st[2]), int64(st[3])}
		dtm = mask.DType()
	}
	out, om := b.newTensor(dt, os)
	path := b.attentionPath(D, Dv, dt, Lq, Lk)
	BH := B * H
	chunkBytes := b.attnChunkBytes
	b.enqueue(op+" ("+path+")", q, func(d *devState) error {
		qp, err := d.ptr(qm)
		if err != nil {
			return err
		}
		kp, err := d.ptr(km)
		if err != nil {
			return err
		}
		vp, err := d.ptr(vm)
		if err != nil {
			return err
		}
		mp, err := d.ptr(mm)
		if err != nil {
			return err
		}
		if err := d.alloc(om); err != nil || om.bytes == 0 {
			return err
		}
		if Lk == 0 {
			return d.dev.memsetZero(om.ptr, om.bytes)
		}
		spec := attnSpec{ms: ms, heads: H, lq: Lq, lk: Lk, d: D, dv: Dv}
		switch path {
		case attnFlash:
			return d.flashAttention(qp, kp, vp, om.ptr, dt, mp, dtm, scale, spec, BH)
		case attnGeneric:
			return d.genericAttention(qp, kp, vp, om.ptr, dt, mp, dtm, scale, spec, BH)
		default:
			return d.gemmAttention(qp, kp, vp, om.ptr, dt, mp, dtm, scale, spec, BH, chunkBytes)
		}
	})
	return out
}

// maxGridY is CUDA's limit on gridDim.y (and z).
const maxGridY = 65535

func (d *devState) flashAttention(q, k, v, out uint64, dt tensor.DType, mask uint64, dtm tensor.DType, scale float32, s attnSpec, BH int) error {
	name := "k_flash64_f16"
	if dt == tensor.BF16 {
		name = "k_flash64_bf16"
	}
	gx := (s.lq + 63) / 64
	for bh0 := 0; bh0 < BH; bh0 += maxGridY {
		s.bh0 = bh0
		gy := min(BH-bh0, maxGridY)
		a := newArgs().ptr(q).ptr(k).ptr(v).ptr(out).f32(scale).ptr(mask).i32(dtc(dtm)).raw(s.bytes())
		if err := d.dev.launch(modFlash, name, [3]uint32{uint32(gx), uint32(gy), 1}, [3]uint32{128, 1, 1}, a); err != nil {
			return err
		}
	}
	return nil
}

// genericTiles picks the generic kernel's register chunks per lane (NCH,
// a power of two with NCH*32 >= the head size) and keys per tile (TK, so
// that TK rows of NCH*32 floats fit ATT_SMEM).
func genericTiles(D, Dv int) (nch, tk int) {
	nch = 1
	for nch*32 < max(D, Dv) {
		nch *= 2
	}
	const attSmem = 4096 // ATT_SMEM in attention.cu
	tk = min(64, attSmem/(nch*32))
	return nch, tk
}

func (d *devState) genericAttention(q, k, v, out uint64, dt tensor.DType, mask uint64, dtm tensor.DType, scale float32, s attnSpec, BH int) error {
	nch, tk := genericTiles(s.d, s.dv)
	if nch > 32 {
		return fmt.Errorf("generic attention: head size %d > %d", max(s.d, s.dv), genericMaxHead)
	}
	s.tk, s.dp = tk, nch*32
	name := fmt.Sprintf("k_attn_generic_%d", nch)
	const warps = 4 // ATT_WARPS
	gx := (s.lq + warps - 1) / warps
	for bh0 := 0; bh0 < BH; bh0 += maxGridY {
		s.bh0 = bh0
		gy := min(BH-bh0, maxGridY)
		a := newArgs().ptr(q).ptr(k).ptr(v).i32(dtc(dt)).ptr(out).i32(dtc(dt)).f32(scale).ptr(mask).i32(dtc(dtm)).raw(s.bytes())
		if err := d.dev.launch(modAttention, name, [3]uint32{uint32(gx), uint32(gy), 1}, [3]uint32{warps * 32, 1, 1}, a); err != nil {
			return err
		}
	}
	return nil
}

// gemmAttention materialises the scores of cq queries at a time for every
// (batch, head): S = scale*Q_c·K^T in float32 (strided batched GEMM over
// B*H), P = softmax(S + mask) stored in the dtype of V, O_c = P·V.
func (d *devState) gemmAttention(q, k, v, out uint64, dt tensor.DType, mask uint64, dtm tensor.DType, scale float32, s attnSpec, BH int, chunkBytes int64) error {
	Lq, Lk, D, Dv := s.lq, s.lk, s.d, s.dv
	perRow := int64(BH) * int64(Lk) * int64(4+dt.Size())
	if dt == tensor.F32 {
		perRow = int64(BH) * int64(Lk) * 4 // P overwrites S in place
	}
	cq := int(min(int64(Lq), max(1, chunkBytes/perRow)))
	S, err := d.temp(BH * cq * Lk * 4)
	if err != nil {
		return err
	}
	defer d.release(S)
	P := S
	if dt != tensor.F32 {
		if P, err = d.temp(BH * cq * Lk * dt.Size()); err != nil {
			return err
		}
		defer d.release(P)
	}
	for q0 := 0; q0 < Lq; q0 += cq {
		n := min(cq, Lq-q0)
		err := d.gemm(rowGemm{transB: true, m: n, n: Lk, k: D, alpha: scale,
			a: offset(q, int64(q0*D), dt), aType: dt, lda: D, strideA: int64(Lq * D),
			b: k, bType: dt, ldb: D, strideB: int64(Lk * D),
			c: S.ptr, cType: tensor.F32, ldc: Lk, strideC: int64(n * Lk),
			batch: BH})
		if err != nil {
			return err
		}
		mr := &maskRows{rowsPerBH: int64(n), q0: int64(q0), st: s.ms, heads: s.heads}
		if err := d.softmaxRows(int64(BH*n), int64(Lk), S.ptr, tensor.F32, P.ptr, dt, 1, mask, dtm, mr); err != nil {
			return err
		}
		err = d.gemm(rowGemm{m: n, n: Dv, k: Lk, alpha: 1,
			a: P.ptr, aType: dt, lda: Lk, strideA: int64(n * Lk),
			b: v, bType: dt, ldb: Dv, strideB: int64(Lk * Dv),
			c: offset(out, int64(q0*Dv), dt), cType: dt, ldc: Dv, strideC: int64(Lq * Dv),
			batch: BH})
		if err != nil {
			return err
		}
	}
	return nil
}
