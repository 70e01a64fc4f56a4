package cpu

import (
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/sdxl-go/sdxl/tensor"
)

// SGEMM: C = op(A)·op(B) (or C += op(A)·op(B)) for row-major float32
// matrices, blocked and packed in the BLIS manner:
//
//	pack op(B) into nr-column micro-panels (attention and conv pack their
//	  B operands themselves and reuse them across many products)
//	in parallel over jobs (a block of mc rows of C × a range of panels):
//	  for each block of kc steps of the inner dimension:
//	    pack op(A)[ic:ic+mc, pc:pc+kc] into mr-row micro-panels (unless the
//	      caller packed A whole, as conv does with its weights)
//	    for each pair of micro-panels: the mr×nr micro-kernel
//
// The micro-kernel keeps an mr×nr tile of C in registers and accumulates
// the kc rank-1 updates in float32 (fused multiply-adds on amd64), so every
// element of C is a float32 sum over k in increasing order: results do not
// depend on the thread count or on how M and N are split. Packing pads
// edges with zeros so the kernel always computes whole tiles; partial tiles
// go through a small buffer.
//
// The micro-kernel (see microKernel) is chosen per backend: mr (rows of an
// A micro-panel) and mc depend on it, while B's panel width nr and kc do
// not, so packed B operands serve every kernel and every kernel sums in
// the same order.
const (
	gemmMR = 6   // rows of a micro-tile of the 6×16 kernels (generic, AVX2)
	gemmNR = 16  // columns of a B micro-panel (two ymm or one zmm vector)
	gemmKC = 256 // inner-dimension block: mr×kc of A and kc×nr of B stay in L1
	gemmMC = 144 // rows of C per work item for the 6×16 kernels: mc×kc of A stays in L2
)

// packedB is op(B) (k×n) stored as ceil(n/nr) micro-panels of k×nr
// values, k-major, zero-padded on the right: the layout the micro-kernel
// streams. Rows [pc, pc+kb) of panel j are the contiguous run
// data[j*k*nr+pc*nr:][:kb*nr].
type packedB struct {
	k, n int
	data []float32
	// h replaces data for a half-precision weight (see packedWeight): its
	// 16-bit patterns of dtype dt, widened block by block in macroKernel.
	h  []uint16
	dt tensor.DType
}

func packedBSize(k, n int) int { return (n + gemmNR - 1) / gemmNR * gemmNR * k }

// packB packs op(B) (k×n; B is n×k when transB) into dst, which must hold
// packedBSize(k, n) values, using up to threads goroutines.
func (b *Backend) packB(threads int, dst []float32, transB bool, k, n int, src []float32, ldb int) packedB {
	panels := (n + gemmNR - 1) / gemmNR
	dst = dst[:panels*gemmNR*k]
	pack := func(lo, hi int) {
		for jp := lo; jp < hi; jp++ {
			j0 := jp * gemmNR
			cols := min(gemmNR, n-j0)
			p := dst[j0*k : (j0+gemmNR)*k]
			if !transB {
				for kk := range k {
					d := (*[gemmNR]float32)(p[kk*gemmNR : kk*gemmNR+gemmNR])
					if cols == gemmNR {
						*d = *(*[gemmNR]float32)(src[kk*ldb+j0 : kk*ldb+j0+gemmNR])
						continue
					}
					copy(d[:cols], src[kk*ldb+j0:kk*ldb+j0+cols])
					clear(d[cols:])
				}
				continue
			}
			k0 := 0
			if cols == gemmNR {
				k0 = packTransVec(b.mk.isa, p, src[j0*ldb:], ldb, k)
			} else {
				clear(p)
			}
			// Transpose (the rest) in blocks of 64 k steps, so the 4 KB of the panel
			// being written stays in L1 while the nr source rows stream.
			const kb = 64
			for ; k0 < k; k0 += kb {
				k1 := min(k, k0+kb)
				for c := range cols {
					col := src[(j0+c)*ldb+k0 : (j0+c)*ldb+k1]
					d := p[k0*gemmNR+c:]
					for kk, v := range col {
						d[kk*gemmNR] = v
					}
				}
			}
		}
	}
	if threads <= 1 || k*n < 1<<16 {
		pack(0, panels)
	} else {
		b.withThreads(threads).parallel(panels, 1, pack)
	}
	return packedB{k: k, n: n, data: dst}
}

