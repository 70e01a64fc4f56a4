package imageio

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/internal/golden"
)

// TestGoldenInpaintInputs processes the inpainting goldens' PNGs and checks
// every recorded input tensor: the grey mask, the binarised mask, the latent
// mask, the [-1, 1] image and the masked image.
func TestGoldenInpaintInputs(t *testing.T) {
	for _, c := range []struct{ file, mask string }{
		{"inpaint/e2e_inp_base_rect_euler.safetensors", "mask_rect.png"},
		{"inpaint/e2e_inp9_soft_s075_dpmpp.safetensors", "mask_soft.png"},
	} {
		t.Run(c.mask, func(t *testing.T) {
			g := golden.Open(t, c.file)
			img, err := Load(golden.Path(t, "inpaint/input_astro_euler.png"))
			if err != nil {
				t.Fatal(err)
			}
			raw, err := Load(golden.Path(t, "inpaint/"+c.mask))
			if err != nil {
				t.Fatal(err)
			}
			grey := raw.Gray()
			in := make([]float32, len(grey))
			for i, v := range grey {
				in[i] = float32(v) / 255
			}
			want, _ := g.Get("input_mask")
			golden.Check(t, "input_mask", in, want, 0)

			p, err := PreprocessTo(img, 64, 64)
			if err != nil {
				t.Fatal(err)
			}
			x, shape := p.Normalized()
			want, _ = g.Get("image_preprocessed")
			golden.Check(t, "image_preprocessed", x, want, 0)

			m, err := LoadMask(golden.Path(t, "inpaint/"+c.mask), 64, 64)
			if err != nil {
				t.Fatal(err)
			}
			want, _ = g.Get("mask_processed")
			golden.Check(t, "mask_processed", m.Pix, want, 0)
			lm, err := m.Latent(8)
			if err != nil {
				t.Fatal(err)
			}
			want, _ = g.Get("mask_latent")
			golden.Check(t, "mask_latent", lm.Pix, want, 0)
			masked, err := MaskImage(x, shape, m)
			if err != nil {
				t.Fatal(err)
			}
			want, _ = g.Get("masked_image")
			golden.Check(t, "masked_image", masked, want, 0)
		})
	}
}

// TestMaskResize: a mask of another size is resized to the image's, as
// diffusers resizes both to the requested size, and stays binary.
func TestMaskResize(t *testing.T) {
	m := &RGB{W: 40, H: 24, Pix: make([]uint8, 3*40*24)}
	for y := range 24 {
		for x := 20; x < 40; x++ {
			copy(m.Pix[3*(y*40+x):], []uint8{255, 255, 255})
		}
	}
	p, err := ProcessMask(m, 16, 8)
	if err != nil {
		t.Fatal(err)
	}
	if p.W != 16 || p.H != 8 {
		t.Fatalf("size %dx%d", p.W, p.H)
	}
	for y := range 8 {
		for x := range 16 {
			want := float32(0)
			if x >= 8 {
				want = 1
			}
			if v := p.Pix[y*16+x]; v != want {
				t.Fatalf("pixel (%d,%d) = %v, want %v", x, y, v, want)
			}
		}
	}
}

func TestMaskErrors(t *testing.T) {
	dir := t.TempDir()
	black := &RGB{W: 16, H: 16, Pix: make([]uint8, 3*16*16)}
	for i := range black.Pix {
		black.Pix[i] = 127 // just under 50%
	}
	if _, err := ProcessMask(black, 16, 16); !errors.Is(err, ErrEmptyMask) {
		t.Errorf("all-dark mask: err = %v", err)
	}
	// One white pixel off the latent grid.
	dot := &Mask{W: 16, H: 16, Pix: make([]float32, 256)}
	dot.Pix[3*16+5] = 1
	if _, err := dot.Latent(8); !errors.Is(err, ErrEmptyMask) || !strings.Contains(err.Error(), "latent grid") {
		t.Errorf("off-grid mask: err = %v", err)
	}
	txt := filepath.Join(dir, "mask.png")
	if err := os.WriteFile(txt, []byte("not an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadMask(txt, 16, 16); err == nil || !strings.Contains(err.Error(), txt) || !strings.Contains(err.Error(), "unsupported image format") {
		t.Errorf("text file: err = %v", err)
	}
	if _, err := LoadMask(filepath.Join(dir, "missing.png"), 16, 16); err == nil || !strings.Contains(err.Error(), "missing.png") {
		t.Errorf("missing file: err = %v", err)
	}
	if _, err := ProcessMask(black, 12, 16); err == nil || !strings.Contains(err.Error(), "multiples of 8") {
		t.Errorf("size 12x16: err = %v", err)
	}
	if _, err := MaskImage(make([]float32, 3*8*8), []int{1, 3, 8, 8}, dot); err == nil || !strings.Contains(err.Error(), "16x16") {
		t.Errorf("size mismatch: err = %v", err)
	}
}
