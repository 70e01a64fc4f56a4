package imageio

import (
	"fmt"
	"math"
)

// VAEScaleFactor is the multiple diffusers' VaeImageProcessor rounds image
// sides down to (2^(len(vae.block_out_channels)-1) = 8 for SDXL).
const VAEScaleFactor = 8

// PreprocessSize is the size VaeImageProcessor.preprocess gives an image of
// w x h: each side rounded down to a multiple of VAEScaleFactor.
func PreprocessSize(w, h int) (int, int) {
	return w - w%VAEScaleFactor, h - h%VAEScaleFactor
}

// Preprocess is VaeImageProcessor.preprocess's resize step for an img2img
// input: an image whose sides are multiples of 8 is returned as it is (Pillow
// returns a copy without resampling); otherwise it is resized with Pillow's
// Lanczos filter to the sides rounded down to multiples of 8, which changes
// the aspect ratio slightly, as in diffusers. Call Normalized on the result
// for the [-1,1] tensor.
func Preprocess(m *RGB) (*RGB, error) {
	w, h := PreprocessSize(m.W, m.H)
	if w == 0 || h == 0 {
		return nil, fmt.Errorf("image %dx%d is too small: img2img needs at least 8x8 pixels", m.W, m.H)
	}
	if w == m.W && h == m.H {
		return m, nil
	}
	return ResizeLanczos(m, w, h)
}

// Pillow's fixed-point precision for 8-bit resampling (Resample.c).
const precisionBits = 32 - 8 - 2

func sinc(x float64) float64 {
	if x == 0 {
		return 1
	}
	x *= math.Pi
	return math.Sin(x) / x
}

func lanczos(x float64) float64 {
	if -3 <= x && x < 3 {
		return sinc(x) * sinc(x/3)
	}
	return 0
}

// resampleCoeffs is Pillow's precompute_coeffs + normalize_coeffs_8bpc for
// the Lanczos filter over the whole input (box 0..inSize): for each output
// index, the first input index, the number of taps and the taps in 2^22
// fixed point.
func resampleCoeffs(inSize, outSize int) (ksize int, bounds []int, kk []int32) {
	const support0 = 3.0 // Lanczos support
	scale := float64(inSize) / float64(outSize)
	filterscale := max(scale, 1)
	support := support0 * filterscale
	ksize = int(math.Ceil(support))*2 + 1
	bounds = make([]int, 2*outSize)
	kk = make([]int32, outSize*ksize)
	w := make([]float64, ksize)
	for xx := 0; xx < outSize; xx++ {
		center := float64(float64(xx)+0.5) * scale
		ss := 1 / filterscale
		xmin := int(center - support + 0.5) // C's (int) truncates toward zero
		xmin = max(xmin, 0)
		xmax := min(int(center+support+0.5), inSize) - xmin
		ww := 0.0
		for x := 0; x < xmax; x++ {
			w[x] = lanczos((float64(x+xmin) - center + 0.5) * ss)
			ww += w[x]
		}
		k := kk[xx*ksize : (xx+1)*ksize]
		for x := 0; x < xmax; x++ {
			v := w[x]
			if ww != 0 {
				v /= ww
			}
			// The explicit float64 conversion keeps the product rounded on
			// its own, as in C, even where Go could fuse a multiply-add.
			p := float64(v * (1 << precisionBits))
			if v < 0 {
				k[x] = int32(-0.5 + p)
			} else {
				k[x] = int32(0.5 + p)
			}
		}
		bounds[2*xx], bounds[2*xx+1] = xmin, xmax
	}
	return ksize, bounds, kk
}

// clip8 is Pillow's clip8: the fixed-point sum shifted down and saturated.
func clip8(v int32) uint8 {
	v >>= precisionBits
	if v <= 0 {
		return 0
	}
	if v >= 255 {
		return 255
	}
	return uint8(v)
}

// ResizeLanczos resizes an 8-bit RGB image to w x h exactly as Pillow's
// Image.resize(..., Image.LANCZOS) does for an RGB image: a horizontal pass
// then a vertical one, each with 22-bit fixed-point taps, rounding and
// saturating to 8 bits in between. A pass whose size does not change is
// skipped, as in Pillow.
func ResizeLanczos(m *RGB, w, h int) (*RGB, error) {
	if w <= 0 || h <= 0 || m.W <= 0 || m.H <= 0 {
		return nil, fmt.Errorf("cannot resize a %dx%d image to %dx%d", m.W, m.H, w, h)
	}
	if len(m.Pix) != 3*m.W*m.H {
		return nil, fmt.Errorf("RGB image %dx%d has %d bytes, want %d", m.W, m.H, len(m.Pix), 3*m.W*m.H)
	}
	src := m
	if w != m.W {
		ksize, bounds, kk := resampleCoeffs(m.W, w)
		out := &RGB{W: w, H: m.H, Pix: make([]uint8, 3*w*m.H)}
		for y := 0; y < m.H; y++ {
			in := m.Pix[3*y*m.W : 3*(y+1)*m.W]
			o := out.Pix[3*y*w : 3*(y+1)*w]
			for xx := 0; xx < w; xx++ {
				xmin, xmax := bounds[2*xx], bounds[2*xx+1]
				k := kk[xx*ksize:]
				s0, s1, s2 := int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1))
				for x := 0; x < xmax; x++ {
					p := in[3*(x+xmin):]
					s0 += int32(p[0]) * k[x]
					s1 += int32(p[1]) * k[x]
					s2 += int32(p[2]) * k[x]
				}
				o[3*xx], o[3*xx+1], o[3*xx+2] = clip8(s0), clip8(s1), clip8(s2)
			}
		}
		src = out
	}
	if h == src.H {
		if src == m {
			return &RGB{W: m.W, H: m.H, Pix: append([]uint8(nil), m.Pix...)}, nil
		}
		return src, nil
	}
	ksize, bounds, kk := resampleCoeffs(src.H, h)
	out := &RGB{W: src.W, H: h, Pix: make([]uint8, 3*src.W*h)}
	rowLen := 3 * src.W
	for yy := 0; yy < h; yy++ {
		ymin, ymax := bounds[2*yy], bounds[2*yy+1]
		k := kk[yy*ksize:]
		o := out.Pix[yy*rowLen : (yy+1)*rowLen]
		for i := range o {
			s := int32(1 << (precisionBits - 1))
			for y := 0; y < ymax; y++ {
				s += int32(src.Pix[(y+ymin)*rowLen+i]) * k[y]
			}
			o[i] = clip8(s)
		}
	}
	return out, nil
}