// withThreads returns a view of b limited to n goroutines.
func (b *Backend) withThreads(n int) *Backend {
	if n >= b.threads {
		return b
	}
	c := *b
	c.threads = max(1, n)
	return &c
}

// packedA is op(A) (m×k) stored as ceil(m/mr) micro-panels of k×mr
// values, k-major, zero-padded at the bottom: rows [pc, pc+kb) of panel i
// are data[i*k*mr+pc*mr:][:kb*mr]. A GEMM packs A block by block unless
// the caller packed it whole (conv weights, reused for every tile).
type packedA struct {
	m, k, mr int
	data     []float32
	h        []uint16 // replaces data for a half-precision weight, as in packedB
	dt       tensor.DType
}

func packedASize(mr, m, k int) int { return (m + mr - 1) / mr * mr * k }

// packAllA packs op(A) (m×k; A is k×m when transA) for b's kernel into
// dst, which must hold packedASize(b.mk.mr, m, k) values, using up to
// threads goroutines.
func (b *Backend) packAllA(threads int, dst []float32, transA bool, m, k int, src []float32, lda int) *packedA {
	mr := b.mk.mr
	g := gemmArgs{mk: b.mk, transA: transA, a: src, lda: lda}
	panels := (m + mr - 1) / mr
	dst = dst[:panels*mr*k]
	b.withThreads(threads).parallel(panels, max(1, (1<<16)/max(1, k*mr)), func(lo, hi int) {
		ic := lo * mr
		packA(dst[ic*k:], g, ic, 0, min(m, hi*mr)-ic, k)
	})
	return &packedA{m: m, k: k, mr: mr, data: dst}
}

// gemmArgs describes one product C = op(A)·B (+ C when acc) with B
// already packed, and A too when pa is set (then a, lda and transA are
// unused and m must equal pa.m).
type gemmArgs struct {
	mk     *microKernel // set by Backend.gemm
	transA bool
	m      int
	a      []float32
	lda    int
	pa     *packedA
	b      packedB
	// direct, when set, says which B panels the direct micro-kernel reads
	// from an image instead of b (convolution).
	direct *directB
	c      []float32
	ldc    int
	acc    bool
	// bias (length n, or nil) is added to every row of C; only with acc
	// false.
	bias []float32
}

// bufPool recycles float32 buffers; the backend runs a GEMM for every
// attention and conv tile, and fresh packing buffers per call would churn
// the garbage collector.
type bufPool struct{ p sync.Pool }

// get returns a buffer of at least n values.
func (p *bufPool) get(n int) *[]float32 {
	if v, ok := p.p.Get().(*[]float32); ok && cap(*v) >= n {
		*v = (*v)[:n]
		return v
	}
	s := make([]float32, n)
	return &s
}

func (p *bufPool) put(s *[]float32) { p.p.Put(s) }

// gemmPools holds the packing buffers of a Backend.
type gemmPools struct {
	a       bufPool // mc×kc A blocks, one per GEMM worker (all one size)
	b       bufPool // packed operands (weights, K and V, im2col tiles)
	scratch bufPool // other per-tile scratch (attention scores, im2col)
}

func newGemmPools() *gemmPools { return &gemmPools{} }

// sgemm computes C = op(A)·op(B) (accumulate false: C's previous contents,
// NaN included, are ignored) or C += op(A)·op(B) (accumulate true), for
// row-major op(A) m×k and op(B) k×n, using up to b.threads goroutines.
func (b *Backend) sgemm(transA, transB bool, m, n, k int, a []float32, lda int, bm []float32, ldb int, c []float32, ldc int, accumulate bool) {
	b.sgemmThreads(b.threads, transA, transB, m, n, k, a, lda, bm, ldb, c, ldc, accumulate)
}

// sgemmSerial is sgemm on the calling goroutine, for callers that already
// run independent GEMMs in parallel.
func (b *Backend) sgemmSerial(transA, transB bool, m, n, k int, a []float32, lda int, bm []float32, ldb int, c []float32, ldc int, accumulate bool) {
	b.sgemmThreads(1, transA, transB, m, n, k, a, lda, bm, ldb, c, ldc, accumulate)
}

