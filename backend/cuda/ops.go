package cuda

import (
	"fmt"

	"github.com/sdxl-go/sdxl/tensor"
)

// unary runs k_unary: out = f(x) with out's dtype dto.
func (b *Backend) unary(op string, x *tensor.Tensor, dto tensor.DType, code int, s float32) *tensor.Tensor {
	xm := b.mem(op, x)
	dtx := x.DType()
	out, om := b.newTensor(dto, x.Shape())
	n := int64(x.Numel())
	b.enqueue(op, x, func(d *devState) error {
		xp, err := d.ptr(xm)
		if err != nil {
			return err
		}
		if err := d.alloc(om); err != nil {
			return err
		}
		a := newArgs().i64(n).ptr(xp).i32(dtc(dtx)).ptr(om.ptr).i32(dtc(dto)).i32(code).f32(s)
		return d.launch1D(modElementwise, "k_unary", n, a)
	})
	return out
}

// Cast implements tensor.Backend.
func (b *Backend) Cast(x *tensor.Tensor, dt tensor.DType) *tensor.Tensor {
	return b.unary("Cast", x, dt, unCopy, 0)
}

// Scale implements tensor.Backend.
func (b *Backend) Scale(x *tensor.Tensor, s float32) *tensor.Tensor {
	return b.unary("Scale", x, x.DType(), unScale, s)
}

// SiLU implements tensor.Backend.
func (b *Backend) SiLU(x *tensor.Tensor) *tensor.Tensor {
	return b.unary("SiLU", x, x.DType(), unSiLU, 0)
}

// GELU implements tensor.Backend (erf form).
func (b *Backend) GELU(x *tensor.Tensor) *tensor.Tensor {
	return b.unary("GELU", x, x.DType(), unGELU, 0)
}

// QuickGELU implements tensor.Backend.
func (b *Backend) QuickGELU(x *tensor.Tensor) *tensor.Tensor {
	return b.unary("QuickGELU", x, x.DType(), unQuickGELU, 0)
}

// GEGLU implements tensor.Backend.
func (b *Backend) GEGLU(x *tensor.Tensor) *tensor.Tensor {
	const op = "GEGLU"
	os := tensor.GEGLUShape(x.Shape())
	xm := b.mem(op, x)
	dtx := x.DType()
	out, om := b.newTensor(dtx, os)
	n := int64(os.Numel())
	half := int64(os[len(os)-1])
	wd := wide(n, b.forceWide)
	b.enqueue(op, x, func(d *devState) error {
		xp, err := d.ptr(xm)
		if err != nil {
			return err
		}
		if err := d.alloc(om); err != nil {
			return err
		}
		a := newArgs().i64(n).i64(half).ptr(xp).i32(dtc(dtx)).ptr(om.ptr).i32(dtc(dtx)).i32(wd)
		return d.launch1D(modElementwise, "k_geglu", n, a)
	})
	return out
}

// Add implements tensor.Backend.
func (b *Backend) Add(x, y *tensor.Tensor) *tensor.Tensor { return b.binary("Add", x, y, binAdd) }

// Mul implements tensor.Backend.
func (b *Backend) Mul(x, y *tensor.Tensor) *tensor.Tensor { return b.binary("Mul", x, y, binMul) }

func (b *Backend) binary(op string, x, y *tensor.Tensor, code int) *tensor.Tensor {
	xm, ym := b.mem(op, x), b.mem(op, y)
	os := tensor.BroadcastShapes(op, x.Shape(), y.Shape())
	shape, st := collapse(op, os, tensor.BroadcastStrides(x.Shape(), os), tensor.BroadcastStrides(y.Shape(), os))
	dims := dimsStruct(shape, st[0], st[1])
	dtx, dty := x.DType(), y.DType()
	out, om := b.newTensor(dtx, os)
	n := int64(os.Numel())
	wd := wide(n, b.forceWide)
	b.enqueue(op, x, func(d *devState) error {
		xp, err := d.ptr(xm)
		if err != nil {
			return err
		}
		yp, err := d.ptr(ym)
		if err != nil {
			return err
		}
		if err := d.alloc(om); err != nil {
			return err
		}
		a := newArgs().i64(n).i32(len(shape)).raw(dims).ptr(xp).i32(dtc(dtx)).ptr(yp).i32(dtc(dty)).ptr(om.ptr).i32(dtc(dtx)).i32(code).i32(wd)
		return d.launch1D(modElementwise, "k_binary", n, a)
	})
	return out
}

