package cpu

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// SGEMM: C = op(A)·op(B) (or C += op(A)·op(B)) for row-major float32
// matrices, blocked and packed in the BLIS manner:
//
//	for each block of nc columns of C (jc)
//	  for each block of kc steps of the inner dimension (pc)
//	    pack op(B)[pc:pc+kc, jc:jc+nc] into kc×nr micro-panels (shared)
//	    in parallel over (block of mc rows, range of micro-panels):
//	      pack op(A)[ic:ic+mc, pc:pc+kc] into mr×kc micro-panels
//	      for each pair of micro-panels: the mr×nr micro-kernel
//
// The micro-kernel keeps an mr×nr tile of C in registers and accumulates
// the kc rank-1 updates in float32 (fused multiply-adds on amd64), so every
// element of C is a float32 sum over k in increasing order: results do not
// depend on the thread count or the blocking of M and N. Packing pads edges
// with zeros so the kernel always computes whole tiles; partial tiles go
// through a small buffer.
const (
	gemmMR = 6   // rows of a micro-tile
	gemmNR = 16  // columns of a micro-tile (two 8-float vectors)
	gemmKC = 256 // inner-dimension block: mr×kc of A and kc×nr of B stay in L1
	gemmMC = 144 // rows of C per work item (a multiple of mr): mc×kc of A stays in L2
	gemmNC = 3072
)

// gemmArgs describes one product C = op(A)·op(B) (+ C when acc).
type gemmArgs struct {
	transA, transB bool
	m, n, k        int
	a              []float32
	lda            int
	b              []float32
	ldb            int
	c              []float32
	ldc            int
	acc            bool
}

// bufPool recycles packing buffers of one size; the backend runs a GEMM
// for every attention and conv tile, and fresh buffers per call would
// churn the garbage collector.
type bufPool struct {
	size int
	p    sync.Pool
}

func (p *bufPool) get() *[]float32 {
	if v, ok := p.p.Get().(*[]float32); ok {
		return v
	}
	s := make([]float32, p.size)
	return &s
}

func (p *bufPool) put(s *[]float32) { p.p.Put(s) }

// gemmPools holds the packing buffers of a Backend.
type gemmPools struct {
	a bufPool // one mc×kc A block per worker
	b bufPool // one kc×nc B block per call
}

func newGemmPools() *gemmPools {
	return &gemmPools{
		a: bufPool{size: gemmMC * gemmKC},
		b: bufPool{size: gemmKC * gemmNC},
	}
}

// sgemm computes C = op(A)·op(B) (accumulate false: C's previous contents,
// NaN included, are ignored) or C += op(A)·op(B) (accumulate true), for
// row-major op(A) m×k and op(B) k×n, using up to b.threads goroutines.
func (b *Backend) sgemm(transA, transB bool, m, n, k int, a []float32, lda int, bm []float32, ldb int, c []float32, ldc int, accumulate bool) {
	b.gemm(b.threads, gemmArgs{transA, transB, m, n, k, a, lda, bm, ldb, c, ldc, accumulate})
}

// sgemmSerial is sgemm on the calling goroutine, for callers that already
// run independent GEMMs in parallel.
func (b *Backend) sgemmSerial(transA, transB bool, m, n, k int, a []float32, lda int, bm []float32, ldb int, c []float32, ldc int, accumulate bool) {
	b.gemm(1, gemmArgs{transA, transB, m, n, k, a, lda, bm, ldb, c, ldc, accumulate})
}

func (b *Backend) gemm(threads int, g gemmArgs) {
	if g.m == 0 || g.n == 0 {
		return
	}
	if g.k == 0 {
		if !g.acc {
			for i := range g.m {
				clear(g.c[i*g.ldc : i*g.ldc+g.n])
			}
		}
		return
	}
	bp := b.pools.b.get()
	defer b.pools.b.put(bp)
	mBlocks := (g.m + gemmMC - 1) / gemmMC
	for jc := 0; jc < g.n; jc += gemmNC {
		nb := min(gemmNC, g.n-jc)
		panels := (nb + gemmNR - 1) / gemmNR
		// Split the panels so that there are about 4 jobs per thread (for
		// balance), but keep at least 4 panels (64 columns) per job so that
		// re-packing A per job stays cheap.
		nParts := 1
		if threads > 1 {
			nParts = max(1, min((4*threads+mBlocks-1)/mBlocks, panels/4))
		}
		jobs := mBlocks * nParts
		for pc := 0; pc < g.k; pc += gemmKC {
			kb := min(gemmKC, g.k-pc)
			acc := g.acc || pc > 0
			bpack := (*bp)[:panels*gemmNR*kb]
			packB(bpack, g, pc, jc, kb, nb)
			run := func(job int, abuf []float32) {
				ib, part := job/nParts, job%nParts
				ic := ib * gemmMC
				mb := min(gemmMC, g.m-ic)
				p0, p1 := part*panels/nParts, (part+1)*panels/nParts
				apack := abuf[:(mb+gemmMR-1)/gemmMR*gemmMR*kb]
				packA(apack, g, ic, pc, mb, kb)
				macroKernel(g, apack, bpack, ic, jc, mb, nb, kb, p0, p1, acc)
			}
			b.runJobs(min(threads, jobs), jobs, run)
		}
	}
}

