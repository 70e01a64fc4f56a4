package vae

import (
	"context"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/tensor"
)

// trackBackend is the CPU backend counting the bytes of live tensors (each
// op's output until it is freed), as a device allocator would hold them.
type trackBackend struct {
	*cpu.Backend
	live, peak int64
	// held maps the storage of each live tensor (a pointer, shared by
	// reshaped views) to its bytes.
	held map[any]int64
}

func newTrack() *trackBackend {
	return &trackBackend{Backend: cpu.New(), held: map[any]int64{}}
}

func (t *trackBackend) wrap(x *tensor.Tensor) *tensor.Tensor {
	if n := int64(x.Numel() * x.DType().Size()); n > 0 {
		t.held[x.Storage] = n
		t.live += n
		t.peak = max(t.peak, t.live)
	}
	return tensor.New(t, x.Shape(), x.DType(), x.Storage)
}

// reset starts a measurement: live tensors so far are forgotten.
func (t *trackBackend) reset() {
	t.live, t.peak = 0, 0
	t.held = map[any]int64{}
}

func (t *trackBackend) Free(x *tensor.Tensor) {
	if n, ok := t.held[x.Storage]; ok {
		t.live -= n
		delete(t.held, x.Storage)
	}
}

func (t *trackBackend) Zeros(dt tensor.DType, shape ...int) *tensor.Tensor {
	return t.wrap(t.Backend.Zeros(dt, shape...))
}
func (t *trackBackend) FromFloat32(dt tensor.DType, s tensor.Shape, d []float32) *tensor.Tensor {
	return t.wrap(t.Backend.FromFloat32(dt, s, d))
}
func (t *trackBackend) MatMul(a, b *tensor.Tensor, ta, tb bool) *tensor.Tensor {
	return t.wrap(t.Backend.MatMul(a, b, ta, tb))
}
func (t *trackBackend) Conv2D(x, w, b *tensor.Tensor, s, p int) *tensor.Tensor {
	return t.wrap(t.Backend.Conv2D(x, w, b, s, p))
}
func (t *trackBackend) GroupNorm(x *tensor.Tensor, g int, w, b *tensor.Tensor, e float32) *tensor.Tensor {
	return t.wrap(t.Backend.GroupNorm(x, g, w, b, e))
}
func (t *trackBackend) GroupNormSiLU(x *tensor.Tensor, g int, w, b *tensor.Tensor, e float32) *tensor.Tensor {
	return t.wrap(t.Backend.GroupNormSiLU(x, g, w, b, e))
}
func (t *trackBackend) LayerNorm(x, w, b *tensor.Tensor, e float32) *tensor.Tensor {
	return t.wrap(t.Backend.LayerNorm(x, w, b, e))
}
func (t *trackBackend) Attention(q, k, v, m *tensor.Tensor, s float32) *tensor.Tensor {
	return t.wrap(t.Backend.Attention(q, k, v, m, s))
}
func (t *trackBackend) Linear(x, w, b *tensor.Tensor) *tensor.Tensor {
	return t.wrap(t.Backend.Linear(x, w, b))
}
func (t *trackBackend) Softmax(x *tensor.Tensor) *tensor.Tensor { return t.wrap(t.Backend.Softmax(x)) }
func (t *trackBackend) SiLU(x *tensor.Tensor) *tensor.Tensor    { return t.wrap(t.Backend.SiLU(x)) }
func (t *trackBackend) GELU(x *tensor.Tensor) *tensor.Tensor    { return t.wrap(t.Backend.GELU(x)) }
func (t *trackBackend) QuickGELU(x *tensor.Tensor) *tensor.Tensor {
	return t.wrap(t.Backend.QuickGELU(x))
}
func (t *trackBackend) GEGLU(x *tensor.Tensor) *tensor.Tensor  { return t.wrap(t.Backend.GEGLU(x)) }
func (t *trackBackend) Add(a, b *tensor.Tensor) *tensor.Tensor { return t.wrap(t.Backend.Add(a, b)) }
func (t *trackBackend) Mul(a, b *tensor.Tensor) *tensor.Tensor { return t.wrap(t.Backend.Mul(a, b)) }
func (t *trackBackend) Scale(x *tensor.Tensor, s float32) *tensor.Tensor {
	return t.wrap(t.Backend.Scale(x, s))
}
func (t *trackBackend) Concat(axis int, ts ...*tensor.Tensor) *tensor.Tensor {
	return t.wrap(t.Backend.Concat(axis, ts...))
}
func (t *trackBackend) Slice(x *tensor.Tensor, axis, s, e int) *tensor.Tensor {
	return t.wrap(t.Backend.Slice(x, axis, s, e))
}
func (t *trackBackend) Permute(x *tensor.Tensor, p ...int) *tensor.Tensor {
	return t.wrap(t.Backend.Permute(x, p...))
}
func (t *trackBackend) Upsample(x *tensor.Tensor, h, w int) *tensor.Tensor {
	return t.wrap(t.Backend.Upsample(x, h, w))
}
func (t *trackBackend) Embedding(tb *tensor.Tensor, ids []int32) *tensor.Tensor {
	return t.wrap(t.Backend.Embedding(tb, ids))
}
func (t *trackBackend) Cast(x *tensor.Tensor, dt tensor.DType) *tensor.Tensor {
	return t.wrap(t.Backend.Cast(x, dt))
}
func (t *trackBackend) Mean(x *tensor.Tensor, axis int) *tensor.Tensor {
	return t.wrap(t.Backend.Mean(x, axis))
}