// copyJob is one strided copy: the index space shape with source and
// destination strides, and element offsets into each tensor.
type copyJob struct {
	shape          []int
	srcSt, dstSt   []int
	srcOff, dstOff int64
	src            *devMem
	srcDT          tensor.DType
}

// strided queues copies into a new tensor of shape os and dtype dt.
func (b *Backend) strided(op string, first *tensor.Tensor, dt tensor.DType, os tensor.Shape, jobs []copyJob) *tensor.Tensor {
	out, om := b.newTensor(dt, os)
	type prepared struct {
		job  copyJob
		rank int
		dims []byte
		n    int64
	}
	var ps []prepared
	for _, j := range jobs {
		n := tensor.Shape(j.shape).Numel()
		if n == 0 {
			continue
		}
		shape, st := collapse(op, j.shape, j.srcSt, j.dstSt)
		ps = append(ps, prepared{job: j, rank: len(shape), dims: dimsStruct(shape, st[0], st[1]), n: int64(n)})
	}
	forceWide := b.forceWide
	b.enqueue(op, first, func(d *devState) error {
		if err := d.alloc(om); err != nil {
			return err
		}
		for _, p := range ps {
			sp, err := d.ptr(p.job.src)
			if err != nil {
				return err
			}
			a := newArgs().i64(p.n).i32(p.rank).raw(p.dims).
				ptr(offset(sp, p.job.srcOff, p.job.srcDT)).i32(dtc(p.job.srcDT)).
				ptr(offset(om.ptr, p.job.dstOff, dt)).i32(dtc(dt)).i32(wide(p.n, forceWide))
			if err := d.launch1D(modElementwise, "k_copy", p.n, a); err != nil {
				return err
			}
		}
		return nil
	})
	return out
}

// Concat implements tensor.Backend. Inputs of other dtypes are converted
// to the first input's dtype.
func (b *Backend) Concat(axis int, ts ...*tensor.Tensor) *tensor.Tensor {
	const op = "Concat"
	shapes := make([]tensor.Shape, len(ts))
	for i, t := range ts {
		if t == nil {
			panic("cuda: Concat: nil tensor")
		}
		shapes[i] = t.Shape()
	}
	os, ax := tensor.ConcatShape(axis, shapes...)
	outer, total, inner := outerInner(os, ax)
	var jobs []copyJob
	off := 0
	for _, t := range ts {
		m := b.mem(op, t)
		a := t.Dim(ax)
		jobs = append(jobs, copyJob{
			shape: []int{outer, a * inner},
			srcSt: []int{a * inner, 1}, dstSt: []int{total * inner, 1},
			dstOff: int64(off * inner), src: m, srcDT: t.DType(),
		})
		off += a
	}
	return b.strided(op, ts[0], ts[0].DType(), os, jobs)
}

// Slice implements tensor.Backend.
func (b *Backend) Slice(x *tensor.Tensor, axis, start, end int) *tensor.Tensor {
	const op = "Slice"
	os, ax := tensor.SliceShape(x.Shape(), axis, start, end)
	m := b.mem(op, x)
	outer, a, inner := outerInner(x.Shape(), ax)
	k := end - start
	job := copyJob{
		shape: []int{outer, k * inner},
		srcSt: []int{a * inner, 1}, dstSt: []int{k * inner, 1},
		srcOff: int64(start * inner), src: m, srcDT: x.DType(),
	}
	return b.strided(op, x, x.DType(), os, []copyJob{job})
}

// Permute implements tensor.Backend.
func (b *Backend) Permute(x *tensor.Tensor, perm ...int) *tensor.Tensor {
	const op = "Permute"
	os := tensor.PermuteShape(x.Shape(), perm)
	m := b.mem(op, x)
	xs := denseStrides(x.Shape())
	src := make([]int, len(perm))
	for i, p := range perm {
		src[i] = xs[p]
	}
	job := copyJob{shape: os, srcSt: src, dstSt: denseStrides(os), src: m, srcDT: x.DType()}
	return b.strided(op, x, x.DType(), os, []copyJob{job})
}

