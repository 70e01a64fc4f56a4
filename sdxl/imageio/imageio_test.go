package imageio

import (
	"bytes"
	"compress/zlib"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"hash/crc32"
	"image"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sdxl/watermark"
)

var e2eScenarios = []string{"astro_euler", "astro_dpmpp_karras_wide", "lion_euler_a", "lion_heun_tall",
	"ensemble_lion", "refine_astro", "compel_lion_weighted", "compel_anime_long"}

// TestQuantizeGolden: our conversion of every small pipeline's `image` (NHWC
// [0,1]) equals its `image_uint8` exactly.
func TestQuantizeGolden(t *testing.T) {
	for _, name := range e2eScenarios {
		g := golden.Open(t, "small/e2e_"+name+".safetensors")
		img, shape := g.Get("image")
		want, _ := g.Get("image_uint8")
		out, err := FromNHWC01(img, shape)
		if err != nil {
			t.Fatal(err)
		}
		h, w := shape[1], shape[2]
		bad, ties := 0, 0
		for i, v := range img {
			if p := float64(float32(v * 255)); p-math.Floor(p) == 0.5 {
				ties++
			}
			b := i / (h * w * 3)
			y, x, c := i/(w*3)%h, i/3%w, i%3
			m := out[b]
			if got := m.Pix[y*m.Stride+4*x+c]; float32(got) != want[i] {
				if bad < 5 {
					t.Errorf("%s: pixel (%d,%d,%d) = %d, want %v (x=%v)", name, y, x, c, got, want[i], v)
				}
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d samples differ", name, bad, len(img))
		}
		t.Logf("%s %v: all %d samples equal image_uint8 (%d exact .5 ties)", name, shape, len(img), ties)
	}
}

// TestDenormalizeGolden: (x/2+0.5).clamp(0,1) of the tiny VAE's decoded
// sample equals diffusers' postprocess output bit for bit, and FromNCHW
// quantizes it like numpy.
func TestDenormalizeGolden(t *testing.T) {
	g := golden.Open(t, "tiny/goldens/vae.safetensors")
	sample, shape := g.Get("decode.sample")
	want, _ := g.Get("decode.image_np")
	h, w := shape[2], shape[3]
	imgs, err := FromNCHW(sample, shape)
	if err != nil {
		t.Fatal(err)
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for c := 0; c < 3; c++ {
				got := Denormalize(sample[(c*h+y)*w+x])
				ref := want[(y*w+x)*3+c]
				if math.Float32bits(got) != math.Float32bits(ref) {
					t.Fatalf("denormalize at (%d,%d,%d): %v, diffusers %v", y, x, c, got, ref)
				}
				if q := imgs[0].Pix[y*imgs[0].Stride+4*x+c]; q != uint8(math.RoundToEven(float64(float32(ref*255)))) {
					t.Fatalf("FromNCHW at (%d,%d,%d): %d", y, x, c, q)
				}
			}
		}
	}
	t.Logf("decode.sample %v: Denormalize equals decode.image_np bit for bit", shape)

	in, ishape := g.Get("encode.image")
	norm, _ := g.Get("encode.image_normalized")
	for i, v := range in {
		if got := float32(float32(2*v) - 1); math.Float32bits(got) != math.Float32bits(norm[i]) {
			t.Fatalf("2x-1 at %d: %v, diffusers %v", i, got, norm[i])
		}
	}
	t.Logf("encode.image %v: 2x-1 in float32 equals image_normalized", ishape)
}

