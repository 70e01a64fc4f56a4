package vae

import (
	"context"
	"fmt"

	"github.com/sdxl-go/sdxl/tensor"
)

// TileOverlap is diffusers' tile_overlap_factor: the fraction of a tile
// shared with its neighbour.
const TileOverlap = 0.25

// Tiling is AutoencoderKL.enable_tiling(): decode and encode large images
// tile by tile so that memory stays bounded by the tile size, blending the
// overlaps exactly as diffusers does (the result differs from an untiled
// run, as in diffusers).
type Tiling struct {
	// TileSize is the tile edge in pixels, diffusers' tile_sample_min_size;
	// the latent tile is TileSize / ScaleFactor (tile_latent_min_size).
	// 0 means the config's sample_size (1024 for SDXL). It must be a
	// multiple of the scale factor and at least twice it.
	TileSize int
	// Progress, when set, is called after each tile with the tiles done and
	// the total of this decode or encode; an error stops the pass.
	Progress func(done, total int) error
}

// TileSizes returns the pixel and latent tile edges t resolves to for v.
func (v *VAE) TileSizes(t Tiling) (sample, latent int, err error) {
	f := v.ScaleFactor()
	sample = t.TileSize
	if sample == 0 {
		if v.cfg.SampleSize == nil {
			return 0, 0, fmt.Errorf("vae: the config has no sample_size, so there is no default tile size: give one")
		}
		// diffusers' tile_latent_min_size reads sample_size[0] of a pair.
		sample = v.cfg.SampleSize.H
	}
	if sample < 2*f || sample%f != 0 {
		return 0, 0, fmt.Errorf("vae tile size %d: must be a multiple of %d and at least %d pixels", sample, f, 2*f)
	}
	return sample, sample / f, nil
}

// DecodeTiles is the number of tiles DecodeTiled cuts latents of h x w
// into (1: decoded whole), or 0 for an invalid tile size.
func (v *VAE) DecodeTiles(h, w int, t Tiling) int {
	_, latent, err := v.TileSizes(t)
	if err != nil {
		return 0
	}
	if h <= latent && w <= latent {
		return 1
	}
	g := tileGrid{step: int(float64(latent) * (1 - TileOverlap))}
	return g.count(h) * g.count(w)
}

// DecodeTiled is Decode with tiling: z [B, latent, h, w] is cut into
// overlapping tiles of the latent tile size (origins every
// int(tile*(1-TileOverlap)) latents), each decoded on its own (with
// post_quant_conv), blended into its upper and left neighbours and cropped,
// as diffusers' tiled_decode. Latents no larger than one tile are decoded
// whole, as diffusers does. The result is [B, 3, f*h, f*w]: where diffusers
// returns more pixels (when the crop, tile - int(tile*TileOverlap), exceeds
// f times the origin stride) this is its top-left corner. The context is
// checked between tiles; the result is assembled on the host and uploaded
// once.
func (v *VAE) DecodeTiled(ctx context.Context, b tensor.Backend, z *tensor.Tensor, t Tiling) (*tensor.Tensor, error) {
	if err := checkImage("latents", z, v.cfg.LatentChannels); err != nil {
		return nil, err
	}
	sample, latent, err := v.TileSizes(t)
	if err != nil {
		return nil, err
	}
	h, w := z.Dim(2), z.Dim(3)
	if h <= latent && w <= latent {
		return v.Decode(ctx, b, nil, z)
	}
	f := v.ScaleFactor()
	g := tileGrid{
		tile:  latent,
		step:  int(float64(latent) * (1 - TileOverlap)),
		blend: int(float64(sample) * TileOverlap),
		outH:  f * h, outW: f * w,
	}
	g.limit = sample - g.blend
	return g.run(ctx, b, z, v.cfg.OutChannels, t.Progress, func(s *tensor.Scope, tile *tensor.Tensor) (*tensor.Tensor, error) {
		return v.Decode(ctx, s, nil, tile)
	})
}

