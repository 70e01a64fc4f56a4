package vae

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/tensor"
	"github.com/sdxl-go/sdxl/tensor/backendtest"
)

func loadSmall(t *testing.T, b tensor.Backend) *VAE {
	t.Helper()
	v, err := LoadDir(b, golden.Path(t, "small/models/sdxl-small-base/vae"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// cropNCHW returns the top-left h x w of x [n, c, H, W].
func cropNCHW(x []float32, shape []int, h, w int) []float32 {
	n, c, H, W := shape[0], shape[1], shape[2], shape[3]
	out := make([]float32, 0, n*c*h*w)
	for p := range n * c {
		for y := range h {
			out = append(out, x[(p*H+y)*W:(p*H+y)*W+w]...)
		}
	}
	return out
}

// TestGoldenTiledDecode decodes the three vae_tiling cases with diffusers'
// tile sizes and compares with its tiled output (the requested top-left
// corner where diffusers returns more pixels).
func TestGoldenTiledDecode(t *testing.T) {
	b := cpu.New()
	v := loadSmall(t, b)
	for _, c := range []struct {
		name  string
		tile  int
		tiles int
	}{{"astro_8x8_t4", 32, 9}, {"rand_10x12_t4", 32, 16}, {"rand_10x12_t6", 48, 9}} {
		t.Run(c.name, func(t *testing.T) {
			g := golden.Open(t, "vae_tiling/vae_tiled_"+c.name+".safetensors")
			zd, zs := g.Get("in.z")
			z := b.FromFloat32(tensor.F32, zs, zd)
			var calls, total int
			img, err := v.DecodeTiled(context.Background(), b, z, Tiling{TileSize: c.tile, Progress: func(done, n int) error {
				calls++
				if done != calls {
					t.Errorf("progress %d after %d tiles", done, calls)
				}
				total = n
				return nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			if calls != c.tiles || total != c.tiles || v.DecodeTiles(zs[2], zs[3], Tiling{TileSize: c.tile}) != c.tiles {
				t.Errorf("%d progress calls, total %d, DecodeTiles %d, want %d tiles", calls, total, v.DecodeTiles(zs[2], zs[3], Tiling{TileSize: c.tile}), c.tiles)
			}
			want, ws := g.Get("out.tiled")
			h, w := 8*zs[2], 8*zs[3]
			if s := img.Shape(); !s.Equal(tensor.Shape{1, 3, h, w}) {
				t.Fatalf("shape %v, want [1 3 %d %d]", s, h, w)
			}
			golden.Check(t, "out.tiled", b.ToFloat32(img), cropNCHW(want, ws, h, w), 1e-5)
		})
	}
}

// TestTiledDecodeSmallLatents: latents within one tile are decoded whole,
// as diffusers does (it tiles only above tile_latent_min_size).
func TestTiledDecodeSmallLatents(t *testing.T) {
	b := cpu.New()
	v := loadSmall(t, b)
	g := golden.Open(t, "vae_tiling/vae_tiled_astro_8x8_t4.safetensors")
	zd, zs := g.Get("in.z")
	z := b.FromFloat32(tensor.F32, zs, zd)
	img, err := v.DecodeTiled(context.Background(), b, z, Tiling{TileSize: 64, Progress: func(int, int) error { t.Error("tiled"); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := g.Get("out.untiled")
	golden.Check(t, "untiled", b.ToFloat32(img), want, 1e-5)
}

// tiledEncodeReference is diffusers' _tiled_encode written out directly:
// every tile encoded and kept, blended in place (above, then left) and
// cropped, concatenated without a final crop.
func tiledEncodeReference(t *testing.T, b tensor.Backend, v *VAE, x *tensor.Tensor, sample int) ([]float32, []int) {
	latent := sample / v.ScaleFactor()
	step := int(float64(sample) * 0.75)
	blend := int(float64(latent) * 0.25)
	limit := latent - blend
	var rows [][]*hostTile
	for i := 0; i < x.Dim(2); i += step {
		var row []*hostTile
		for j := 0; j < x.Dim(3); j += step {
			rs := b.Slice(x, 2, i, min(x.Dim(2), i+sample))
			tile := b.Slice(rs, 3, j, min(x.Dim(3), j+sample))
			m, err := v.Moments(context.Background(), b, nil, tile)
			if err != nil {
				t.Fatal(err)
			}
			row = append(row, &hostTile{b.ToFloat32(m), m.Dim(0), m.Dim(1), m.Dim(2), m.Dim(3)})
		}
		rows = append(rows, row)
	}
	var outH, outW int
	for i, row := range rows {
		for j, tile := range row {
			if i > 0 {
				blendV(rows[i-1][j], tile, blend)
			}
			if j > 0 {
				blendH(row[j-1], tile, blend)
			}
			if i == 0 {
				outW += min(limit, tile.w)
			}
		}
		outH += min(limit, row[0].h)
	}
	C := rows[0][0].c
	out := make([]float32, C*outH*outW)
	oy := 0
	for _, row := range rows {
		ox := 0
		for _, tile := range row {
			ch, cw := min(limit, tile.h), min(limit, tile.w)
			for c := range C {
				for y := range ch {
					copy(out[(c*outH+oy+y)*outW+ox:], tile.data[(c*tile.h+y)*tile.w:(c*tile.h+y)*tile.w+cw])
				}
			}
			ox += cw
		}
		oy += min(limit, row[0].h)
	}
	return out, []int{1, C, outH, outW}
}

// TestTiledEncode checks MomentsTiled (kept tiles, streaming row by row)
// against the direct transcription of diffusers' _tiled_encode, including
// a tile size whose stride (36 pixels) is off the latent grid.
func TestTiledEncode(t *testing.T) {
	b := cpu.New()
	v := loadSmall(t, b)
	g := golden.Open(t, "small/e2e_astro_euler.safetensors")
	img, shape := g.Get("image") // NHWC [0,1]
	H, W := shape[1], shape[2]
	x := make([]float32, 3*H*W)
	for i := range H * W {
		for c := range 3 {
			x[c*H*W+i] = 2*img[i*3+c] - 1
		}
	}
	xt := b.FromFloat32(tensor.F32, tensor.Shape{1, 3, H, W}, x)
	for _, tile := range []int{32, 48} {
		want, ws := tiledEncodeReference(t, b, v, xt, tile)
		got, err := v.MomentsTiled(context.Background(), b, xt, Tiling{TileSize: tile})
		if err != nil {
			t.Fatal(err)
		}
		if s := got.Shape(); !s.Equal(tensor.Shape{1, 8, H / 8, W / 8}) {
			t.Fatalf("tile %d: shape %v", tile, s)
		}
		if d := golden.MaxAbs(b.ToFloat32(got), cropNCHW(want, ws, H/8, W/8)); d != 0 {
			t.Errorf("tile %d (reference %v): differs by %g", tile, ws, d)
		}
		untiled, err := v.Moments(context.Background(), b, nil, xt)
		if err != nil {
			t.Fatal(err)
		}
		e := golden.RelErr(b.ToFloat32(got), b.ToFloat32(untiled))
		t.Logf("tile %d: tiled vs untiled moments: relative difference %.3g", tile, e)
		if e < 1e-3 {
			t.Errorf("tile %d: tiled moments equal the untiled ones (%.3g): tiling did not happen", tile, e)
		}
	}
}

func TestTilingErrors(t *testing.T) {
	b := cpu.New()
	v := loadSmall(t, b)
	z := b.Zeros(tensor.F32, 1, 4, 10, 12)
	for _, size := range []int{8, 12, 33} {
		_, err := v.DecodeTiled(context.Background(), b, z, Tiling{TileSize: size})
		if err == nil || !strings.Contains(err.Error(), "tile size") {
			t.Errorf("tile size %d: err = %v", size, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err := v.DecodeTiled(ctx, b, z, Tiling{TileSize: 32, Progress: func(int, int) error {
		n++
		cancel()
		return nil
	}})
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Errorf("after cancel: err = %v after %d tiles", err, n)
	}
	stop := errors.New("stop")
	n = 0
	_, err = v.DecodeTiled(context.Background(), b, z, Tiling{TileSize: 32, Progress: func(int, int) error {
		n++
		return stop
	}})
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("progress error: err = %v after %d tiles", err, n)
	}
}

// TestTiledOnScope: the tiled passes called on a tensor.Scope whose
// temporary is the input read every tile from it and leave it to the
// caller (a tile's slice must not consume it), give the plain backend's
// result bit for bit, and leave nothing allocated after the scope's
// release.
func TestTiledOnScope(t *testing.T) {
	lb := backendtest.NewLive(cpu.New())
	v := loadSmall(t, lb)
	g := golden.Open(t, "vae_tiling/vae_tiled_rand_10x12_t4.safetensors")
	zd, zs := g.Get("in.z")
	x := make([]float32, 3*64*64)
	for i := range x {
		x[i] = float32(i%13)/6 - 1
	}
	ctx := context.Background()
	tiling := Tiling{TileSize: 32}
	for name, pass := range map[string]struct {
		in    []float32
		shape tensor.Shape
		run   func(b tensor.Backend, in *tensor.Tensor) (*tensor.Tensor, error)
	}{
		"decode": {zd, zs, func(b tensor.Backend, z *tensor.Tensor) (*tensor.Tensor, error) {
			return v.DecodeTiled(ctx, b, z, tiling)
		}},
		"moments": {x, tensor.Shape{1, 3, 64, 64}, func(b tensor.Backend, x *tensor.Tensor) (*tensor.Tensor, error) {
			return v.MomentsTiled(ctx, b, x, tiling)
		}},
	} {
		in := lb.FromFloat32(tensor.F32, pass.shape, pass.in)
		plain, err := pass.run(lb, in)
		if err != nil {
			t.Fatal(err)
		}
		want := lb.ToFloat32(plain)
		tensor.FreeAll(in, plain)
		lb.Reset()

		s := tensor.NewScope(lb)
		in = s.FromFloat32(tensor.F32, pass.shape, pass.in)
		out, err := pass.run(s, in)
		if err != nil {
			t.Fatal(err)
		}
		if d := golden.MaxAbs(s.ToFloat32(out), want); d != 0 {
			t.Errorf("%s on a scope differs from the plain backend by %g", name, d)
		}
		if got := s.ToFloat32(in); !slices.Equal(got, pass.in) {
			t.Errorf("%s on a scope changed or freed its input", name)
		}
		s.Release()
		if lb.Count() != 0 {
			t.Errorf("%s on a scope: %d tensors left after the release", name, lb.Count())
		}
	}
}
