package imageio

import (
	"fmt"

	"github.com/sdxl-go/sdxl/internal/regfile"
	"github.com/sdxl-go/sdxl/sdxl/watermark"
)

// WatermarkReport is what the invisible-watermark decoder finds in a file.
type WatermarkReport struct {
	Width, Height int
	Bits          [watermark.MessageLen]uint8
	// Matching counts the bits equal to SDXL's message (48 is a perfect
	// decode; about 24 is chance). The library's decoder is weak: freshly
	// watermarked 8-bit images typically give 37 to 48.
	Matching int
}

// String reports the decoded message, for --verify-watermark.
func (r WatermarkReport) String() string {
	return fmt.Sprintf("%dx%d: decoded %#012x (bits %s); %d of %d bits match SDXL's watermark %#012x",
		r.Width, r.Height, watermark.BitsValue(r.Bits), watermark.BitsString(r.Bits), r.Matching,
		watermark.MessageLen, watermark.Message)
}

// VerifyWatermark reads a PNG or JPEG file and runs invisible-watermark's
// dwtDct decoder on its 8-bit RGB pixels as stored (no EXIF rotation: the
// mark lives in the stored pixel grid), exactly as the library would on the
// image diffusers saved.
func VerifyWatermark(path string) (WatermarkReport, error) {
	b, err := regfile.ReadFile(path, MaxFileBytes)
	if err != nil {
		return WatermarkReport{}, err
	}
	m, _, err := decodeRaw(b, maxPixels)
	if err != nil {
		return WatermarkReport{}, fmt.Errorf("%s: %v", path, err)
	}
	bits, err := watermark.DecodeRGB8(m.Pix, 3*m.W, m.H, m.W)
	if err != nil {
		return WatermarkReport{}, fmt.Errorf("%s: %v", path, err)
	}
	return WatermarkReport{Width: m.W, Height: m.H, Bits: bits, Matching: watermark.MatchingBits(bits)}, nil
}