func (b *Backend) sgemmThreads(threads int, transA, transB bool, m, n, k int, a []float32, lda int, bm []float32, ldb int, c []float32, ldc int, accumulate bool) {
	b.sgemmBias(threads, transA, transB, m, n, k, a, lda, bm, ldb, nil, c, ldc, accumulate)
}

// sgemmBias is sgemmThreads adding bias (length n, or nil; only without
// accumulate) to every row of C.
func (b *Backend) sgemmBias(threads int, transA, transB bool, m, n, k int, a []float32, lda int, bm []float32, ldb int, bias, c []float32, ldc int, accumulate bool) {
	if m == 0 || n == 0 {
		return
	}
	buf := b.pools.b.get(packedBSize(k, n))
	defer b.pools.b.put(buf)
	bp := b.packB(threads, *buf, transB, k, n, bm, ldb)
	b.gemm(threads, gemmArgs{transA: transA, m: m, a: a, lda: lda, b: bp, c: c, ldc: ldc, acc: accumulate, bias: bias})
}

// gemm runs C = op(A)·B (+ C) on up to threads goroutines.
func (b *Backend) gemm(threads int, g gemmArgs) {
	g.mk = b.mk
	mr, mc := g.mk.mr, g.mk.mc
	if g.pa != nil && g.pa.mr != mr {
		panic("cpu: gemm: A packed for another micro-kernel")
	}
	m, n, k := g.m, g.b.n, g.b.k
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		if !g.acc {
			for i := range m {
				clear(g.c[i*g.ldc : i*g.ldc+n])
				if g.bias != nil {
					copy(g.c[i*g.ldc:i*g.ldc+n], g.bias)
				}
			}
		}
		return
	}
	mBlocks := (m + mc - 1) / mc
	panels := (n + gemmNR - 1) / gemmNR
	// Split the panels so that there are about 4 jobs per thread (for
	// balance), but keep at least 4 panels (64 columns) per job so that
	// re-packing A per job stays cheap. Parts start on a multiple of the
	// kernel's panel step, so wide tiles are not split.
	step := g.mk.panelStep()
	units := (panels + step - 1) / step
	nParts := 1
	if threads > 1 {
		nParts = max(1, min((4*threads+mBlocks-1)/mBlocks, panels/4))
	}
	jobs := mBlocks * nParts
	// A job owns a block of rows and a range of panels of C for the whole
	// inner dimension, so jobs never wait for each other (B is already
	// packed) and the C tile stays in cache between kc steps.
	run := func(job int, abuf, bbuf []float32) {
		ib, part := job/nParts, job%nParts
		ic := ib * mc
		mb := min(mc, m-ic)
		p0, p1 := step*(part*units/nParts), min(panels, step*((part+1)*units/nParts))
		for pc := 0; pc < k; pc += gemmKC {
			kb := min(gemmKC, k-pc)
			acc := g.acc || pc > 0
			apack := abuf[:(mb+mr-1)/mr*mr*kb]
			switch {
			case g.pa != nil && g.pa.h == nil:
				macroKernel(g, g.pa.data[ic*k+pc*mr:], k*mr, bbuf, ic, pc, mb, kb, p0, p1, acc)
				continue
			case g.pa != nil:
				// Widen this block's micro-panels of a half-precision A.
				for i := 0; i < mb; i += mr {
					g.mk.isa.widen(g.pa.dt, apack[i*kb:(i+mr)*kb], g.pa.h[(ic+i)*k+pc*mr:][:kb*mr])
				}
			default:
				packA(apack, g, ic, pc, mb, kb)
			}
			macroKernel(g, apack, kb*mr, bbuf, ic, pc, mb, kb, p0, p1, acc)
		}
	}
	b.runJobs(min(threads, jobs), jobs, mc, g.b.h != nil, run)
}

// runJobs runs jobs [0, n) on workers goroutines (the caller being one),
// each with its own A packing buffer and, with halfB, a buffer for two
// widened B panels.
func (b *Backend) runJobs(workers, n, mc int, halfB bool, run func(job int, abuf, bbuf []float32)) {
	var next atomic.Int64
	work := func() {
		ab := b.pools.a.get(mc * gemmKC)
		defer b.pools.a.put(ab)
		var bb []float32
		if halfB {
			p := b.pools.scratch.get(2 * gemmKC * gemmNR)
			defer b.pools.scratch.put(p)
			bb = *p
		}
		for j := int(next.Add(1) - 1); j < n; j = int(next.Add(1) - 1) {
			run(j, *ab, bb)
		}
	}
	if workers <= 1 {
		work()
		return
	}
	var wg sync.WaitGroup
	for range workers - 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work()
		}()
	}
	work()
	wg.Wait()
}