// Upsample implements tensor.Backend (PyTorch "nearest", tensor.NearestIndex).
func (b *Backend) Upsample(x *tensor.Tensor, h, w int) *tensor.Tensor {
	const op = "Upsample"
	os := tensor.UpsampleShape(x.Shape(), h, w)
	xm := b.mem(op, x)
	dt := x.DType()
	H, W := x.Dim(2), x.Dim(3)
	out, om := b.newTensor(dt, os)
	n := int64(os.Numel())
	wd := wide(n, b.forceWide)
	b.enqueue(op, x, func(d *devState) error {
		xp, err := d.ptr(xm)
		if err != nil {
			return err
		}
		if err := d.alloc(om); err != nil {
			return err
		}
		a := newArgs().i64(n).i32(H).i32(W).i32(h).i32(w).ptr(xp).i32(dtc(dt)).ptr(om.ptr).i32(dtc(dt)).i32(wd)
		return d.launch1D(modElementwise, "k_upsample", n, a)
	})
	return out
}

// Embedding implements tensor.Backend. The ids are uploaded with the op.
func (b *Backend) Embedding(table *tensor.Tensor, ids []int32) *tensor.Tensor {
	const op = "Embedding"
	os := tensor.EmbeddingShape(table.Shape(), ids)
	tm := b.mem(op, table)
	dt := table.DType()
	out, om := b.newTensor(dt, os)
	n := int64(os.Numel())
	D := int64(table.Dim(1))
	idb := make([]byte, 4*len(ids))
	for i, id := range ids {
		idb[4*i], idb[4*i+1], idb[4*i+2], idb[4*i+3] = byte(id), byte(id>>8), byte(id>>16), byte(id>>24)
	}
	b.enqueue(op, table, func(d *devState) error {
		tp, err := d.ptr(tm)
		if err != nil {
			return err
		}
		if err := d.alloc(om); err != nil || n == 0 {
			return err
		}
		idm, err := d.temp(len(idb))
		if err != nil {
			return err
		}
		defer d.release(idm)
		if err := d.dev.upload(idm.ptr, idb); err != nil {
			return err
		}
		a := newArgs().i64(n).i64(D).ptr(idm.ptr).ptr(tp).i32(dtc(dt)).ptr(om.ptr).i32(dtc(dt))
		return d.launch1D(modElementwise, "k_embedding", n, a)
	})
	return out
}

// Mean implements tensor.Backend.
func (b *Backend) Mean(x *tensor.Tensor, axis int) *tensor.Tensor {
	const op = "Mean"
	os, ax := tensor.MeanShape(x.Shape(), axis)
	xm := b.mem(op, x)
	dt := x.DType()
	outer, A, inner := outerInner(x.Shape(), ax)
	out, om := b.newTensor(dt, os)
	n := int64(outer * inner)
	b.enqueue(op, x, func(d *devState) error {
		xp, err := d.ptr(xm)
		if err != nil {
			return err
		}
		if err := d.alloc(om); err != nil {
			return err
		}
		// Over an empty axis the kernel divides 0 by 0: NaN, as torch.
		a := newArgs().i64(n).i64(int64(A)).i64(int64(inner)).ptr(xp).i32(dtc(dt)).ptr(om.ptr).i32(dtc(dt))
		return d.launch1D(modElementwise, "k_mean", n, a)
	})
	return out
}

// Softmax implements tensor.Backend.
func (b *Backend) Softmax(x *tensor.Tensor) *tensor.Tensor {
	const op = "Softmax"
	if x.Rank() < 1 {
		panic(fmt.Sprintf("cuda: %s: x %v has no last dimension", op, x.Shape()))
	}
	xm := b.mem(op, x)
	dt := x.DType()
	L := int64(x.Dim(-1))
	rows := int64(0)
	if L > 0 {
		rows = int64(x.Numel()) / L
	}
	out, om := b.newTensor(dt, x.Shape())
	b.enqueue(op, x, func(d *devState) error {
		xp, err := d.ptr(xm)
		if err != nil {
			return err
		}
		if err := d.alloc(om); err != nil {
			return err
		}
		return d.softmaxRows(rows, L, xp, dt, om.ptr, dt, 1, 0, tensor.F32, nil)
	})
	return out
}

