package cpu

import (
	"github.com/sdxl-go/sdxl/tensor"
)

// convTileCols is the number of output pixels one conv work item computes
// (rounded to whole output rows), which also bounds its im2col buffer.
const convTileCols = 512

// Conv2D implements tensor.Backend as im2col + GEMM over tiles of output
// pixels: out[n][:, tile] = W[O, C*kh*kw] · col[C*kh*kw, tile], with the
// weights packed once and each tile's patch matrix built directly in packed
// form (im2colPacked).
func (b *Backend) Conv2D(x, w, bias *tensor.Tensor, stride, padding int) *tensor.Tensor {
	const op = "Conv2D"
	xs := b.data(op, x)
	var bs []float32
	if bias != nil {
		bs = b.data(op, bias)
	}
	outShape := tensor.Conv2DShape(x.Shape(), w.Shape(), optShape(bias), stride, padding)
	N, C, H, W := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	O, kh, kw := w.Dim(0), w.Dim(2), w.Dim(3)
	Ho, Wo := outShape[2], outShape[3]
	P := Ho * Wo
	ckk := C * kh * kw
	out := b.alloc(outShape.Numel())
	if P == 0 || O == 0 {
		return b.wrap(x.DType(), outShape, out)
	}

	// The weights are the A operand of every tile, packed once for good
	// (see storage).
	wp := b.weight(op, w, O, ckk, b.mk.mr).asA()

	g := convGeom{C: C, H: H, W: W, kh: kh, kw: kw, stride: stride, pad: padding, Ho: Ho, Wo: Wo}
	offs := b.directOffsets(g)
	// Tile whole output rows, about convTileCols pixels per tile: the kc
	// rows of a tile's packed im2col matrix then stay in L2 while every
	// block of weights passes over them.
	rowsPerTile := min(Ho, max(1, convTileCols/max(1, Wo)))
	tiles := (Ho + rowsPerTile - 1) / rowsPerTile
	// Small images give fewer tiles than threads: the GEMMs then share the
	// spare threads.
	gemmThreads := max(1, b.threads/(N*tiles))
	b.parallelItems(N*tiles, func(item int) {
		n, t := item/tiles, item%tiles
		r0 := t * rowsPerTile
		r1 := min(Ho, r0+rowsPerTile)
		xn := xs[n*C*H*W : (n+1)*C*H*W]
		b.convTile(gemmThreads, g, wp, bs, xn, offs, out[n*O*P:], r0*Wo, r1*Wo)
	})
	return b.wrap(x.DType(), outShape, out)
}

// convTile computes output pixels [p0, p1) of one image (xn) into dst
// ([O, Ho·Wo]): the panels of 16 pixels that lie inside the image are read
// by the direct micro-kernel (when offs is set), the others are packed by
// im2colPacked.
func (b *Backend) convTile(threads int, g convGeom, wp *packedA, bs, xn []float32, offs []int32, dst []float32, p0, p1 int) {
	O, P, cols := wp.m, g.Ho*g.Wo, p1-p0
	// The GEMM writes a contiguous O×cols tile (rows ldc apart, not a
	// power of two): rows of dst are P apart, which for large maps is a
	// power of two that maps every row of a micro-tile to the same cache
	// set.
	ldc := cols + gemmNR
	cbuf := b.pools.scratch.get(O * ldc)
	defer b.pools.scratch.put(cbuf)
	ct := *cbuf
	if bs != nil {
		for o := range O {
			row := ct[o*ldc : o*ldc+cols]
			for i := range row {
				row[i] = bs[o]
			}
		}
	}
	var d *directB
	if offs != nil {
		d = &directB{x: xn, offs: offs, at: b.directPanels(g, p0, p1)}
	}
	pbuf := b.pools.b.get(packedBSize(wp.k, cols))
	defer b.pools.b.put(pbuf)
	bp := im2colPacked(*pbuf, xn, g, p0, p1, d)
	b.gemm(threads, gemmArgs{m: O, pa: wp, b: bp, direct: d, c: ct, ldc: ldc, acc: bs != nil})
	for o := range O {
		copy(dst[o*P+p0:o*P+p1], ct[o*ldc:o*ldc+cols])
	}
}

// directB lets the GEMM read B panels straight from an image (direct
// convolution) instead of a packed copy.
type directB struct {
	x []float32
	// offs[kk] is where row kk of B (channel c, kernel tap i, j) lies
	// relative to a pixel's input position: c·H·W + (i−pad)·W + (j−pad).
	offs []int32
	// at[jp] is the input position (oy·W + ox) of panel jp's first pixel,
	// or -1 when the panel is packed (it touches the padding).
	at []int
}

