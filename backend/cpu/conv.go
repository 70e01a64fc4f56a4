package cpu

import (
	"github.com/sdxl-go/sdxl/tensor"
)

// convTileCols is the number of output pixels one conv work item computes
// (rounded to whole output rows), which also bounds its im2col buffer.
const convTileCols = 512

// Conv2D implements tensor.Backend as im2col + GEMM over tiles of output
// pixels: out[n][:, tile] = W[O, C*kh*kw] · col[C*kh*kw, tile].
func (b *Backend) Conv2D(x, w, bias *tensor.Tensor, stride, padding int) *tensor.Tensor {
	const op = "Conv2D"
	xs, ws := data(op, x), data(op, w)
	var bs []float32
	if bias != nil {
		bs = data(op, bias)
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

	// The weights are the A operand of every tile: pack them once.
	abuf := b.pools.b.get(packedASize(O, ckk))
	defer b.pools.b.put(abuf)
	wp := b.packAllA(b.threads, *abuf, false, O, ckk, ws, ckk)

	direct := kh == 1 && kw == 1 && stride == 1 && padding == 0
	// Tile whole output rows, about convTileCols pixels per tile: the kc
	// rows of a tile's packed im2col matrix then stay in L2 while every
	// block of weights passes over them.
	rowsPerTile := min(Ho, max(1, convTileCols/max(1, Wo)))
	tiles := (Ho + rowsPerTile - 1) / rowsPerTile
	b.parallelItems(N*tiles, func(item int) {
		n, t := item/tiles, item%tiles
		r0 := t * rowsPerTile
		r1 := min(Ho, r0+rowsPerTile)
		p0, p1 := r0*Wo, r1*Wo
		cols := p1 - p0
		dst := out[n*O*P:]
		if bs != nil {
			for o := range O {
				row := dst[o*P+p0 : o*P+p1]
				for i := range row {
					row[i] = bs[o]
				}
			}
		}
		xn := xs[n*C*H*W : (n+1)*C*H*W]
		pbuf := b.pools.b.get(packedBSize(ckk, cols))
		defer b.pools.b.put(pbuf)
		var bp packedB
		if direct {
			bp = b.packB(1, *pbuf, false, C, cols, xn[p0:], H*W)
		} else {
			cbuf := b.pools.scratch.get(ckk * cols)
			defer b.pools.scratch.put(cbuf)
			im2col(xn, C, H, W, kh, kw, stride, padding, Wo, r0, r1, *cbuf)
			bp = b.packB(1, *pbuf, false, ckk, cols, *cbuf, cols)
		}
		b.gemm(1, gemmArgs{m: O, pa: wp, b: bp, c: dst[p0:], ldc: P, acc: bs != nil})
	})
	return b.wrap(x.DType(), outShape, out)
}

// im2col writes rows [r0, r1) of output pixels into col, laid out
// [C*kh*kw, (r1-r0)*Wo], zero where the kernel reads padding.
func im2col(x []float32, C, H, W, kh, kw, stride, pad, Wo, r0, r1 int, col []float32) {
	cols := (r1 - r0) * Wo
	for c := range C {
		xc := x[c*H*W : (c+1)*H*W]
		for i := range kh {
			for j := range kw {
				dst := col[((c*kh+i)*kw+j)*cols:][:cols]
				p := 0
				for oy := r0; oy < r1; oy++ {
					iy := oy*stride - pad + i
					if iy < 0 || iy >= H {
						clear(dst[p : p+Wo])
						p += Wo
						continue
					}
					xr := xc[iy*W : (iy+1)*W]
					for ox := range Wo {
						ix := ox*stride - pad + j
						if ix >= 0 && ix < W {
							dst[p] = xr[ix]
						} else {
							dst[p] = 0
						}
						p++
					}
				}
			}
		}
	}
}
