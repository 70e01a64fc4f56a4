// Package watermark reproduces the invisible watermark that diffusers adds to
// SDXL images (StableDiffusionXLWatermarker.apply_watermark, which runs
// invisible-watermark 0.2.0's "dwtDct" method with SDXL's 48-bit message) and
// the library's decoder.
//
// The method, as the library implements it (imwatermark/maxDct.py with
// OpenCV 4.6 and PyWavelets 1.1.1):
//
//   - The image is scaled to 0..255 (not clamped), turned into BGR and
//     converted to YUV with OpenCV's float formulas (U = (B-Y)*0.492 + 0.5:
//     OpenCV adds half of the float range's "1.0", not 128).
//   - Only U is marked. The U plane, cropped to multiples of 4, goes through a
//     one-level Haar transform; its approximation band LL = (a+b+c+d)/2 per 2x2
//     block is cut into 4x4 blocks in row-major order. In block n the element
//     of largest magnitude among flat indices 1..15 (first one on ties) is
//     quantised to the middle of the lower (bit 0) or upper (bit 1) half of
//     its 36-wide cell: v' = sign(v)*(floor(|v|/36) + 0.25 + 0.5*bit)*36, bit
//     = message[n mod 48]. Despite the name there is no DCT.
//   - The library's inverse transform swaps the horizontal and vertical
//     detail bands, which transposes every 2x2 block of U inside the crop.
//   - Back to BGR with OpenCV's float inverse (not an exact inverse of the
//     forward coefficients, so every pixel moves slightly), to RGB, and to
//     [-1,1] with clamping.
//
// The decoder repeats the transform, takes the same element per block,
// scores it 1 when |v| mod 36 > 18, averages the scores of each bit index and
// reports bit = average*255 > 127 (so an exact tie decodes as 1). It is weak:
// rounding to 8 bits loses several bits even on freshly marked images.
//
// Arithmetic is float64 where the library uses float64 and where doing so
// reproduces the library's float32 results to well under the 1e-5 the tests
// ask for; the integer YUV path that OpenCV uses for 8-bit images is
// reproduced exactly, and the Haar step on it follows PyWavelets' float64
// operation order so that ties resolve as they do in the library.
package watermark

import (
	"fmt"
	"math"
)

// Message is SDXL's watermark, 48 bits, most significant bit first
// (diffusers' WATERMARK_MESSAGE, from Stability AI's generative-models).
const Message uint64 = 0xB3EC907BB19E

// MessageLen is the number of bits in Message.
const MessageLen = 48

// MinWidth is the narrowest image diffusers watermarks; narrower images are
// returned unchanged.
const MinWidth = 256

// minPixels is invisible-watermark's own limit (rows*cols >= 256*256). diffusers
// checks only the width, so an image at least 256 wide but with fewer pixels
// makes diffusers raise "image too small"; Apply reports an error instead.
const minPixels = 256 * 256

// scale is the quantisation step of the U channel ("scales=[0,36,36]").
const scale = 36.0

// block is the side of the LL blocks that each carry one bit.
const block = 4

// MessageBits returns Message as 48 bits, most significant first.
func MessageBits() [MessageLen]uint8 {
	var b [MessageLen]uint8
	for i := range b {
		b[i] = uint8(Message >> (MessageLen - 1 - i) & 1)
	}
	return b
}

// MatchingBits counts how many of bits agree with MessageBits.
func MatchingBits(bits [MessageLen]uint8) int {
	want := MessageBits()
	n := 0
	for i := range bits {
		if bits[i] == want[i] {
			n++
		}
	}
	return n
}

// BitsString formats bits as a string of '0' and '1'.
func BitsString(bits [MessageLen]uint8) string {
	s := make([]byte, MessageLen)
	for i, b := range bits {
		s[i] = '0' + b&1
	}
	return string(s)
}

// BitsValue packs bits (most significant first) into an integer, so that a
// perfect decode equals Message.
func BitsValue(bits [MessageLen]uint8) uint64 {
	var v uint64
	for _, b := range bits {
		v = v<<1 | uint64(b&1)
	}
	return v
}