// maskRows locates a mask for softmaxRows: rows are (bh, query) pairs.
type maskRows struct {
	rowsPerBH, q0 int64
	st            maskStrides
	heads         int
}

// softmaxRows runs k_softmax over rows x L: out = softmax(x*scale + mask).
func (d *devState) softmaxRows(rows, L int64, x uint64, dtx tensor.DType, out uint64, dto tensor.DType, scale float32, mask uint64, dtm tensor.DType, mr *maskRows) error {
	if rows == 0 || L == 0 {
		return nil
	}
	spec := maskSpecStruct(1, 0, maskStrides{}, 1)
	if mr != nil {
		spec = maskSpecStruct(mr.rowsPerBH, mr.q0, mr.st, mr.heads)
	}
	a := newArgs().i64(L).ptr(x).i32(dtc(dtx)).ptr(out).i32(dtc(dto)).f32(scale).ptr(mask).i32(dtc(dtm)).raw(spec)
	return d.rowLaunch(modNorm, "k_softmax", rows, rowThreads(L), a)
}

// rowThreads is the block size of a one-block-per-row kernel for rows of
// length L: about four elements per thread, in whole warps, between 64
// threads (so that 32 resident blocks still fill an SM's 2048 threads) and
// 256. Short rows (cross-attention's 77 keys, small LayerNorms) then do not
// leave most of a 256-thread block idle through the block reductions.
func rowThreads(L int64) uint32 {
	t := (L + 3) / 4
	t = (t + 31) / 32 * 32
	return uint32(min(max(t, 64), 256))
}

// rowLaunch runs a kernel with one block per row (grid.x = rows).
func (d *devState) rowLaunch(m *kernelModule, name string, rows int64, threads uint32, a *kargs) error {
	if rows > 1<<31-1 {
		return fmt.Errorf("%s: %d rows exceed the grid limit", name, rows)
	}
	return d.dev.launch(m, name, [3]uint32{uint32(rows), 1, 1}, [3]uint32{threads, 1, 1}, a)
}

// GroupNorm implements tensor.Backend.
func (b *Backend) GroupNorm(x *tensor.Tensor, groups int, weight, bias *tensor.Tensor, eps float32) *tensor.Tensor {
	return b.groupNorm("GroupNorm", x, groups, weight, bias, eps, false)
}

// GroupNormSiLU implements tensor.GroupNormSiLUer: GroupNorm then SiLU in
// one pass.
func (b *Backend) GroupNormSiLU(x *tensor.Tensor, groups int, weight, bias *tensor.Tensor, eps float32) *tensor.Tensor {
	return b.groupNorm("GroupNormSiLU", x, groups, weight, bias, eps, true)
}