// TestPreprocessGolden: the refiner img2img scenario read astro_euler's
// image_uint8 from a PNG; writing that with WritePNG and reading it back with
// Load gives the golden source_image exactly.
func TestPreprocessGolden(t *testing.T) {
	src := golden.Open(t, "small/e2e_astro_euler.safetensors")
	u8, shape := src.Get("image_uint8")
	ref := golden.Open(t, "small/e2e_refine_astro.safetensors")
	want, _ := ref.Get("source_image")
	h, w := shape[1], shape[2]
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i, v := range u8 {
		m.Pix[i/3*4+i%3] = uint8(v)
		m.Pix[i/3*4+3] = 255
	}
	path := filepath.Join(t.TempDir(), "astro.png")
	if err := WritePNG(path, m, nil, false); err != nil {
		t.Fatal(err)
	}
	rgb, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	pre, err := Preprocess(rgb)
	if err != nil {
		t.Fatal(err)
	}
	if pre != rgb {
		t.Errorf("a %dx%d image was resized", w, h)
	}
	data, dshape := pre.Normalized()
	if dshape[0] != 1 || dshape[1] != 3 || dshape[2] != h || dshape[3] != w {
		t.Fatalf("shape %v", dshape)
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for c := 0; c < 3; c++ {
				s := want[(y*w+x)*3+c]
				if got := float32(float32(pre.Pix[(y*w+x)*3+c]) / 255); got != s {
					t.Fatalf("[0,1] value at (%d,%d,%d): %v, golden %v", y, x, c, got, s)
				}
				if got, n := data[(c*h+y)*w+x], float32(float32(2*s)-1); math.Float32bits(got) != math.Float32bits(n) {
					t.Fatalf("[-1,1] value at (%d,%d,%d): %v, want %v", y, x, c, got, n)
				}
			}
		}
	}
	t.Logf("PNG round trip of %dx%d image_uint8 gives source_image exactly", w, h)
}

func testImage(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range m.Pix {
		m.Pix[i] = uint8(i * 7)
		if i%4 == 3 {
			m.Pix[i] = 255
		}
	}
	return m
}

// rawChunks lists a PNG's chunk types, checking every CRC.
func rawChunks(t *testing.T, b []byte) []string {
	t.Helper()
	var types []string
	for i := 8; i < len(b); {
		n := int(binary.BigEndian.Uint32(b[i:]))
		typ := string(b[i+4 : i+8])
		if crc32.ChecksumIEEE(b[i+4:i+8+n]) != binary.BigEndian.Uint32(b[i+8+n:]) {
			t.Fatalf("bad CRC in %s", typ)
		}
		types = append(types, typ)
		i += 12 + n
	}
	return types
}

