// Package imageio turns decoded images into 8-bit pictures and back, and
// writes and reads PNG files with generation metadata.
//
// Output follows diffusers' VaeImageProcessor.postprocess with
// output_type="pil": (x/2+0.5).clamp(0,1) in float32, then
// (x*255).round().astype(uint8) in numpy (float32 product, round half to
// even). Input follows what diffusers' img2img pipelines see for
// image=load_image(path): EXIF orientation applied, converted to RGB (alpha
// dropped, grey replicated), resized with Pillow's Lanczos filter to the
// next lower multiple of 8 in each dimension only when a side is not already
// a multiple of 8 (VaeImageProcessor.preprocess with vae_scale_factor 8),
// then x/255 in float32 and 2x-1.
//
// PNG files are written atomically (internal/atomicfile) with text chunks
// inserted after IHDR: an AUTOMATIC1111-style "parameters" chunk and an
// "sdxl-run" chunk holding the run's JSON.
package imageio

import (
	"fmt"
	"image"
	"image/color"
	"math"
)

// Denormalize is diffusers' (x/2 + 0.5).clamp(0, 1) in float32.
func Denormalize(x float32) float32 {
	y := float32(float32(x/2) + 0.5)
	if y < 0 {
		return 0
	}
	if y > 1 {
		return 1
	}
	return y // NaN passes through, as in torch.clamp
}

// Quantize is numpy's (x*255).round().astype(uint8) for one float32 value in
// [0,1]: the product is rounded to float32, then to the nearest integer with
// ties to even. Values outside [0,1] (which diffusers never produces here)
// are saturated and NaN becomes 0, where numpy's cast would be undefined.
func Quantize(x float32) uint8 {
	v := math.RoundToEven(float64(float32(x * 255)))
	if !(v > 0) {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// checkBatch validates a 4-D shape against the data length and the channel
// axis (1 for NCHW, 3 for NHWC).
func checkBatch(n int, shape []int, chanAxis int) error {
	if len(shape) != 4 {
		return fmt.Errorf("imageio: want a 4-D image batch, got shape %v", shape)
	}
	total := 1
	for _, d := range shape {
		if d <= 0 {
			return fmt.Errorf("imageio: image batch shape %v has an empty or negative dimension", shape)
		}
		total *= d
	}
	if shape[chanAxis] != 3 {
		return fmt.Errorf("imageio: image batch shape %v must have 3 (RGB) channels on axis %d", shape, chanAxis)
	}
	if total != n {
		return fmt.Errorf("imageio: shape %v needs %d values, got %d", shape, total, n)
	}
	return nil
}

// FromNCHW converts a batch of decoded images, NCHW RGB in [-1,1] (a VAE
// decoder's output, after the watermark if any), into opaque 8-bit images,
// exactly as diffusers' postprocess does for output_type="pil".
func FromNCHW(data []float32, shape []int) ([]*image.NRGBA, error) {
	if err := checkBatch(len(data), shape, 1); err != nil {
		return nil, err
	}
	n, h, w := shape[0], shape[2], shape[3]
	plane := h * w
	out := make([]*image.NRGBA, n)
	for b := range out {
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		src := data[b*3*plane : (b+1)*3*plane]
		for y := 0; y < h; y++ {
			row := img.Pix[y*img.Stride : y*img.Stride+4*w]
			for x := 0; x < w; x++ {
				i := y*w + x
				row[4*x] = Quantize(Denormalize(src[i]))
				row[4*x+1] = Quantize(Denormalize(src[plane+i]))
				row[4*x+2] = Quantize(Denormalize(src[2*plane+i]))
				row[4*x+3] = 255
			}
		}
		out[b] = img
	}
	return out, nil
}

// FromNHWC01 converts a batch of NHWC RGB images in [0,1] (diffusers'
// output_type="np") into opaque 8-bit images: round(x*255), ties to even.
func FromNHWC01(data []float32, shape []int) ([]*image.NRGBA, error) {
	if err := checkBatch(len(data), shape, 3); err != nil {
		return nil, err
	}
	n, h, w := shape[0], shape[1], shape[2]
	out := make([]*image.NRGBA, n)
	for b := range out {
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		src := data[b*h*w*3 : (b+1)*h*w*3]
		for y := 0; y < h; y++ {
			row := img.Pix[y*img.Stride : y*img.Stride+4*w]
			s := src[y*w*3 : (y+1)*w*3]
			for x := 0; x < w; x++ {
				row[4*x] = Quantize(s[3*x])
				row[4*x+1] = Quantize(s[3*x+1])
				row[4*x+2] = Quantize(s[3*x+2])
				row[4*x+3] = 255
			}
		}
		out[b] = img
	}
	return out, nil
}

// RGB is an 8-bit RGB picture with interleaved samples, 3 bytes per pixel,
// rows packed without padding.
type RGB struct {
	W, H int
	Pix  []uint8
}

// ToRGB converts any image to 8-bit RGB the way Pillow's convert("RGB")
// does for the modes PNG and JPEG decode to: alpha is dropped (not
// composited), grey is replicated, palettes are looked up (transparent
// entries keep their colour) and 16-bit colour samples keep their high byte.
// One deliberate difference: Pillow opens a 16-bit greyscale PNG as 32-bit
// integers and saturates them to 255 when converting, which whitens the
// picture; here its high byte is kept like for 16-bit colour.
func ToRGB(m image.Image) *RGB {
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	out := &RGB{W: w, H: h, Pix: make([]uint8, 3*w*h)}
	put := func(x, y int, r, g, bl uint8) {
		i := 3 * (y*w + x)
		out.Pix[i], out.Pix[i+1], out.Pix[i+2] = r, g, bl
	}
	switch src := m.(type) {
	case *image.NRGBA:
		for y := 0; y < h; y++ {
			row := src.Pix[y*src.Stride:]
			for x := 0; x < w; x++ {
				put(x, y, row[4*x], row[4*x+1], row[4*x+2])
			}
		}
	case *image.RGBA:
		// Go decoders produce RGBA only for opaque images, where it equals
		// straight RGB; for translucent pixels un-premultiply.
		for y := 0; y < h; y++ {
			row := src.Pix[y*src.Stride:]
			for x := 0; x < w; x++ {
				r, g, bl, a := row[4*x], row[4*x+1], row[4*x+2], row[4*x+3]
				if a != 255 && a != 0 {
					r, g, bl = unpremul(r, a), unpremul(g, a), unpremul(bl, a)
				}
				put(x, y, r, g, bl)
			}
		}
	case *image.Gray:
		for y := 0; y < h; y++ {
			row := src.Pix[y*src.Stride:]
			for x := 0; x < w; x++ {
				put(x, y, row[x], row[x], row[x])
			}
		}
	case *image.Gray16:
		for y := 0; y < h; y++ {
			row := src.Pix[y*src.Stride:]
			for x := 0; x < w; x++ {
				v := row[2*x]
				put(x, y, v, v, v)
			}
		}
	case *image.NRGBA64:
		for y := 0; y < h; y++ {
			row := src.Pix[y*src.Stride:]
			for x := 0; x < w; x++ {
				put(x, y, row[8*x], row[8*x+2], row[8*x+4])
			}
		}
	default:
		// Paletted (entries are color.NRGBA or color.RGBA), YCbCr, CMYK,
		// RGBA64 and the rest: go through the non-premultiplied model.
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				c := nrgba64(m.At(b.Min.X+x, b.Min.Y+y))
				put(x, y, uint8(c.R>>8), uint8(c.G>>8), uint8(c.B>>8))
			}
		}
	}
	return out
}

