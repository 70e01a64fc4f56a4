package sdxl

import (
	"context"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
)

// TestAutoTile: over the pixel threshold, or when only a tiled VAE fits in
// the memory budget, the engine tiles by itself and says so; the images
// equal those of a request asking for tiling.
func TestAutoTile(t *testing.T) {
	b := cpu.New()
	base, _ := loadSmall(t, b, false)
	auto, err := New(Options{Backend: b, AutoTilePixels: 128*128 - 1, MemoryBudget: -1}, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := Request{Prompt: "a lion", Width: 128, Height: 128, Steps: 1, Guidance: 5, Seed: 3}
	got, err := auto.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Warnings) != 1 || got.Warnings[0].Field != "VAETiling" || !strings.Contains(got.Warnings[0].Message, "tiles of 64 pixels") {
		t.Errorf("warnings %v", got.Warnings)
	}
	tiled := req
	tiled.VAETiling = true
	want, err := auto.Generate(context.Background(), tiled)
	if err != nil {
		t.Fatal(err)
	}
	sameFloats(t, "auto-tiled vs tiled", got.Images, want.Images, 0)
	if len(want.Warnings) != 0 {
		t.Errorf("asked-for tiling warns: %v", want.Warnings)
	}
	small := req
	small.Width, small.Height = 64, 64
	if w, err := auto.Check(small); err != nil || len(w) != 0 {
		t.Errorf("under the threshold: %v, %v", w, err)
	}

	// By memory: the smallest budget that holds the tiled run refuses the
	// untiled one, so the engine tiles.
	e, err := New(Options{Backend: b, AutoTilePixels: -1}, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	big := req
	big.Width, big.Height, big.VAETiling = 512, 512, true
	lo, hi := int64(1), int64(1)<<40
	for lo < hi {
		e.budget = (lo + hi) / 2
		if _, err := e.Check(big); err == nil {
			hi = e.budget
		} else {
			lo = e.budget + 1
		}
	}
	e.budget = lo
	big.VAETiling = false
	w, err := e.Check(big)
	if err != nil || len(w) != 1 || !strings.Contains(w[0].Message, "would not fit in memory") {
		t.Errorf("budget %d: warnings %v, %v", lo, w, err)
	}
	e.budget = lo - 1
	if _, err := e.Check(big); !isField(err, "Width") {
		t.Errorf("below the tiled run's need: %v", err)
	}
}