// checkShape validates an NCHW RGB batch shape against the data length.
func checkShape(n int, shape []int) (batch, h, w int, err error) {
	if len(shape) != 4 {
		return 0, 0, 0, fmt.Errorf("watermark: image batch must be NCHW (4 dimensions), got shape %v", shape)
	}
	if shape[1] != 3 {
		return 0, 0, 0, fmt.Errorf("watermark: image batch must have 3 channels (RGB), got shape %v", shape)
	}
	for _, d := range shape {
		if d < 0 {
			return 0, 0, 0, fmt.Errorf("watermark: negative dimension in shape %v", shape)
		}
	}
	batch, h, w = shape[0], shape[2], shape[3]
	if batch*3*h*w != n {
		return 0, 0, 0, fmt.Errorf("watermark: shape %v needs %d values, got %d", shape, batch*3*h*w, n)
	}
	return batch, h, w, nil
}

// Apply watermarks a batch of NCHW RGB images in [-1,1] (a VAE decoder's
// output) in place, exactly as diffusers' StableDiffusionXLWatermarker does:
// images narrower than MinWidth are left unchanged; every other pixel comes
// back clamped to [-1,1]. An image at least MinWidth wide but with fewer than
// 256*256 pixels is an error (diffusers raises there).
func Apply(images []float32, shape []int) error {
	batch, h, w, err := checkShape(len(images), shape)
	if err != nil {
		return err
	}
	if w < MinWidth {
		return nil
	}
	if h*w < minPixels {
		return fmt.Errorf("watermark: image %dx%d (WxH) has fewer than 256*256 pixels, which invisible-watermark refuses (diffusers raises here); disable the watermark for this size", w, h)
	}
	bits := MessageBits()
	plane := h * w
	p := newPlanes(h, w)
	for i := 0; i < batch; i++ {
		img := images[i*3*plane : (i+1)*3*plane]
		p.fromFloat(img)
		p.embed(&bits)
		p.toFloat(img)
	}
	return nil
}

// planes holds one image in OpenCV's float YUV, in float64.
type planes struct {
	h, w    int
	y, u, v []float64
	ll      []float64 // LL band of the cropped U plane
}

func newPlanes(h, w int) *planes {
	n := h * w
	return &planes{h: h, w: w, y: make([]float64, n), u: make([]float64, n), v: make([]float64, n),
		ll: make([]float64, (h/4*2)*(w/4*2))}
}

// OpenCV's float BGR<->YUV coefficients (color_yuv.simd.hpp). They are float
// constants in OpenCV; the float32 values are used so the float64 arithmetic
// here follows OpenCV's to within float32 rounding.
var (
	r2y = float64(float32(0.299))
	g2y = float64(float32(0.587))
	b2y = float64(float32(0.114))
	b2u = float64(float32(0.492))
	r2v = float64(float32(0.877))
	u2b = float64(float32(2.032))
	u2g = float64(float32(-0.395))
	v2g = float64(float32(-0.581))
	v2r = float64(float32(1.140))
)

// to255 is diffusers' 255*(x/2+0.5), evaluated in float32 like torch.
func to255(x float32) float64 {
	t := float32(x / 2)
	t = float32(t + 0.5)
	return float64(float32(255 * t))
}

// from255 is diffusers' clamp(2*(x/255-0.5), -1, 1) on the float32 image.
func from255(x float64) float32 {
	f := float32(x)
	f = float32(f / 255)
	f = float32(f - 0.5)
	f = float32(2 * f)
	if f < -1 {
		return -1
	}
	if f > 1 {
		return 1
	}
	return f // NaN passes through, as torch.clamp does
}

// fromFloat fills the YUV planes from one CHW RGB image in [-1,1].
func (p *planes) fromFloat(img []float32) {
	n := p.h * p.w
	rp, gp, bp := img[:n], img[n:2*n], img[2*n:3*n]
	for i := 0; i < n; i++ {
		r, g, b := to255(rp[i]), to255(gp[i]), to255(bp[i])
		y := float64(r*r2y) + float64(g*g2y) + float64(b*b2y)
		p.y[i] = y
		p.u[i] = float64((b-y)*b2u) + 0.5
		p.v[i] = float64((r-y)*r2v) + 0.5
	}
}

// toFloat converts the YUV planes back into a CHW RGB image in [-1,1].
func (p *planes) toFloat(img []float32) {
	n := p.h * p.w
	rp, gp, bp := img[:n], img[n:2*n], img[2*n:3*n]
	for i := 0; i < n; i++ {
		y, u, v := p.y[i], p.u[i]-0.5, p.v[i]-0.5
		bp[i] = from255(y + float64(u*u2b))
		gp[i] = from255(y + float64(u*u2g) + float64(v*v2g))
		rp[i] = from255(y + float64(v*v2r))
	}
}