func (b *Backend) groupNorm(op string, x *tensor.Tensor, groups int, weight, bias *tensor.Tensor, eps float32, silu bool) *tensor.Tensor {
	tensor.GroupNormShape(x.Shape(), groups, optShape(weight), optShape(bias))
	xm, wm, bm := b.mem(op, x), b.optMem(op, weight), b.optMem(op, bias)
	dt := x.DType()
	dtw, dtb := tensor.F32, tensor.F32
	if weight != nil {
		dtw = weight.DType()
	}
	if bias != nil {
		dtb = bias.DType()
	}
	N, C := x.Dim(0), x.Dim(1)
	S := int64(0)
	if N*C > 0 {
		S = int64(x.Numel() / (N * C))
	}
	out, om := b.newTensor(dt, x.Shape())
	fuse := 0
	if silu {
		fuse = 1
	}
	parts := int64(1)
	if N*C > 0 {
		parts = b.groupNormParts(int64(N*groups), int64(C/groups)*S)
	}
	b.enqueue(op, x, func(d *devState) error {
		xp, wp, bp, err := d.ptr3(xm, wm, bm)
		if err != nil {
			return err
		}
		if err := d.alloc(om); err != nil {
			return err
		}
		if S == 0 || N == 0 {
			return nil
		}
		NG, cnt := int64(N*groups), int64(C/groups)*S
		if parts == 1 {
			a := newArgs().i32(C).i64(S).i32(groups).ptr(xp).i32(dtc(dt)).ptr(wp).i32(dtc(dtw)).ptr(bp).i32(dtc(dtb)).
				ptr(om.ptr).i32(dtc(dt)).f32(eps).i32(fuse)
			return d.rowLaunch(modNorm, "k_groupnorm", NG, rowThreads(cnt), a)
		}
		chunk := (cnt + parts - 1) / parts
		P := (cnt + chunk - 1) / chunk // no empty part
		stats, err := d.temp(int(NG * P * 2 * 4))
		if err != nil {
			return err
		}
		defer d.release(stats) // the stream orders the next user after both kernels
		a := newArgs().i32(C).i64(S).i32(groups).i64(chunk).i32(int(P)).ptr(xp).i32(dtc(dt)).ptr(stats.ptr)
		if err := d.rowLaunch(modNorm, "k_gn_stats", NG*P, rowThreads(chunk), a); err != nil {
			return err
		}
		a = newArgs().i32(C).i64(S).i32(groups).i64(chunk).i32(int(P)).ptr(stats.ptr).ptr(xp).i32(dtc(dt)).
			ptr(wp).i32(dtc(dtw)).ptr(bp).i32(dtc(dtb)).ptr(om.ptr).i32(dtc(dt)).f32(eps).i32(fuse)
		return d.rowLaunch(modNorm, "k_gn_apply", NG*P, rowThreads(chunk), a)
	})
	return out
}

// groupNormParts is how many parts each of ng groups of cnt elements is
// split into (1: one block per group, k_groupnorm). Groups are split until
// there are about gnBlocksPerSM blocks per multiprocessor, keeping at least
// gnMinChunk elements per part and at most gnMaxParts parts.
func (b *Backend) groupNormParts(ng, cnt int64) int64 {
	target := b.gnTargetBlocks
	if target <= 0 {
		target = gnBlocksPerSM * int64(max(1, b.info.SMs))
	}
	minChunk := b.gnMinChunk
	if minChunk <= 0 {
		minChunk = gnMinChunk
	}
	if ng <= 0 || ng >= target {
		return 1
	}
	p := (target + ng - 1) / ng
	p = min(p, (cnt+minChunk-1)/minChunk, gnMaxParts)
	return max(p, 1)
}

// Split GroupNorm sizing: 8 blocks of up to 256 threads fill an SM's 2048
// threads; 2048 elements per part give each thread at least 8 per pass; the
// cap bounds the combine that every apply block repeats.
const (
	gnBlocksPerSM = 8
	gnMinChunk    = 2048
	gnMaxParts    = 1024
)

// LayerNorm implements tensor.Backend.
func (b *Backend) LayerNorm(x *tensor.Tensor, weight, bias *tensor.Tensor, eps float32) *tensor.Tensor {
	const op = "LayerNorm"
	tensor.LayerNormShape(x.Shape(), optShape(weight), optShape(bias))
	xm, wm, bm := b.mem(op, x), b.optMem(op, weight), b.optMem(op, bias)
	dt := x.DType()
	dtw, dtb := tensor.F32, tensor.F32
	if weight != nil {
		dtw = weight.DType()
	}
	if bias != nil {
		dtb = bias.DType()
	}
	D := int64(x.Dim(-1))
	rows := int64(0)
	if D > 0 {
		rows = int64(x.Numel()) / D
	}
	out, om := b.newTensor(dt, x.Shape())
	b.enqueue(op, x, func(d *devState) error {
		xp, wp, bp, err := d.ptr3(xm, wm, bm)
		if err != nil {
			return err
		}
		if err := d.alloc(om); err != nil {
			return err
		}
		if rows == 0 {
			return nil
		}
		a := newArgs().i64(D).ptr(xp).i32(dtc(dt)).ptr(wp).i32(dtc(dtw)).ptr(bp).i32(dtc(dtb)).ptr(om.ptr).i32(dtc(dt)).f32(eps)
		return d.rowLaunch(modNorm, "k_layernorm", rows, rowThreads(D), a)
	})
	return out
}
