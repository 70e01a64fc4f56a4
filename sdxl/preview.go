package sdxl

import (
	"image"
	"math"
)

// latentRGB maps SDXL's four latent channels to RGB: rgb = Σ_c latent_c ·
// latentRGB[c] + latentRGBBias, then [-1, 1] → [0, 1]. The numbers are
// ComfyUI's `latent_rgb_factors` and `latent_rgb_factors_bias` of class
// SDXL in comfy/latent_formats.py (applied in latent_preview.py's
// Latent2RGBPreviewer with F.linear, then preview_to_image's
// ((x + 1) / 2).clamp(0, 1)).
var latentRGB = [4][3]float64{
	{0.3651, 0.4232, 0.4341},
	{-0.2533, -0.0042, 0.1068},
	{0.1076, 0.1111, -0.0362},
	{-0.3165, -0.2492, -0.2188},
}

var latentRGBBias = [3]float64{0.1084, -0.0175, -0.0011}

// LatentPreview is a cheap picture of image i of SDXL latents [N, 4, h, w]
// (scaled, as the pipeline holds them) without the VAE: one pixel per
// latent position, to be upscaled for display. It returns nil for an index
// or shape it cannot show.
func LatentPreview(latents []float32, shape [4]int, i int) *image.NRGBA {
	n, c, h, w := shape[0], shape[1], shape[2], shape[3]
	if c != 4 || i < 0 || i >= n || len(latents) < n*c*h*w {
		return nil
	}
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	plane := h * w
	base := i * c * plane
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			k := y*w + x
			var rgb [3]float64
			for ch := 0; ch < 4; ch++ {
				v := float64(latents[base+ch*plane+k])
				for j := range rgb {
					rgb[j] += v * latentRGB[ch][j]
				}
			}
			o := img.PixOffset(x, y)
			for j := range rgb {
				img.Pix[o+j] = toByte((rgb[j] + latentRGBBias[j] + 1) / 2)
			}
			img.Pix[o+3] = 255
		}
	}
	return img
}

// toByte maps [0, 1] to 0..255, clamping (NaN becomes 0).
func toByte(v float64) uint8 {
	if !(v > 0) {
		return 0
	}
	if v >= 1 {
		return 255
	}
	return uint8(math.Round(v * 255))
}
