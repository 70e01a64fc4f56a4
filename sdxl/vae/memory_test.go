package vae

import (
	"context"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/tensor"
	"github.com/sdxl-go/sdxl/tensor/backendtest"
)

// TestMemoryEstimate runs Decode, Moments and their tiled forms on the
// small VAE through a backend that counts live tensor bytes, and checks
// the replay behind DecodeMemory and EncodeMemory against the measured
// peaks: the tensors exactly, the estimate (with backend scratch) never
// below.
func TestMemoryEstimate(t *testing.T) {
	tb := backendtest.NewLive(cpu.New())
	v := loadSmall(t, tb)
	ctx := context.Background()
	for _, c := range []struct{ n, h, w int }{{1, 8, 8}, {2, 5, 7}, {1, 12, 10}} {
		z := tb.Zeros(tensor.F32, c.n, 4, c.h, c.w)
		tb.Reset()
		img, err := v.Decode(context.Background(), tb, nil, z)
		if err != nil {
			t.Fatal(err)
		}
		img.Free()
		t.Logf("decode %+v: tensors peak at %d bytes", c, tb.Peak)
		if want := v.decodeWalk(c.n, c.h, c.w).livePeak; tb.Peak != want {
			t.Errorf("decode %+v: tensors peak at %d bytes, the replay says %d", c, tb.Peak, want)
		}
		est, _ := v.DecodeMemory(c.n, 8*c.w, 8*c.h, nil)
		if est.Device < tb.Peak || est.Host != 0 || est.Tiled {
			t.Errorf("decode %+v: estimate %+v below the measured %d", c, est, tb.Peak)
		}

		x := tb.Zeros(tensor.F32, c.n, 3, 8*c.h, 8*c.w)
		tb.Reset()
		mom, err := v.Moments(context.Background(), tb, nil, x)
		if err != nil {
			t.Fatal(err)
		}
		mom.Free()
		if want := v.encodeWalk(c.n, 8*c.h, 8*c.w).livePeak; tb.Peak != want {
			t.Errorf("encode %+v: tensors peak at %d bytes, the replay says %d", c, tb.Peak, want)
		}
	}

	// Tiled: the device holds the latents, one tile's pass and, at the
	// end, the result.
	z := tb.Zeros(tensor.F32, 1, 4, 12, 10)
	tb.Reset()
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
	if !est.Tiled || est.Device-zin < tb.Peak || est.Host < 4*3*80*96 {
		t.Errorf("tiled decode: estimate %+v, measured device peak %d", est, tb.Peak)
	}
	untiled, _ := v.DecodeMemory(1, 80, 96, nil)
	if est.Device >= untiled.Device {
		t.Errorf("tiled device estimate %d not below the untiled %d", est.Device, untiled.Device)
	}
	x := tb.Zeros(tensor.F32, 1, 3, 96, 80)
	tb.Reset()
	mom, err := v.MomentsTiled(ctx, tb, x, Tiling{TileSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	mom.Free()
	est, err = v.EncodeMemory(1, 80, 96, &Tiling{TileSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	if !est.Tiled || est.Device-int64(4*3*96*80) < tb.Peak {
		t.Errorf("tiled encode: estimate %+v, measured device peak %d", est, tb.Peak)
	}
}