func unpremul(c, a uint8) uint8 {
	return uint8((uint32(c)*255 + uint32(a)/2) / uint32(a))
}

// Normalized returns the image as a 1x3xHxW float32 tensor in [-1,1]:
// v/255 in float32 (numpy's astype(float32)/255.0), then 2x-1 in float32
// (VaeImageProcessor.normalize), bit for bit what diffusers computes.
func (m *RGB) Normalized() (data []float32, shape []int) {
	plane := m.W * m.H
	data = make([]float32, 3*plane)
	for i := 0; i < plane; i++ {
		for c := 0; c < 3; c++ {
			data[c*plane+i] = Normalize(m.Pix[3*i+c])
		}
	}
	return data, []int{1, 3, m.H, m.W}
}

// Normalize maps one 8-bit sample to [-1,1] as diffusers does: float32(v)/255
// then 2x-1, each rounded to float32.
func Normalize(v uint8) float32 {
	x := float32(float32(v) / 255)
	return float32(float32(2*x) - 1)
}

// nrgba64 returns a colour's straight (non-premultiplied) 16-bit samples,
// keeping the colour of fully transparent palette entries as Pillow does.
func nrgba64(c color.Color) color.NRGBA64 {
	switch c := c.(type) {
	case color.NRGBA:
		return color.NRGBA64{R: uint16(c.R) * 0x101, G: uint16(c.G) * 0x101, B: uint16(c.B) * 0x101, A: uint16(c.A) * 0x101}
	case color.NRGBA64:
		return c
	}
	return color.NRGBA64Model.Convert(c).(color.NRGBA64)
}
