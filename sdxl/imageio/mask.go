package imageio

import (
	"errors"
	"fmt"
)

// Inpainting inputs as StableDiffusionXLInpaintPipeline prepares them from
// image=load_image(path) and mask_image=load_image(mask_path):
//
//   - the image: image_processor.preprocess(image, height, width), a
//     Lanczos resize to exactly width x height when its size differs, then
//     [-1, 1] (PreprocessTo, then Normalized);
//   - the mask: mask_processor.preprocess(mask, height, width) with
//     do_normalize=False, do_binarize=True, do_convert_grayscale=True: the
//     same resize (done on the RGB picture, before the grey conversion, as
//     Pillow does it in the picture's mode), Pillow's convert("L"), /255,
//     then < 0.5 -> 0 and >= 0.5 -> 1 (ProcessMask). A soft mask is hard
//     from here on;
//   - the latent mask: F.interpolate(mask, size=(h/8, w/8)), nearest,
//     latent (i, j) taking pixel (8i, 8j) (Mask.Latent);
//   - the masked image: image * (mask < 0.5) (MaskImage).

// ErrEmptyMask is returned (wrapped) for a mask with nothing to repaint.
var ErrEmptyMask = errors.New("nothing to repaint")

// Mask is a processed inpainting mask: one value per pixel, 1 = repaint,
// 0 = keep (binary when made by ProcessMask).
type Mask struct {
	W, H int
	Pix  []float32
}

// Gray is Pillow's convert("L") of an RGB picture: the ITU-R 601-2 luma in
// 16-bit fixed point, (R*19595 + G*38470 + B*7471 + 0x8000) >> 16, which
// keeps grey levels exact.
func (m *RGB) Gray() []uint8 {
	out := make([]uint8, m.W*m.H)
	for i := range out {
		p := m.Pix[3*i : 3*i+3]
		out[i] = uint8((uint32(p[0])*19595 + uint32(p[1])*38470 + uint32(p[2])*7471 + 0x8000) >> 16)
	}
	return out
}

// PreprocessTo is image_processor.preprocess's resize for an inpainting
// input: the picture resized with Pillow's Lanczos filter to exactly
// w x h (any aspect change included, as diffusers), or returned as it is
// when it already has that size.
func PreprocessTo(m *RGB, w, h int) (*RGB, error) {
	if w <= 0 || h <= 0 || w%VAEScaleFactor != 0 || h%VAEScaleFactor != 0 {
		return nil, fmt.Errorf("size %dx%d: width and height must be positive multiples of %d", w, h, VAEScaleFactor)
	}
	if m.W == w && m.H == h {
		return m, nil
	}
	return ResizeLanczos(m, w, h)
}

// ProcessMask is mask_processor.preprocess for a mask picture (white =
// repaint) and an image of w x h pixels: resized like the image, converted
// to grey, binarised at 0.5 (grey level 128). A mask without any pixel to
// repaint is an error wrapping ErrEmptyMask.
func ProcessMask(m *RGB, w, h int) (*Mask, error) {
	r, err := PreprocessTo(m, w, h)
	if err != nil {
		return nil, err
	}
	g := r.Gray()
	out := &Mask{W: w, H: h, Pix: make([]float32, len(g))}
	some := false
	for i, v := range g {
		// float32(v)/255 >= 0.5 exactly when v >= 128.
		if float32(v)/255 >= 0.5 {
			out.Pix[i] = 1
			some = true
		}
	}
	if !some {
		return nil, fmt.Errorf("the mask has no pixel at least 50%% white (white = repaint, black = keep): %w", ErrEmptyMask)
	}
	return out, nil
}

// LoadMask reads a mask file (PNG or JPEG, white = repaint) and processes
// it for an image of w x h pixels (ProcessMask); errors name the file.
func LoadMask(path string, w, h int) (*Mask, error) {
	m, err := Load(path)
	if err != nil {
		return nil, fmt.Errorf("mask %v", err)
	}
	out, err := ProcessMask(m, w, h)
	if err != nil {
		return nil, fmt.Errorf("mask %s: %w", path, err)
	}
	return out, nil
}

// Latent is the mask at latent resolution, F.interpolate(mask,
// size=(H/f, W/f)) in torch's "nearest" mode: for the exact factor f,
// latent (i, j) takes pixel (f*i, f*j). A mask without any latent to
// repaint is an error wrapping ErrEmptyMask (inpainting would change
// nothing).
func (m *Mask) Latent(f int) (*Mask, error) {
	if f <= 0 || m.W%f != 0 || m.H%f != 0 {
		return nil, fmt.Errorf("mask %dx%d: not a multiple of the latent factor %d", m.W, m.H, f)
	}
	w, h := m.W/f, m.H/f
	out := &Mask{W: w, H: h, Pix: make([]float32, w*h)}
	some := false
	for i := range h {
		for j := range w {
			v := m.Pix[f*i*m.W+f*j]
			out.Pix[i*w+j] = v
			some = some || v != 0
		}
	}
	if !some {
		for _, v := range m.Pix {
			if v != 0 {
				return nil, fmt.Errorf("the mask repaints pixels but none on the latent grid (every %dth row and column, from 0): %w", f, ErrEmptyMask)
			}
		}
		return nil, fmt.Errorf("the mask is all 0 (black): %w", ErrEmptyMask)
	}
	return out, nil
}

// MaskImage is image * (mask < 0.5) for an NCHW image [n, c, H, W] of the
// mask's size: the pixels to repaint become 0, the rest is kept.
func MaskImage(image []float32, shape []int, m *Mask) ([]float32, error) {
	if len(shape) != 4 || shape[2] != m.H || shape[3] != m.W {
		return nil, fmt.Errorf("image shape %v: the mask is %dx%d (want [N, C, %d, %d])", shape, m.W, m.H, m.H, m.W)
	}
	plane := m.W * m.H
	if len(image) != shape[0]*shape[1]*plane {
		return nil, fmt.Errorf("image has %d values, its shape %v needs %d", len(image), shape, shape[0]*shape[1]*plane)
	}
	out := make([]float32, len(image))
	for p := range shape[0] * shape[1] {
		for i, v := range m.Pix {
			if v < 0.5 {
				out[p*plane+i] = image[p*plane+i]
			}
		}
	}
	return out, nil
}
