package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// withoutDirect is b with convolutions always packing B (im2col).
func withoutDirect(b *Backend) *Backend {
	c := *b
	mk := *b.mk
	mk.direct = nil
	c.mk = &mk
	return &c
}

// TestConvDirect checks the direct convolution (B read from the image in
// place) against the packed im2col path, which sums in the same order:
// the results must be bit-identical, on images wide enough to have
// interior panels and with every edge (padding rows and columns, partial
// panels, odd widths, several kc blocks, 1x1 and 3x3 and 5x5 kernels).
func TestConvDirect(t *testing.T) {
	forEachKernel(t, Options{}, func(t *testing.T, b *Backend) {
		if b.mk.direct == nil {
			t.Skipf("%s has no direct kernel", b.Kernel())
		}
		packed := withoutDirect(b)
		r := rand.New(rand.NewPCG(13, 14))
		cases := []struct{ n, c, h, w, o, k, pad int }{
			{1, 3, 5, 70, 9, 3, 1}, {2, 40, 9, 64, 20, 3, 1}, {1, 30, 6, 97, 15, 3, 1},
			{1, 7, 4, 130, 33, 1, 0}, {1, 5, 8, 50, 6, 5, 2}, {1, 4, 7, 48, 3, 3, 0},
			{1, 29, 3, 40, 17, 3, 1}, {1, 2, 34, 34, 5, 3, 1},
		}
		directPanels := 0
		for _, c := range cases {
			name := fmt.Sprintf("%+v", c)
			g := convGeom{C: c.c, H: c.h, W: c.w, kh: c.k, kw: c.k, stride: 1, pad: c.pad, Ho: c.h + 2*c.pad - c.k + 1, Wo: c.w + 2*c.pad - c.k + 1}
			for _, at := range b.directPanels(g, 0, g.Ho*g.Wo) {
				if at >= 0 {
					directPanels++
				}
			}
			x := randTensor(b, r, 0, c.n, c.c, c.h, c.w)
			w := randTensor(b, r, 0, c.o, c.c, c.k, c.k)
			bias := randTensor(b, r, 0, c.o)
			got := b.ToFloat32(b.Conv2D(x, w, bias, 1, c.pad))
			want := packed.ToFloat32(packed.Conv2D(x, w, bias, 1, c.pad))
			sameBits(t, name, got, want)
		}
		if directPanels == 0 {
			t.Fatal("no case had a direct panel")
		}
		t.Logf("%d direct panels", directPanels)
	})
}