// haarLL computes the one-level Haar approximation band of the top-left
// rows x cols (even) region of a plane with row stride stride, into ll
// (rows/2 x cols/2), with PyWavelets' float64 operation order: first along
// the rows' axis (pairs of rows), then along columns, each output
// fl(h*x[odd]) + fl(h*x[even]) with h = float64(1/sqrt(2)). Matching that
// order matters for integer inputs, where equal magnitudes are common and
// the last bit decides which element np.argmax picks.
func haarLL(src []float64, stride, rows, cols int, ll []float64, tmp []float64) {
	const h = 0.7071067811865476 // PyWavelets' haar dec_lo, as float64
	hr, hc := rows/2, cols/2
	// tmp holds the row-axis approximation: hr x cols.
	for r := 0; r < hr; r++ {
		even := src[(2*r)*stride : (2*r)*stride+cols]
		odd := src[(2*r+1)*stride : (2*r+1)*stride+cols]
		t := tmp[r*cols : (r+1)*cols]
		for c := range t {
			t[c] = float64(h*odd[c]) + float64(h*even[c])
		}
	}
	for r := 0; r < hr; r++ {
		t := tmp[r*cols : (r+1)*cols]
		o := ll[r*hc : (r+1)*hc]
		for c := range o {
			o[c] = float64(h*t[2*c+1]) + float64(h*t[2*c])
		}
	}
}

// argmaxPos returns the flat index (1..15) within the 4x4 block at (bi, bj)
// of ll (row length llw) holding the first largest magnitude among indices
// 1..15, like np.argmax(abs(block.flatten()[1:])) + 1.
func argmaxPos(ll []float64, llw, bi, bj int) int {
	best, bestV := 1, math.NaN()
	for k := 1; k < block*block; k++ {
		v := math.Abs(ll[(bi*block+k/block)*llw+bj*block+k%block])
		if k == 1 {
			bestV = v
			if v != v { // np.argmax stops at the first NaN
				return 1
			}
			continue
		}
		if v != v {
			return k
		}
		if v > bestV {
			best, bestV = k, v
		}
	}
	return best
}

// floorDiv is numpy's floor_divide for a non-negative float64 a and positive
// b: (a - fmod(a, b)) / b, floored. Unlike math.Floor(a/b) it never rounds up
// when a is just below a multiple of b.
func floorDiv(a, b float64) float64 {
	mod := math.Mod(a, b)
	div := (a - mod) / b
	if div == 0 {
		return 0
	}
	fd := math.Floor(div)
	if div-fd > 0.5 {
		fd++
	}
	return fd
}

// embed marks the U plane with bits.
func (p *planes) embed(bits *[MessageLen]uint8) {
	rows, cols := p.h/4*4, p.w/4*4
	llh, llw := rows/2, cols/2
	tmp := make([]float64, llh*cols)
	haarLL(p.u, p.w, rows, cols, p.ll, tmp)
	// delta[r*llw+c] is the change made to LL at (r, c).
	delta := tmp[:llh*llw]
	clear(delta)
	n := 0
	for bi := 0; bi < llh/block; bi++ {
		for bj := 0; bj < llw/block; bj++ {
			bit := float64(bits[n%MessageLen])
			k := argmaxPos(p.ll, llw, bi, bj)
			idx := (bi*block+k/block)*llw + bj*block + k%block
			v := p.ll[idx]
			var nv float64
			if v >= 0 {
				nv = (floorDiv(v, scale) + 0.25 + 0.5*bit) * scale
			} else {
				nv = -(floorDiv(-v, scale) + 0.25 + 0.5*bit) * scale
			}
			if v == v { // a NaN stays NaN and changes nothing else
				delta[idx] = nv - v
			}
			n++
		}
	}
	// Inverse Haar with the library's swapped detail bands: each 2x2 block of
	// U comes back transposed, plus half the change of its LL coefficient.
	for r := 0; r < llh; r++ {
		for c := 0; c < llw; c++ {
			d := delta[r*llw+c] / 2
			i0, i1 := (2*r)*p.w+2*c, (2*r+1)*p.w+2*c
			a, b, cc, dd := p.u[i0], p.u[i0+1], p.u[i1], p.u[i1+1]
			p.u[i0], p.u[i0+1], p.u[i1], p.u[i1+1] = a+d, cc+d, b+d, dd+d
		}
	}
}

