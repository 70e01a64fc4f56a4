package imageio

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"

	"github.com/sdxl-go/sdxl/internal/regfile"
)

// maxPixels bounds the images Load accepts (a 16384x16384 picture) so that a
// corrupt or hostile header cannot make it allocate without limit. A front
// end should use LoadLimit with its own, smaller limit (a 783 KB PNG of
// 16384x16384 decodes to 1 GiB of pixels before anything else can look at
// it).
const maxPixels = 1 << 28

// MaxFileBytes bounds the size of an image file read by Load and LoadLimit.
const MaxFileBytes = 256 << 20

// TooLargeError reports an image whose header declares more pixels than
// allowed; it comes before any pixel is decoded.
type TooLargeError struct {
	Width, Height, MaxPixels int
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("image size %dx%d (%d pixels) is over the limit of %d pixels", e.Width, e.Height, e.Width*e.Height, e.MaxPixels)
}

// Load reads a PNG or JPEG file the way diffusers.utils.load_image does:
// decoded, EXIF orientation applied (PIL.ImageOps.exif_transpose), converted
// to RGB (Pillow's convert("RGB")). PNG pixels are exact. JPEG pixels come
// from Go's decoder and can differ from libjpeg's (Pillow's) by a few levels:
// the IDCT and the chroma upsampling differ.
func Load(path string) (*RGB, error) { return LoadLimit(path, maxPixels) }