// runJobs runs jobs [0, n) on workers goroutines (the caller being one),
// each with its own A packing buffer.
func (b *Backend) runJobs(workers, n int, run func(job int, abuf []float32)) {
	var next atomic.Int64
	work := func() {
		ab := b.pools.a.get()
		defer b.pools.a.put(ab)
		for j := int(next.Add(1) - 1); j < n; j = int(next.Add(1) - 1) {
			run(j, *ab)
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

// packA packs op(A)[ic:ic+mb, pc:pc+kb] as mr-row micro-panels, each
// stored k-major (mr values per k step), zero-padded to a multiple of mr
// rows.
func packA(dst []float32, g gemmArgs, ic, pc, mb, kb int) {
	for r0 := 0; r0 < mb; r0 += gemmMR {
		rows := min(gemmMR, mb-r0)
		p := dst[r0*kb : (r0+gemmMR)*kb]
		if g.transA {
			// op(A)[i, p] = a[p*lda + i]: each k step is a contiguous run.
			for kk := range kb {
				src := g.a[(pc+kk)*g.lda+ic+r0:]
				d := p[kk*gemmMR : kk*gemmMR+gemmMR]
				copy(d[:rows], src[:rows])
				clear(d[rows:])
			}
			continue
		}
		if rows < gemmMR {
			clear(p)
		}
		for r := range rows {
			src := g.a[(ic+r0+r)*g.lda+pc:]
			src = src[:kb]
			for kk, v := range src {
				p[kk*gemmMR+r] = v
			}
		}
	}
}

// packB packs op(B)[pc:pc+kb, jc:jc+nb] as nr-column micro-panels, each
// stored k-major (nr values per k step), zero-padded to a multiple of nr
// columns.
func packB(dst []float32, g gemmArgs, pc, jc, kb, nb int) {
	for c0 := 0; c0 < nb; c0 += gemmNR {
		cols := min(gemmNR, nb-c0)
		p := dst[c0*kb : (c0+gemmNR)*kb]
		if !g.transB {
			for kk := range kb {
				src := g.b[(pc+kk)*g.ldb+jc+c0:]
				d := p[kk*gemmNR : kk*gemmNR+gemmNR]
				copy(d[:cols], src[:cols])
				clear(d[cols:])
			}
			continue
		}
		if cols < gemmNR {
			clear(p)
		}
		for c := range cols {
			src := g.b[(jc+c0+c)*g.ldb+pc:]
			src = src[:kb]
			for kk, v := range src {
				p[kk*gemmNR+c] = v
			}
		}
	}
}

// macroKernel multiplies a packed mb×kb block of A by micro-panels
// [p0, p1) of a packed kb×nb block of B into C.
func macroKernel(g gemmArgs, ap, bp []float32, ic, jc, mb, nb, kb, p0, p1 int, acc bool) {
	var tmp [gemmMR * gemmNR]float32
	for jp := p0; jp < p1; jp++ {
		j0 := jp * gemmNR
		cols := min(gemmNR, nb-j0)
		bpan := bp[j0*kb : (j0+gemmNR)*kb]
		for i0 := 0; i0 < mb; i0 += gemmMR {
			rows := min(gemmMR, mb-i0)
			apan := ap[i0*kb : (i0+gemmMR)*kb]
			coff := (ic+i0)*g.ldc + jc + j0
			if rows == gemmMR && cols == gemmNR {
				// The kernel writes rows*ldc-spaced runs of 16: bounds-check
				// the last element before handing over raw pointers.
				_ = g.c[coff+(gemmMR-1)*g.ldc+gemmNR-1]
				kernel(kb, &apan[0], &bpan[0], &g.c[coff], g.ldc, acc)
				continue
			}
			kernel(kb, &apan[0], &bpan[0], &tmp[0], gemmNR, false)
			for r := range rows {
				dst := g.c[coff+r*g.ldc : coff+r*g.ldc+cols]
				src := tmp[r*gemmNR : r*gemmNR+cols]
				if acc {
					for i, v := range src {
						dst[i] += v
					}
				} else {
					copy(dst, src)
				}
			}
		}
	}
}

// kernelGo is the portable micro-kernel: C[6×16] (=|+=) A-panel·B-panel
// over k steps, with C rows ldc elements apart. The assembly kernel
// computes the same sums (with fused multiply-adds).
func kernelGo(k int, a, b, c *float32, ldc int, acc bool) {
	ap := unsafe.Slice(a, k*gemmMR)
	bp := unsafe.Slice(b, k*gemmNR)
	var t [gemmMR][gemmNR]float32
	for kk := range k {
		av := ap[kk*gemmMR : kk*gemmMR+gemmMR]
		bv := bp[kk*gemmNR : kk*gemmNR+gemmNR]
		for r := range gemmMR {
			x := av[r]
			row := &t[r]
			for j, y := range bv {
				row[j] += x * y
			}
		}
	}
	cs := unsafe.Slice(c, (gemmMR-1)*ldc+gemmNR)
	for r := range gemmMR {
		dst := cs[r*ldc : r*ldc+gemmNR]
		if acc {
			for j := range dst {
				dst[j] += t[r][j]
			}
		} else {
			copy(dst, t[r][:])
		}
	}
}