func TestPNGChunksRoundTrip(t *testing.T) {
	params := TextChunk{ParametersKey, "an astronaut riding a horse, on mars: 4k\nNegative prompt: blurry\n" +
		"Steps: 30, Sampler: Euler, Schedule type: Karras, CFG scale: 5, Seed: 42, Size: 1024x1024, Model: sd_xl_base_1.0"}
	utf := TextChunk{"comment", "宇宙飛行士 🚀 über Mars"}
	latin := TextChunk{"Title", "café crème"}
	run, err := RunChunk(map[string]any{"prompt": "宇宙 <b>&", "seed": 42, "steps": 30})
	if err != nil {
		t.Fatal(err)
	}
	chunks := []TextChunk{params, run, utf, latin}
	img := testImage(5, 3)
	var buf bytes.Buffer
	if err := EncodePNG(&buf, img, chunks); err != nil {
		t.Fatal(err)
	}
	if b := buf.Bytes(); b[24] != 8 || b[25] != 2 {
		t.Errorf("IHDR bit depth %d colour type %d, want 8-bit RGB (2) like Pillow's RGB PNGs", b[24], b[25])
	}
	types := rawChunks(t, buf.Bytes())
	want := []string{"IHDR", "tEXt", "iTXt", "iTXt", "tEXt", "IDAT", "IEND"}
	if strings.Join(types, " ") != strings.Join(want, " ") {
		t.Errorf("chunk order %v, want %v", types, want)
	}
	got, err := ReadTextChunks(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(chunks) {
		t.Fatalf("read %d chunks, wrote %d", len(got), len(chunks))
	}
	for i := range chunks {
		if got[i] != chunks[i] {
			t.Errorf("chunk %d: read %q, wrote %q", i, got[i], chunks[i])
		}
	}
	if !strings.Contains(run.Value, "宇宙 <b>&") {
		t.Errorf("run JSON escapes text: %s", run.Value)
	}
	// The pixels survive, and Go's own decoder (which checks every CRC) reads it.
	dec, err := png.Decode(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	rgb := ToRGB(dec)
	for i := 0; i < 15; i++ {
		for c := 0; c < 3; c++ {
			if rgb.Pix[3*i+c] != img.Pix[4*i+c] {
				t.Fatalf("pixel %d channel %d changed", i, c)
			}
		}
	}
	m, err := ReadMetadata(bytes.NewReader(buf.Bytes()))
	if err != nil || m.Parameters != params.Value || m.Run != run.Value || len(m.Chunks) != 4 {
		t.Errorf("ReadMetadata = %+v, %v", m, err)
	}
}

// TestReadCompressedChunks covers zTXt and compressed iTXt, which other tools
// write.
func TestReadCompressedChunks(t *testing.T) {
	var buf bytes.Buffer
	if err := EncodePNG(&buf, testImage(2, 2), nil); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	z := func(s string) []byte {
		var zb bytes.Buffer
		zw := zlib.NewWriter(&zb)
		zw.Write([]byte(s))
		zw.Close()
		return zb.Bytes()
	}
	var ins bytes.Buffer
	writeChunk(&ins, "zTXt", append([]byte("Comment\x00\x00"), z("caf\xe9")...))
	writeChunk(&ins, "iTXt", append([]byte("parameters\x00\x01\x00en\x00Parameter\x00"), z("ünïcode")...))
	out := append(append(append([]byte{}, b[:33]...), ins.Bytes()...), b[33:]...)
	got, err := ReadTextChunks(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []TextChunk{{"Comment", "café"}, {"parameters", "ünïcode"}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %q, want %q", got, want)
	}
	// A flipped byte is caught by the CRC check.
	out[40] ^= 1
	if _, err := ReadTextChunks(bytes.NewReader(out)); err == nil {
		t.Error("corrupt chunk accepted")
	}
	if _, err := ReadTextChunks(strings.NewReader("GIF89a")); err == nil {
		t.Error("non-PNG accepted")
	}
}

func TestChunkErrors(t *testing.T) {
	for _, c := range []TextChunk{
		{"", "x"}, {strings.Repeat("k", 80), "x"}, {" lead", "x"}, {"two  spaces", "x"},
		{"tab\tkey", "x"}, {"ok", "nul\x00inside"}, {"ok", "bad utf8 \xff"}, {"prompt", "{}"}, {"workflow", "{}"},
	} {
		if err := EncodePNG(&bytes.Buffer{}, testImage(1, 1), []TextChunk{c}); err == nil {
			t.Errorf("chunk %q accepted", c)
		}
	}
}

func TestWritePNGAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.png")
	first := []TextChunk{{ParametersKey, "first"}}
	if err := WritePNG(path, testImage(4, 4), first, false); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	// No overwrite: refused, file untouched.
	err := WritePNG(path, testImage(8, 8), []TextChunk{{ParametersKey, "second"}}, false)
	if err == nil {
		t.Fatal("existing file overwritten without overwrite=true")
	}
	t.Logf("refused: %v", err)
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("refused write changed the file")
	}
	// A failing write leaves neither a file nor a temporary behind.
	bad := filepath.Join(dir, "bad.png")
	if err := WritePNG(bad, testImage(4, 4), []TextChunk{{"bad\x00key", "x"}}, false); err == nil {
		t.Fatal("bad keyword accepted")
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Fatal("failed write left a file")
	}
	// Overwrite replaces it.
	if err := WritePNG(path, testImage(8, 8), []TextChunk{{ParametersKey, "second"}}, true); err != nil {
		t.Fatal(err)
	}
	c, err := ReadPNGText(path)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := Lookup(c, ParametersKey); v != "second" {
		t.Errorf("after overwrite parameters = %q", v)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only out.png", names)
	}
}

type pillowFixture struct {
	Pillow string
	Resize []struct {
		Seed, W, H, OutW, OutH int
		SHA256                 string
	}
	Transpose []struct {
		Orientation, W, H int
		Hex               string
	}
	ExifPNG struct {
		File string
		W, H int
		Hex  string
	} `json:"exif_png"`
	Modes []struct {
		File, Mode, Hex string
	}
}

func loadPillow(t *testing.T) pillowFixture {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "pillow.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f pillowFixture
	// out_w / out_h use underscores in the JSON.
	raw = bytes.ReplaceAll(bytes.ReplaceAll(raw, []byte(`"out_w"`), []byte(`"OutW"`)), []byte(`"out_h"`), []byte(`"OutH"`))
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("testdata/pillow.json: %v", err)
	}
	return f
}

func lowbias32(x uint32) uint32 {
	x ^= x >> 16
	x *= 0x7FEB352D
	x ^= x >> 15
	x *= 0x846CA68B
	x ^= x >> 16
	return x
}