// LoadLimit is Load for images of at most limit pixels (width x height):
// the size is read from the PNG or JPEG header (image.DecodeConfig) and a
// larger image is a *TooLargeError before any pixel is decoded, so an
// image bomb costs nothing. Only a regular file of at most MaxFileBytes is
// read.
func LoadLimit(path string, limit int) (*RGB, error) {
	b, err := regfile.ReadFile(path, MaxFileBytes)
	if err != nil {
		return nil, err
	}
	m, err := DecodeLimit(b, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Decode is Load on the bytes of a PNG or JPEG file.
func Decode(b []byte) (*RGB, error) { return DecodeLimit(b, maxPixels) }

// DecodeLimit is LoadLimit on the bytes of a PNG or JPEG file.
func DecodeLimit(b []byte, limit int) (*RGB, error) {
	m, orient, err := decodeRaw(b, min(limit, maxPixels))
	if err != nil {
		return nil, err
	}
	return Orient(m, orient), nil
}

// decodeRaw decodes a PNG or JPEG into RGB as stored, without applying its
// EXIF orientation, which it returns (1 when absent).
func decodeRaw(b []byte, limit int) (*RGB, int, error) {
	var (
		m      image.Image
		cfg    image.Config
		err    error
		orient int
	)
	switch {
	case bytes.HasPrefix(b, pngSignature):
		if cfg, err = png.DecodeConfig(bytes.NewReader(b)); err == nil {
			err = checkSize(cfg, limit)
		}
		if err == nil {
			m, err = png.Decode(bytes.NewReader(b))
		}
		orient = pngOrientation(b)
	case bytes.HasPrefix(b, []byte{0xFF, 0xD8}):
		if cfg, err = jpeg.DecodeConfig(bytes.NewReader(b)); err == nil {
			err = checkSize(cfg, limit)
		}
		if err == nil {
			m, err = jpeg.Decode(bytes.NewReader(b))
		}
		orient = jpegOrientation(b)
	default:
		return nil, 0, fmt.Errorf("unsupported image format (only PNG and JPEG are read)")
	}
	if err != nil {
		return nil, 0, err
	}
	return ToRGB(m), orient, nil
}

func checkSize(c image.Config, limit int) error {
	if c.Width <= 0 || c.Height <= 0 {
		return fmt.Errorf("image size %dx%d is outside what can be processed", c.Width, c.Height)
	}
	if int64(c.Width)*int64(c.Height) > int64(limit) {
		return &TooLargeError{Width: c.Width, Height: c.Height, MaxPixels: limit}
	}
	return nil
}

// Orient applies an EXIF orientation (1-8) the way Pillow's exif_transpose
// does; other values leave the image as it is.
func Orient(m *RGB, orientation int) *RGB {
	if orientation < 2 || orientation > 8 {
		return m
	}
	w, h := m.W, m.H
	ow, oh := w, h
	if orientation >= 5 {
		ow, oh = h, w
	}
	out := &RGB{W: ow, H: oh, Pix: make([]uint8, len(m.Pix))}
	for y := 0; y < oh; y++ {
		for x := 0; x < ow; x++ {
			var sx, sy int
			switch orientation {
			case 2: // FLIP_LEFT_RIGHT
				sx, sy = w-1-x, y
			case 3: // ROTATE_180
				sx, sy = w-1-x, h-1-y
			case 4: // FLIP_TOP_BOTTOM
				sx, sy = x, h-1-y
			case 5: // TRANSPOSE
				sx, sy = y, x
			case 6: // ROTATE_270 (90 degrees clockwise)
				sx, sy = y, h-1-x
			case 7: // TRANSVERSE
				sx, sy = w-1-y, h-1-x
			case 8: // ROTATE_90 (90 degrees counter-clockwise)
				sx, sy = w-1-y, x
			}
			copy(out.Pix[3*(y*ow+x):3*(y*ow+x)+3], m.Pix[3*(sy*w+sx):3*(sy*w+sx)+3])
		}
	}
	return out
}

// jpegOrientation finds the EXIF orientation in a JPEG's APP1 segment (1 if
// absent or unreadable).
func jpegOrientation(b []byte) int {
	i := 2
	for i+4 <= len(b) {
		if b[i] != 0xFF {
			return 1
		}
		marker := b[i+1]
		if marker == 0xFF { // fill byte
			i++
			continue
		}
		if marker == 0xDA || marker == 0xD9 { // start of scan, end of image
			return 1
		}
		if marker == 0x01 || marker >= 0xD0 && marker <= 0xD7 { // no length
			i += 2
			continue
		}
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		if n < 2 || i+2+n > len(b) {
			return 1
		}
		seg := b[i+4 : i+2+n]
		if marker == 0xE1 && bytes.HasPrefix(seg, []byte("Exif\x00\x00")) {
			return tiffOrientation(seg[6:])
		}
		i += 2 + n
	}
	return 1
}

// pngOrientation finds the EXIF orientation in a PNG's eXIf chunk.
func pngOrientation(b []byte) int {
	i := len(pngSignature)
	for i+8 <= len(b) {
		n := int(binary.BigEndian.Uint32(b[i:]))
		typ := string(b[i+4 : i+8])
		if n < 0 || n > len(b)-i-12 {
			return 1
		}
		if typ == "eXIf" {
			return tiffOrientation(b[i+8 : i+8+n])
		}
		if typ == "IEND" { // an eXIf after the image data counts too
			return 1
		}
		i += 12 + n
	}
	return 1
}

// tiffOrientation reads tag 0x0112 (Orientation, SHORT) from IFD0 of a TIFF
// structure.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 1
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 1
	}
	if bo.Uint16(t[2:]) != 42 {
		return 1
	}
	off := int(bo.Uint32(t[4:]))
	if off < 8 || off+2 > len(t) {
		return 1
	}
	count := int(bo.Uint16(t[off:]))
	for e := 0; e < count; e++ {
		p := off + 2 + 12*e
		if p+12 > len(t) {
			return 1
		}
		if bo.Uint16(t[p:]) == 0x0112 {
			typ := bo.Uint16(t[p+2:])
			switch typ {
			case 3: // SHORT
				return int(bo.Uint16(t[p+8:]))
			case 4: // LONG
				return int(bo.Uint32(t[p+8:]))
			}
			return 1
		}
	}
	return 1
}

// PreprocessFile is the img2img input diffusers builds from
// image=load_image(path): Load, Preprocess (Lanczos resize to multiples of 8
// only if needed), then Normalized, giving a 1x3xHxW tensor in [-1,1]. orig is
// the picture's size after EXIF orientation; when it differs from shape's
// width and height the image was resized.
func PreprocessFile(path string) (data []float32, shape []int, orig image.Point, err error) {
	m, err := Load(path)
	if err != nil {
		return nil, nil, image.Point{}, err
	}
	p, err := Preprocess(m)
	if err != nil {
		return nil, nil, image.Point{}, fmt.Errorf("%s: %v", path, err)
	}
	data, shape = p.Normalized()
	return data, shape, image.Pt(m.W, m.H), nil
}