// directOffsets returns the row offsets of the direct convolution, or nil
// when the backend's kernel has no direct variant or the convolution does
// not suit it (a stride, offsets beyond int32).
func (b *Backend) directOffsets(g convGeom) []int32 {
	if b.mk.direct == nil || g.stride != 1 || int64(g.C)*int64(g.H)*int64(g.W) >= 1<<31 {
		return nil
	}
	offs := make([]int32, 0, g.C*g.kh*g.kw)
	for c := range g.C {
		for i := range g.kh {
			for j := range g.kw {
				offs = append(offs, int32(c*g.H*g.W+(i-g.pad)*g.W+(j-g.pad)))
			}
		}
	}
	return offs
}

// directPanels decides, for the panels of output pixels [p0, p1), which
// the direct kernel reads (see directB.at): whole kernel-width groups of
// panels (32 pixels for the 14×32 kernel) inside one output row whose
// input windows lie inside the image.
func (b *Backend) directPanels(g convGeom, p0, p1 int) []int {
	panels := (p1 - p0 + gemmNR - 1) / gemmNR
	at := make([]int, panels)
	step := b.mk.panelStep()
	width := step * gemmNR
	for jp := 0; jp < panels; jp += step {
		q0 := p0 + jp*gemmNR
		oy, ox := q0/g.Wo, q0%g.Wo
		ok := jp+step <= panels && q0+width <= p1 && ox+width <= g.Wo &&
			oy-g.pad >= 0 && oy-g.pad+g.kh <= g.H && ox-g.pad >= 0 && ox+width-1-g.pad+g.kw <= g.W
		for p := jp; p < min(panels, jp+step); p++ {
			at[p] = -1
			if ok {
				at[p] = oy*g.W + ox + (p-jp)*gemmNR
			}
		}
	}
	return at
}

// convGeom is the geometry of one image of a convolution.
type convGeom struct {
	C, H, W, kh, kw, stride, pad, Ho, Wo int
}

// im2colPacked writes the im2col matrix of output pixels [p0, p1) of one
// image (rows c*kh*kw + i*kw + j, one column per output pixel, zero where
// the kernel reads padding) straight into the GEMM's packed-B layout, so
// the patch matrix is never materialised. A 16-pixel panel that lies in one
// output row reads, for stride 1, 16 consecutive input values per row of
// the matrix.
//
// Panels that d reads directly are left unwritten.
func im2colPacked(dst []float32, x []float32, g convGeom, p0, p1 int, d *directB) packedB {
	cols := p1 - p0
	k := g.C * g.kh * g.kw
	panels := (cols + gemmNR - 1) / gemmNR
	dst = dst[:panels*gemmNR*k]
	var iy0, ix0 [gemmNR]int // top-left input position of each pixel's window
	for jp := range panels {
		if d != nil && d.at[jp] >= 0 {
			continue
		}
		q0 := p0 + jp*gemmNR
		n := min(gemmNR, p1-q0)
		for t := range n {
			oy, ox := (q0+t)/g.Wo, (q0+t)%g.Wo
			iy0[t], ix0[t] = oy*g.stride-g.pad, ox*g.stride-g.pad
		}
		pan := dst[jp*gemmNR*k : (jp+1)*gemmNR*k]
		sameRow := n == gemmNR && iy0[0] == iy0[gemmNR-1]
		kk := 0
		for c := range g.C {
			xc := x[c*g.H*g.W : (c+1)*g.H*g.W]
			for i := range g.kh {
				for j := range g.kw {
					d := (*[gemmNR]float32)(pan[kk*gemmNR : (kk+1)*gemmNR])
					kk++
					if sameRow {
						iy := iy0[0] + i
						if iy < 0 || iy >= g.H {
							*d = [gemmNR]float32{}
							continue
						}
						row := xc[iy*g.W : (iy+1)*g.W]
						x0 := ix0[0] + j
						if g.stride == 1 && x0 >= 0 && x0+gemmNR <= g.W {
							*d = *(*[gemmNR]float32)(row[x0 : x0+gemmNR])
							continue
						}
						for t := range d {
							if ix := x0 + t*g.stride; ix >= 0 && ix < g.W {
								d[t] = row[ix]
							} else {
								d[t] = 0
							}
						}
						continue
					}
					for t := range d {
						d[t] = 0
						if t >= n {
							continue
						}
						iy, ix := iy0[t]+i, ix0[t]+j
						if iy >= 0 && iy < g.H && ix >= 0 && ix < g.W {
							d[t] = xc[iy*g.W+ix]
						}
					}
				}
			}
		}
	}
	return packedB{k: k, n: cols, data: dst}
}