// packA packs op(A)[ic:ic+mb, pc:pc+kb] as mr-row micro-panels (mr of
// g's kernel), each stored k-major (mr values per k step), zero-padded to
// a multiple of mr rows.
func packA(dst []float32, g gemmArgs, ic, pc, mb, kb int) {
	mr := g.mk.mr
	for r0 := 0; r0 < mb; r0 += mr {
		rows := min(mr, mb-r0)
		p := dst[r0*kb : (r0+mr)*kb]
		if g.transA {
			// op(A)[i, p] = a[p*lda + i]: each k step is a contiguous run.
			for kk := range kb {
				src := g.a[(pc+kk)*g.lda+ic+r0:]
				d := p[kk*mr : kk*mr+mr]
				copy(d[:rows], src[:rows])
				clear(d[rows:])
			}
			continue
		}
		k0 := 0
		if rows == mr {
			k0 = packRowsVec(g.mk.isa, mr, p, g.a[(ic+r0)*g.lda+pc:], g.lda, kb)
		} else {
			clear(p)
		}
		for r := range rows {
			if k0 == kb {
				break
			}
			src := g.a[(ic+r0+r)*g.lda+pc+k0 : (ic+r0+r)*g.lda+pc+kb]
			d := p[k0*mr+r:]
			for kk, v := range src {
				d[kk*mr] = v
			}
		}
	}
}

// macroKernel multiplies a packed mb×kb block of A (rows ic.., inner
// steps pc..; its i-th micro-panel at ap[i*astride:]) by micro-panels
// [p0, p1) of B into C, two panels per call where the kernel has a wide
// tile and both are full.
//
// A half-precision B is widened into bbuf (two kb×16 blocks) one panel
// (pair) at a time, reused across the block's rows.
func macroKernel(g gemmArgs, ap []float32, astride int, bbuf []float32, ic, pc, mb, kb, p0, p1 int, acc bool) {
	mk := g.mk
	mr := mk.mr
	n, k := g.b.n, g.b.k
	var tmp [maxMR * 2 * gemmNR]float32
	for jp := p0; jp < p1; {
		j0 := jp * gemmNR
		two := mk.two != nil && jp+1 < p1 && j0+2*gemmNR <= n
		width := gemmNR
		if two {
			width = 2 * gemmNR
		}
		cols := min(width, n-j0)
		// tile computes the tile of A micro-panel apan into c.
		var tile func(apan []float32, c *float32, ldc int, acc bool)
		switch d := g.direct; {
		case d != nil && d.at[jp] >= 0:
			// The conv made whole kernel-width groups direct.
			x, offs := &d.x[d.at[jp]], &d.offs[pc]
			tile = func(apan []float32, c *float32, ldc int, acc bool) { mk.direct(kb, &apan[0], x, c, ldc, offs, acc) }
		case g.b.h != nil:
			bstride := kb * gemmNR
			for p := range width / gemmNR {
				g.mk.isa.widen(g.b.dt, bbuf[p*bstride:(p+1)*bstride], g.b.h[(j0+p*gemmNR)*k+pc*gemmNR:][:kb*gemmNR])
			}
			tile = func(apan []float32, c *float32, ldc int, acc bool) {
				mk.call(two, kb, &apan[0], &bbuf[0], c, ldc, bstride, acc)
			}
		default:
			bpan := g.b.data[j0*k+pc*gemmNR:][:kb*gemmNR]
			tile = func(apan []float32, c *float32, ldc int, acc bool) {
				mk.call(two, kb, &apan[0], &bpan[0], c, ldc, k*gemmNR, acc)
			}
		}
		for i0 := 0; i0 < mb; i0 += mr {
			rows := min(mr, mb-i0)
			apan := ap[i0/mr*astride:][:kb*mr]
			coff := (ic+i0)*g.ldc + j0
			if rows == mr && cols == width {
				// The kernel writes mr runs of width values ldc apart:
				// bounds-check the last one before passing raw pointers.
				_ = g.c[coff+(mr-1)*g.ldc+width-1]
				tile(apan, &g.c[coff], g.ldc, acc)
			} else {
				tile(apan, &tmp[0], width, false)
				for r := range rows {
					dst := g.c[coff+r*g.ldc : coff+r*g.ldc+cols]
					src := tmp[r*width : r*width+cols]
					if acc {
						for i, v := range src {
							dst[i] += v
						}
					} else {
						copy(dst, src)
					}
				}
			}
			if pc == 0 && g.bias != nil {
				// The first block's sums are still in cache: add the bias.
				bias := g.bias[j0 : j0+cols]
				for r := range rows {
					dst := g.c[coff+r*g.ldc : coff+r*g.ldc+cols]
					for i, v := range bias {
						dst[i] += v
					}
				}
			}
		}
		jp += width / gemmNR
	}
}