// decodeU runs the library's decoder on a U plane of size h x w.
func decodeU(u []float64, h, w int) [MessageLen]uint8 {
	rows, cols := h/4*4, w/4*4
	llh, llw := rows/2, cols/2
	ll := make([]float64, llh*llw)
	haarLL(u, w, rows, cols, ll, make([]float64, llh*cols))
	return decodeLL(ll, llh, llw)
}

// decodeLL scores every 4x4 block of an LL band (llh x llw) and votes.
func decodeLL(ll []float64, llh, llw int) [MessageLen]uint8 {
	var ones, total [MessageLen]int
	n := 0
	for bi := 0; bi < llh/block; bi++ {
		for bj := 0; bj < llw/block; bj++ {
			k := argmaxPos(ll, llw, bi, bj)
			v := math.Abs(ll[(bi*block+k/block)*llw+bj*block+k%block])
			if math.Mod(v, scale) > 0.5*scale {
				ones[n%MessageLen]++
			}
			total[n%MessageLen]++
			n++
		}
	}
	var bits [MessageLen]uint8
	for i := range bits {
		// np.array(scores).mean() * 255 > 127; an empty list is NaN there.
		if total[i] > 0 && float64(ones[i])/float64(total[i])*255 > 127 {
			bits[i] = 1
		}
	}
	return bits
}

// DecodeFloat runs invisible-watermark's dwtDct decoder on one CHW RGB image
// in [-1,1] (h x w pixels), scaled to 0..255 as diffusers does before
// encoding, through OpenCV's float YUV path.
func DecodeFloat(img []float32, h, w int) ([MessageLen]uint8, error) {
	if err := checkDecodeSize(len(img), h, w); err != nil {
		return [MessageLen]uint8{}, err
	}
	p := newPlanes(h, w)
	p.fromFloat(img)
	return decodeU(p.u, h, w), nil
}

// DecodeRGB8 runs invisible-watermark's dwtDct decoder on an 8-bit image given
// as interleaved RGB (3 bytes per pixel, rows of stride bytes, h x w pixels):
// the image diffusers would save. The library receives it as BGR uint8, so
// OpenCV converts it with its fixed-point integer YUV formulas, reproduced
// here bit for bit.
func DecodeRGB8(pix []uint8, stride, h, w int) ([MessageLen]uint8, error) {
	if h < 0 || w < 0 || stride < 3*w || (h > 0 && len(pix) < (h-1)*stride+3*w) {
		return [MessageLen]uint8{}, fmt.Errorf("watermark: RGB buffer of %d bytes with stride %d is too small for %dx%d (WxH) pixels", len(pix), stride, w, h)
	}
	if err := checkDecodeSize(3*h*w, h, w); err != nil {
		return [MessageLen]uint8{}, err
	}
	u := make([]float64, h*w)
	for y := 0; y < h; y++ {
		row := pix[y*stride : y*stride+3*w]
		for x := 0; x < w; x++ {
			u[y*w+x] = float64(opencvU8(row[3*x], row[3*x+1], row[3*x+2]))
		}
	}
	return decodeU(u, h, w), nil
}

func checkDecodeSize(n, h, w int) error {
	if h < 0 || w < 0 || n != 3*h*w {
		return fmt.Errorf("watermark: %d values do not hold a 3x%dx%d image", n, h, w)
	}
	if h*w < minPixels {
		return fmt.Errorf("watermark: image %dx%d (WxH) has fewer than 256*256 pixels, which invisible-watermark cannot decode", w, h)
	}
	return nil
}

// OpenCV's fixed-point BGR->YUV for 8-bit images (color.hpp, yuv_shift 14):
// Y = descale(B*1868 + G*9617 + R*4899), U = descale((B-Y)*8061 + 128<<14),
// where descale(x) = (x + (1<<13)) >> 14 (arithmetic shift, so it rounds half
// up), saturated to 0..255. Its SIMD and scalar paths agree; IPP is disabled
// for this conversion (IPP_DISABLE_RGB_YUV).
const (
	yuvShift = 14
	fixB2Y   = 1868
	fixG2Y   = 9617
	fixR2Y   = 4899
	fixB2U   = 8061
)

// opencvU8 returns OpenCV's 8-bit U of one pixel.
func opencvU8(r, g, b uint8) uint8 {
	const round = 1 << (yuvShift - 1)
	y := (int(b)*fixB2Y + int(g)*fixG2Y + int(r)*fixR2Y + round) >> yuvShift
	u := ((int(b)-y)*fixB2U + 128<<yuvShift + round) >> yuvShift
	return uint8(min(max(u, 0), 255))
}