var _ tensor.Backend = (*trackBackend)(nil)

// TestMemoryEstimate runs Decode, Moments and their tiled forms on the
// small VAE through a backend that counts live tensor bytes, and checks
// the replay behind DecodeMemory and EncodeMemory against the measured
// peaks: the tensors exactly, the estimate (with backend scratch) never
// below.
func TestMemoryEstimate(t *testing.T) {
	tb := newTrack()
	v := loadSmall(t, tb)
	ctx := context.Background()
	for _, c := range []struct{ n, h, w int }{{1, 8, 8}, {2, 5, 7}, {1, 12, 10}} {
		z := tb.Zeros(tensor.F32, c.n, 4, c.h, c.w)
		tb.reset()
		img, err := v.Decode(tb, nil, z)
		if err != nil {
			t.Fatal(err)
		}
		img.Free()
		t.Logf("decode %+v: tensors peak at %d bytes", c, tb.peak)
		if want := v.decodeWalk(c.n, c.h, c.w).livePeak; tb.peak != want {
			t.Errorf("decode %+v: tensors peak at %d bytes, the replay says %d", c, tb.peak, want)
		}
		est, _ := v.DecodeMemory(c.n, 8*c.w, 8*c.h, nil)
		if est.Device < tb.peak || est.Host != 0 || est.Tiled {
			t.Errorf("decode %+v: estimate %+v below the measured %d", c, est, tb.peak)
		}

		x := tb.Zeros(tensor.F32, c.n, 3, 8*c.h, 8*c.w)
		tb.reset()
		mom, err := v.Moments(tb, nil, x)
		if err != nil {
			t.Fatal(err)
		}
		mom.Free()
		if want := v.encodeWalk(c.n, 8*c.h, 8*c.w).livePeak; tb.peak != want {
			t.Errorf("encode %+v: tensors peak at %d bytes, the replay says %d", c, tb.peak, want)
		}
	}

	// Tiled: the device holds the latents, one tile's pass and, at the
	// end, the result.
	z := tb.Zeros(tensor.F32, 1, 4, 12, 10)
	tb.reset()
	img, err := v.DecodeTiled(ctx, tb, z, Tiling{TileSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	img.Free()
	est, err := v.DecodeMemory(1, 80, 96, &Tiling{TileSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	zin := int64(4 * 4 * 12 * 10)
	if !est.Tiled || est.Device-zin < tb.peak || est.Host < 4*3*80*96 {
		t.Errorf("tiled decode: estimate %+v, measured device peak %d", est, tb.peak)
	}
	untiled, _ := v.DecodeMemory(1, 80, 96, nil)
	if est.Device >= untiled.Device {
		t.Errorf("tiled device estimate %d not below the untiled %d", est.Device, untiled.Device)
	}
	x := tb.Zeros(tensor.F32, 1, 3, 96, 80)
	tb.reset()
	mom, err := v.MomentsTiled(ctx, tb, x, Tiling{TileSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	mom.Free()
	est, err = v.EncodeMemory(1, 80, 96, &Tiling{TileSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	if !est.Tiled || est.Device-int64(4*3*96*80) < tb.peak {
		t.Errorf("tiled encode: estimate %+v, measured device peak %d", est, tb.peak)
	}
}
