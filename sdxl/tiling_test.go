package sdxl

import (
	"context"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
)

// TestTiledDecodeGolden runs the astro_euler scenario with VAE tiling at
// 32-pixel tiles: the image must be diffusers' tiled decode of its final
// latents (vae_tiling's astro_8x8_t4), with one VAE event per tile.
func TestTiledDecodeGolden(t *testing.T) {
	b := cpu.New()
	base, _ := loadSmall(t, b, false)
	p := &Pipeline{Backend: b, Base: base}
	req := requestFor(t, golden.SmallScenarios(t)["astro_euler"])
	req.VAETiling, req.VAETileSize = true, 32
	var tiles []int
	req.Progress = func(e Event) error {
		if e.Stage == StageVAE {
			if e.Steps != 9 {
				t.Errorf("VAE event with %d steps, want 9 tiles", e.Steps)
			}
			tiles = append(tiles, e.Step)
		}
		return nil
	}
	res, err := p.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(tiles) != 10 || tiles[0] != 0 || tiles[9] != 9 {
		t.Errorf("VAE events at steps %v, want 0 (start) then 1..9", tiles)
	}
	g := golden.Open(t, "vae_tiling/vae_tiled_astro_8x8_t4.safetensors")
	want, _ := g.Get("out.tiled")
	golden.Check(t, "tiled decode through the pipeline", res.Images, want, 1e-5)
}

// TestTiledInpaintEncode: with tiling the input image is encoded in tiles
// too (64 pixels in 32-pixel tiles), which changes the image latents the
// 4-channel inpainting keeps outside the mask.
func TestTiledInpaintEncode(t *testing.T) {
	b := cpu.New()
	sc := golden.InpaintScenarios(t)["inp_base_rect_euler"]
	p := &Pipeline{Backend: b, Base: modelFor(t, b, sc)}
	req := inpaintRequest(t, sc)
	req.OutputLatents = true
	plain, err := p.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	req.VAETiling, req.VAETileSize = true, 32
	tiled, err := p.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	mask, _ := golden.Open(t, "inpaint/"+sc.File).Get("mask_latent")
	var a, c []float32 // the kept (unmasked) latents
	for i, v := range plain.Latents {
		if mask[i%len(mask)] == 0 {
			a, c = append(a, tiled.Latents[i]), append(c, v)
		}
	}
	e := golden.RelErr(a, c)
	t.Logf("kept latents: tiled vs untiled encode differ by %.3g", e)
	if e < 0.05 {
		t.Errorf("tiled encoding changed the kept latents by only %.3g", e)
	}
}