// pattern rebuilds gen_pillow.py's synthetic image.
func pattern(seed, w, h int) *RGB {
	m := &RGB{W: w, H: h, Pix: make([]uint8, 3*w*h)}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for c := 0; c < 3; c++ {
				n := lowbias32(uint32(((seed*3+c)*h+y)*w+x)) & 0x3F
				m.Pix[3*(y*w+x)+c] = uint8(int(n) + (x*7+y*3+c*50)%192)
			}
		}
	}
	return m
}

func TestResizeMatchesPillow(t *testing.T) {
	f := loadPillow(t)
	for _, r := range f.Resize {
		out, err := ResizeLanczos(pattern(r.Seed, r.W, r.H), r.OutW, r.OutH)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(out.Pix)
		if got := hex.EncodeToString(sum[:]); got != r.SHA256 {
			t.Errorf("%dx%d -> %dx%d: sha256 %s, Pillow %s", r.W, r.H, r.OutW, r.OutH, got, r.SHA256)
		} else {
			t.Logf("%dx%d -> %dx%d: identical to Pillow %s", r.W, r.H, r.OutW, r.OutH, f.Pillow)
		}
	}
	// PreprocessFile resizes a 37x29 PNG to 32x24 like Pillow, then 2x-1.
	path := filepath.Join(t.TempDir(), "odd.png")
	odd := pattern(1, 37, 29)
	nrgba := image.NewNRGBA(image.Rect(0, 0, 37, 29))
	for i := 0; i < 37*29; i++ {
		copy(nrgba.Pix[4*i:4*i+3], odd.Pix[3*i:3*i+3])
		nrgba.Pix[4*i+3] = 255
	}
	if err := WritePNG(path, nrgba, nil, false); err != nil {
		t.Fatal(err)
	}
	data, shape, orig, err := PreprocessFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if orig != image.Pt(37, 29) || shape[2] != 24 || shape[3] != 32 {
		t.Fatalf("PreprocessFile: orig %v shape %v", orig, shape)
	}
	want, _ := ResizeLanczos(odd, 32, 24)
	for i := 0; i < 32*24; i++ {
		for c := 0; c < 3; c++ {
			if data[c*32*24+i] != Normalize(want.Pix[3*i+c]) {
				t.Fatalf("PreprocessFile value %d/%d differs", i, c)
			}
		}
	}
	// Preprocess rounds down to multiples of 8 and leaves such sizes alone.
	m := pattern(1, 37, 29)
	p, err := Preprocess(m)
	if err != nil || p.W != 32 || p.H != 24 {
		t.Fatalf("Preprocess 37x29 -> %dx%d, %v", p.W, p.H, err)
	}
	if _, err := Preprocess(pattern(1, 7, 20)); err == nil {
		t.Error("Preprocess accepted a 7-pixel-wide image")
	}
}

func TestOrientMatchesPillow(t *testing.T) {
	f := loadPillow(t)
	src := pattern(7, 5, 3)
	for _, tr := range f.Transpose {
		got := Orient(src, tr.Orientation)
		if got.W != tr.W || got.H != tr.H || hex.EncodeToString(got.Pix) != tr.Hex {
			t.Errorf("orientation %d: %dx%d %x, Pillow %dx%d %s", tr.Orientation, got.W, got.H, got.Pix, tr.W, tr.H, tr.Hex)
		}
	}
	// exif_transpose of a PNG with an eXIf chunk.
	m, err := Load(filepath.Join("testdata", f.ExifPNG.File))
	if err != nil {
		t.Fatal(err)
	}
	if m.W != f.ExifPNG.W || m.H != f.ExifPNG.H || hex.EncodeToString(m.Pix) != f.ExifPNG.Hex {
		t.Errorf("%s: %dx%d, Pillow's exif_transpose %dx%d", f.ExifPNG.File, m.W, m.H, f.ExifPNG.W, f.ExifPNG.H)
	}
}

func TestLoadModesMatchPillow(t *testing.T) {
	f := loadPillow(t)
	for _, c := range f.Modes {
		m, err := Load(filepath.Join("testdata", c.File))
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(m.Pix); got != c.Hex {
			t.Errorf("%s (Pillow mode %s): convert(\"RGB\") differs\n got %s\nwant %s", c.File, c.Mode, got, c.Hex)
		}
	}
}