// maxMR bounds mr over all micro-kernels (the size of macroKernel's edge
// buffer).
const maxMR = 14

// call runs the two-panel tile when two is set (bstride floats between
// the panels), the one-panel tile otherwise.
func (mk *microKernel) call(two bool, k int, a, b, c *float32, ldc, bstride int, acc bool) {
	if two {
		mk.two(k, a, b, c, ldc, bstride, acc)
		return
	}
	mk.one(k, a, b, c, ldc, acc)
}

// kernelGo is the portable micro-kernel: C[6×16] (=|+=) A-panel·B-panel
// over k steps, with C rows ldc elements apart. It walks the tile in 2×4
// blocks of 4×4 (or 2×4) scalar accumulators, few enough for the compiler
// to keep in registers. The assembly kernel computes the same sums with
// fused multiply-adds.
func kernelGo(k int, a, b, c *float32, ldc int, acc bool) {
	ap := unsafe.Slice(a, k*gemmMR)
	bp := unsafe.Slice(b, k*gemmNR)
	cs := unsafe.Slice(c, (gemmMR-1)*ldc+gemmNR)
	for j0 := 0; j0 < gemmNR; j0 += 4 {
		// Rows 0-3.
		var c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33 float32
		for kk := range k {
			av := (*[gemmMR]float32)(ap[kk*gemmMR:])
			bv := (*[4]float32)(bp[kk*gemmNR+j0:])
			b0, b1, b2, b3 := bv[0], bv[1], bv[2], bv[3]
			a0, a1, a2, a3 := av[0], av[1], av[2], av[3]
			c00 += a0 * b0
			c01 += a0 * b1
			c02 += a0 * b2
			c03 += a0 * b3
			c10 += a1 * b0
			c11 += a1 * b1
			c12 += a1 * b2
			c13 += a1 * b3
			c20 += a2 * b0
			c21 += a2 * b1
			c22 += a2 * b2
			c23 += a2 * b3
			c30 += a3 * b0
			c31 += a3 * b1
			c32 += a3 * b2
			c33 += a3 * b3
		}
		store4(cs[0*ldc+j0:], acc, c00, c01, c02, c03)
		store4(cs[1*ldc+j0:], acc, c10, c11, c12, c13)
		store4(cs[2*ldc+j0:], acc, c20, c21, c22, c23)
		store4(cs[3*ldc+j0:], acc, c30, c31, c32, c33)
		// Rows 4-5.
		var c40, c41, c42, c43, c50, c51, c52, c53 float32
		for kk := range k {
			av := (*[gemmMR]float32)(ap[kk*gemmMR:])
			bv := (*[4]float32)(bp[kk*gemmNR+j0:])
			b0, b1, b2, b3 := bv[0], bv[1], bv[2], bv[3]
			a4, a5 := av[4], av[5]
			c40 += a4 * b0
			c41 += a4 * b1
			c42 += a4 * b2
			c43 += a4 * b3
			c50 += a5 * b0
			c51 += a5 * b1
			c52 += a5 * b2
			c53 += a5 * b3
		}
		store4(cs[4*ldc+j0:], acc, c40, c41, c42, c43)
		store4(cs[5*ldc+j0:], acc, c50, c51, c52, c53)
	}
}

// store4 writes (or adds) four accumulators to dst[0:4].
func store4(dst []float32, acc bool, v0, v1, v2, v3 float32) {
	d := (*[4]float32)(dst)
	if acc {
		d[0] += v0
		d[1] += v1
		d[2] += v2
		d[3] += v3
		return
	}
	d[0], d[1], d[2], d[3] = v0, v1, v2, v3
}