// MomentsTiled is Moments with tiling, diffusers' _tiled_encode: image
// tiles of TileSize pixels (origins every int(TileSize*(1-TileOverlap))
// pixels) go through the encoder and quant_conv, and the moments are
// blended over int(latent tile*TileOverlap) latents and cropped. Images no
// larger than one tile are encoded whole. The result is
// [B, 2*latent, H/f, W/f], the top-left corner where diffusers returns
// more.
func (v *VAE) MomentsTiled(ctx context.Context, b tensor.Backend, x *tensor.Tensor, t Tiling) (*tensor.Tensor, error) {
	if err := checkImage("image", x, v.cfg.InChannels); err != nil {
		return nil, err
	}
	sample, latent, err := v.TileSizes(t)
	if err != nil {
		return nil, err
	}
	H, W := x.Dim(2), x.Dim(3)
	if H <= sample && W <= sample {
		return v.Moments(ctx, b, nil, x)
	}
	f := v.ScaleFactor()
	g := tileGrid{
		tile:  sample,
		step:  int(float64(sample) * (1 - TileOverlap)),
		blend: int(float64(latent) * TileOverlap),
		outH:  H / f, outW: W / f,
		minIn: f,
	}
	g.limit = latent - g.blend
	return g.run(ctx, b, x, 2*v.cfg.LatentChannels, t.Progress, func(s *tensor.Scope, tile *tensor.Tensor) (*tensor.Tensor, error) {
		return v.Moments(ctx, s, nil, tile)
	})
}

// EncodeTiled is Encode with tiling (see MomentsTiled).
func (v *VAE) EncodeTiled(ctx context.Context, b tensor.Backend, x *tensor.Tensor, t Tiling) (*Posterior, error) {
	s := tensor.NewScope(b)
	defer s.Release()
	mom, err := v.MomentsTiled(ctx, s, x, t)
	if err != nil {
		return nil, err
	}
	return NewPosterior(s, mom).keep(s), nil
}

// tileGrid is one tiled pass: input tiles of edge tile (input units) at
// origins every step, output tiles blended over blend rows/columns with
// their neighbours and cropped to limit, the requested output outH x outW.
type tileGrid struct {
	tile, step   int
	blend, limit int
	outH, outW   int
	// minIn drops a last tile narrower than this (the encoder makes no
	// latent of fewer than f pixels; torch fails on it).
	minIn int
}

// hostTile is one processed tile on the host, NCHW.
type hostTile struct {
	data       []float32
	n, c, h, w int
}

// count is the number of tile origins along an input edge of size.
func (g tileGrid) count(size int) int {
	n := (size + g.step - 1) / g.step
	if n > 1 && size-(n-1)*g.step < g.minIn {
		n--
	}
	return n
}

// run processes the tiles of x in diffusers' order (rows of tiles top to
// bottom, each left to right). Only the previous row of tiles is kept,
// blended but not cropped, which is all the in-place blending of later
// tiles reads.
func (g tileGrid) run(ctx context.Context, b tensor.Backend, x *tensor.Tensor, outC int, progress func(int, int) error, f tileFunc) (*tensor.Tensor, error) {
	N, H, W := x.Dim(0), x.Dim(2), x.Dim(3)
	rows, cols := g.count(H), g.count(W)
	out := make([]float32, N*outC*g.outH*g.outW)
	var prev []*hostTile
	oy := 0
	for i := range rows {
		row := make([]*hostTile, 0, cols)
		ox, rowH := 0, 0
		for j := range cols {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			tile, err := g.process(b, x, i*g.step, j*g.step, f)
			if err != nil {
				return nil, err
			}
			if tile.c != outC || tile.n != N {
				return nil, fmt.Errorf("vae: tile output [%d, %d, %d, %d], want %d images of %d channels", tile.n, tile.c, tile.h, tile.w, N, outC)
			}
			if i > 0 {
				blendV(prev[j], tile, g.blend)
			}
			if j > 0 {
				blendH(row[j-1], tile, g.blend)
			}
			row = append(row, tile)
			ch, cw := min(tile.h, g.limit), min(tile.w, g.limit)
			g.place(out, tile, oy, ox, ch, cw)
			ox += cw
			rowH = ch
			if progress != nil {
				if err := progress(i*cols+j+1, rows*cols); err != nil {
					return nil, err
				}
			}
		}
		if ox < g.outW {
			return nil, fmt.Errorf("vae: tiled pass covers %d of %d columns (tile %d)", ox, g.outW, g.tile)
		}
		oy += rowH
		prev = row
	}
	if oy < g.outH {
		return nil, fmt.Errorf("vae: tiled pass covers %d of %d rows (tile %d)", oy, g.outH, g.tile)
	}
	return b.FromFloat32(x.DType(), tensor.Shape{N, outC, g.outH, g.outW}, out), nil
}