// TestJPEGOrientation inserts an EXIF APP1 segment with orientation 6 into a
// JPEG written by Go and checks that Load rotates it 90 degrees clockwise.
func TestJPEGOrientation(t *testing.T) {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, testImage(16, 8), &jpeg.Options{Quality: 100}); err != nil {
		t.Fatal(err)
	}
	for _, order := range []string{"II", "MM"} {
		var bo binary.AppendByteOrder = binary.LittleEndian
		if order == "MM" {
			bo = binary.BigEndian
		}
		tiff := []byte(order)
		tiff = bo.AppendUint16(tiff, 42)
		tiff = bo.AppendUint32(tiff, 8)
		tiff = bo.AppendUint16(tiff, 1)      // one entry
		tiff = bo.AppendUint16(tiff, 0x0112) // Orientation
		tiff = bo.AppendUint16(tiff, 3)      // SHORT
		tiff = bo.AppendUint32(tiff, 1)
		tiff = bo.AppendUint16(tiff, 6)
		tiff = bo.AppendUint16(tiff, 0)
		tiff = bo.AppendUint32(tiff, 0) // no next IFD
		seg := append([]byte("Exif\x00\x00"), tiff...)
		app1 := append([]byte{0xFF, 0xE1}, binary.BigEndian.AppendUint16(nil, uint16(len(seg)+2))...)
		b := append(append(append([]byte{}, buf.Bytes()[:2]...), append(app1, seg...)...), buf.Bytes()[2:]...)
		plain, err := Decode(buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		rot, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if plain.W != 16 || plain.H != 8 || rot.W != 8 || rot.H != 16 {
			t.Fatalf("%s: sizes %dx%d and %dx%d", order, plain.W, plain.H, rot.W, rot.H)
		}
		if !bytes.Equal(Orient(plain, 6).Pix, rot.Pix) {
			t.Errorf("%s: rotated pixels differ", order)
		}
	}
	if _, err := Decode([]byte("GIF89a....")); err == nil {
		t.Error("GIF accepted")
	}
	if _, err := Decode(append([]byte{}, pngSignature...)); err == nil {
		t.Error("truncated PNG accepted")
	}
}

func TestQuantizeEdges(t *testing.T) {
	for _, c := range []struct {
		x    float32
		want uint8
	}{{0, 0}, {1, 255}, {0.5, 128}, {float32(0.5) / 255, 0}, {float32(1.5) / 255, 2}, {-0.1, 0}, {1.1, 255}, {float32(math.NaN()), 0}} {
		if got := Quantize(c.x); got != c.want {
			t.Errorf("Quantize(%v) = %d, want %d", c.x, got, c.want)
		}
	}
	if _, err := FromNCHW(make([]float32, 10), []int{1, 3, 2, 2}); err == nil {
		t.Error("FromNCHW accepted a short buffer")
	}
	if _, err := FromNHWC01(make([]float32, 16), []int{1, 2, 2, 4}); err == nil {
		t.Error("FromNHWC01 accepted 4 channels")
	}
}

// TestVerifyWatermark runs the whole output path on the watermark goldens:
// watermark.Apply on the decoder output, FromNCHW, WritePNG, then
// VerifyWatermark on the file must give the library's bits for diffusers'
// uint8 image.
func TestVerifyWatermark(t *testing.T) {
	g := golden.Open(t, "watermark/watermark.safetensors")
	dir := t.TempDir()
	for _, name := range []string{"noisy256", "smooth256", "wide384x256"} {
		in, shape := g.Get(name + ".input")
		wantBits, _ := g.Get(name + ".decoded_bits_from_uint8")
		img := append([]float32(nil), in...)
		if err := watermark.Apply(img, shape); err != nil {
			t.Fatal(err)
		}
		pics, err := FromNCHW(img, shape)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name+".png")
		if err := WritePNG(path, pics[0], nil, false); err != nil {
			t.Fatal(err)
		}
		r, err := VerifyWatermark(path)
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range wantBits {
			if r.Bits[i] != uint8(b) {
				t.Fatalf("%s: decoded %s, library %v", name, watermark.BitsString(r.Bits), wantBits)
			}
		}
		t.Logf("%s: %s", name, r)
	}
	small := filepath.Join(dir, "small.png")
	if err := WritePNG(small, testImage(64, 64), nil, false); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyWatermark(small); err == nil {
		t.Error("a 64x64 image was decoded")
	}
}