// tileFunc processes one tile on s, which owns the tile and takes the
// result.
type tileFunc func(s *tensor.Scope, tile *tensor.Tensor) (*tensor.Tensor, error)

// process runs f on the tile of x at input origin (y, x0) and copies the
// result to the host.
func (g tileGrid) process(b tensor.Backend, x *tensor.Tensor, y, x0 int, f tileFunc) (*hostTile, error) {
	s := tensor.NewScope(b)
	defer s.Release()
	// x is read again by the next tile (and stays the caller's).
	in := s.Slice(s.Slice(s.Borrow(x), 2, y, min(x.Dim(2), y+g.tile)), 3, x0, min(x.Dim(3), x0+g.tile))
	o, err := f(s, in)
	if err != nil {
		return nil, err
	}
	t := &hostTile{n: o.Dim(0), c: o.Dim(1), h: o.Dim(2), w: o.Dim(3)}
	t.data = s.ToFloat32(o)
	if err := b.Err(); err != nil {
		return nil, err
	}
	return t, nil
}

// place copies rows [0, ch) and columns [0, cw) of t to out at (oy, ox),
// clipped to the requested output size.
func (g tileGrid) place(out []float32, t *hostTile, oy, ox, ch, cw int) {
	ch = min(ch, g.outH-oy)
	cw = min(cw, g.outW-ox)
	if ch <= 0 || cw <= 0 {
		return
	}
	for p := range t.n * t.c {
		src := t.data[p*t.h*t.w:]
		dst := out[p*g.outH*g.outW:]
		for y := range ch {
			copy(dst[(oy+y)*g.outW+ox:(oy+y)*g.outW+ox+cw], src[y*t.w:y*t.w+cw])
		}
	}
}

// blendWeights are diffusers' (1 - y/e, y/e), computed in double and
// applied in float32 as torch multiplies a float32 tensor by a Python
// float.
func blendWeights(y, e int) (wa, wb float32) {
	r := float64(y) / float64(e)
	return float32(1 - r), float32(r)
}

// blendV is diffusers' blend_v, in place on b: its first e rows fade from
// the last e rows of a (the tile above) to its own, e = min(a.h, b.h,
// extent).
func blendV(a, b *hostTile, extent int) {
	e := min(a.h, b.h, extent)
	for p := range b.n * b.c {
		ap, bp := a.data[p*a.h*a.w:], b.data[p*b.h*b.w:]
		for y := range e {
			wa, wb := blendWeights(y, e)
			ar := ap[(a.h-e+y)*a.w : (a.h-e+y+1)*a.w]
			br := bp[y*b.w : (y+1)*b.w]
			for x := range br {
				// The conversions keep the two products rounded
				// separately (no fused multiply-add), as torch does.
				br[x] = float32(ar[x]*wa) + float32(br[x]*wb)
			}
		}
	}
}

// blendH is diffusers' blend_h: the first e columns of b fade from the
// last e columns of a (the tile to the left).
func blendH(a, b *hostTile, extent int) {
	e := min(a.w, b.w, extent)
	for p := range b.n * b.c {
		ap, bp := a.data[p*a.h*a.w:], b.data[p*b.h*b.w:]
		for y := range b.h {
			ar, br := ap[y*a.w:(y+1)*a.w], bp[y*b.w:(y+1)*b.w]
			for x := range e {
				wa, wb := blendWeights(x, e)
				br[x] = float32(ar[a.w-e+x]*wa) + float32(br[x]*wb)
			}
		}
	}
}
