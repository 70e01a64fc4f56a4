package watermark

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/internal/golden"
)

const goldenFile = "watermark/watermark.safetensors"

// Images at least 256 wide in the golden file; narrow248x256 is checked
// separately.
var goldenNames = []string{"noisy256", "smooth256", "wide384x256"}

// maxAbsTol is the acceptance bound for the watermarked pixels ([-1,1] scale).
const maxAbsTol = 1e-5

// toUint8RGB is diffusers' postprocess of one CHW [-1,1] image:
// round(clamp(x/2+0.5, 0, 1)*255) in float32, interleaved RGB.
func toUint8RGB(img []float32, h, w int) []uint8 {
	n := h * w
	out := make([]uint8, 3*n)
	for c := 0; c < 3; c++ {
		for i := 0; i < n; i++ {
			x := float32(img[c*n+i]/2) + 0.5
			x = min(max(x, 0), 1)
			out[3*i+c] = uint8(math.RoundToEven(float64(float32(x * 255))))
		}
	}
	return out
}

func goldenBits(t *testing.T, g *golden.File, name string) [MessageLen]uint8 {
	t.Helper()
	f, _ := g.Get(name)
	if len(f) != MessageLen {
		t.Fatalf("%s: %d bits, want %d", name, len(f), MessageLen)
	}
	var b [MessageLen]uint8
	for i, v := range f {
		if v != 0 && v != 1 {
			t.Fatalf("%s[%d] = %v is not a bit", name, i, v)
		}
		b[i] = uint8(v)
	}
	return b
}

func TestMessage(t *testing.T) {
	const want = "101100111110110010010000011110111011000110011110" // SPECS.md
	bits := MessageBits()
	if got := BitsString(bits); got != want {
		t.Fatalf("MessageBits = %s, want %s", got, want)
	}
	if BitsValue(bits) != Message {
		t.Fatalf("BitsValue = %#x, want %#x", BitsValue(bits), Message)
	}
	if MatchingBits(bits) != MessageLen {
		t.Fatalf("MatchingBits(message) = %d", MatchingBits(bits))
	}
	bits[0] ^= 1
	bits[47] ^= 1
	if MatchingBits(bits) != MessageLen-2 {
		t.Fatalf("MatchingBits with 2 flips = %d", MatchingBits(bits))
	}
	g := golden.Open(t, goldenFile)
	if got := strings.NewReplacer("[", "", "]", "", ",", "", " ", "").Replace(g.Metadata["message_bits"]); got != want {
		t.Fatalf("golden message_bits %s, want %s", got, want)
	}
}

// TestApplyGolden checks the watermark against diffusers + invisible-watermark
// on the golden images, and our decoders against the library's decoded bits.
func TestApplyGolden(t *testing.T) {
	g := golden.Open(t, goldenFile)
	var checks map[string]struct {
		BitsOKUint8 int `json:"bits_ok_uint8"`
		BitsOKFloat int `json:"bits_ok_float"`
	}
	if err := json.Unmarshal([]byte(g.Metadata["checks"]), &checks); err != nil {
		t.Fatalf("golden checks metadata: %v", err)
	}
	for _, name := range goldenNames {
		in, shape := g.Get(name + ".input")
		want, _ := g.Get(name + ".watermarked")
		h, w := shape[2], shape[3]
		got := append([]float32(nil), in...)
		if err := Apply(got, shape); err != nil {
			t.Fatal(err)
		}
		e := golden.MaxAbs(got, want)
		t.Logf("%s %v: max abs %.3g, relative %.3g", name, shape, e, golden.RelErr(got, want))
		if !(e <= maxAbsTol) {
			t.Errorf("%s: watermarked image differs by %.3g > %g", name, e, maxAbsTol)
		}

		wantF := goldenBits(t, g, name+".decoded_bits_from_float")
		wantU := goldenBits(t, g, name+".decoded_bits_from_uint8")
		// The library's decoder on the golden's own images...
		gotF, err := DecodeFloat(want, h, w)
		if err != nil {
			t.Fatal(err)
		}
		gotU, err := DecodeRGB8(toUint8RGB(want, h, w), 3*w, h, w)
		if err != nil {
			t.Fatal(err)
		}
		// ...and on ours, which must decode identically.
		oursF, _ := DecodeFloat(got, h, w)
		oursU, _ := DecodeRGB8(toUint8RGB(got, h, w), 3*w, h, w)
		for _, c := range []struct {
			what      string
			got, want [MessageLen]uint8
			ok        int
		}{
			{"float decode of golden image", gotF, wantF, checks[name].BitsOKFloat},
			{"uint8 decode of golden image", gotU, wantU, checks[name].BitsOKUint8},
			{"float decode of our image", oursF, wantF, checks[name].BitsOKFloat},
			{"uint8 decode of our image", oursU, wantU, checks[name].BitsOKUint8},
		} {
			if c.got != c.want {
				t.Errorf("%s %s: %s, want %s", name, c.what, BitsString(c.got), BitsString(c.want))
			}
			if n := MatchingBits(c.got); n != c.ok {
				t.Errorf("%s %s: %d bits match SDXL's message, golden says %d", name, c.what, n, c.ok)
			}
		}
		t.Logf("%s: float decode %d/48 bits, uint8 decode %d/48 bits, as the library", name, MatchingBits(gotF), MatchingBits(gotU))
	}
}

func TestNarrowUnchanged(t *testing.T) {
	g := golden.Open(t, goldenFile)
	in, shape := g.Get("narrow248x256.input")
	want, _ := g.Get("narrow248x256.watermarked")
	got := append([]float32(nil), in...)
	if err := Apply(got, shape); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) || got[i] != in[i] {
			t.Fatalf("narrow image changed at %d: %v -> %v (golden %v)", i, in[i], got[i], want[i])
		}
	}
}

func TestApplyBatchAndErrors(t *testing.T) {
	g := golden.Open(t, goldenFile)
	a, shape := g.Get("noisy256.input")
	b, _ := g.Get("smooth256.input")
	wa, _ := g.Get("noisy256.watermarked")
	wb, _ := g.Get("smooth256.watermarked")
	batch := append(append([]float32(nil), a...), b...)
	if err := Apply(batch, []int{2, 3, shape[2], shape[3]}); err != nil {
		t.Fatal(err)
	}
	e := max(golden.MaxAbs(batch[:len(a)], wa), golden.MaxAbs(batch[len(a):], wb))
	t.Logf("batch of 2: max abs %.3g", e)
	if !(e <= maxAbsTol) {
		t.Errorf("batch of 2 differs by %.3g", e)
	}

	for _, c := range []struct {
		n     int
		shape []int
	}{
		{10, []int{1, 3, 2, 2}},                // wrong length
		{12, []int{1, 4, 1, 3}},                // not RGB
		{12, []int{3, 4}},                      // not 4-D
		{3 * 256 * 255, []int{1, 3, 255, 256}}, // wide enough but under 256*256 pixels
	} {
		if err := Apply(make([]float32, c.n), c.shape); err == nil {
			t.Errorf("Apply(%d values, %v) did not fail", c.n, c.shape)
		} else {
			t.Logf("Apply(%v): %v", c.shape, err)
		}
	}
	if _, err := DecodeFloat(make([]float32, 3*100*100), 100, 100); err == nil {
		t.Error("DecodeFloat accepted a 100x100 image")
	}
	if _, err := DecodeRGB8(make([]uint8, 10), 3*256, 256, 256); err == nil {
		t.Error("DecodeRGB8 accepted a short buffer")
	}
}

// TestOpenCVU8Table checks our fixed-point U against OpenCV 4.6.0's
// cv2.cvtColor(BGR2YUV) on uint8 for all 2^24 colours: the SHA-256 of the U
// channel of a 4096x4096 BGR image whose pixel B*65536+G*256+R holds
// (B,G,R), computed with Debian bookworm's python3-opencv 4.6.0.
func TestOpenCVU8Table(t *testing.T) {
	const want = "0de2ec503a71f7859e60735a4f75a4e6c86f00b480133a80b96d48a862883f69"
	tab := make([]byte, 1<<24)
	for b := 0; b < 256; b++ {
		for g := 0; g < 256; g++ {
			for r := 0; r < 256; r++ {
				tab[b<<16|g<<8|r] = opencvU8(uint8(r), uint8(g), uint8(b))
			}
		}
	}
	sum := sha256.Sum256(tab)
	if got := hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("U table sha256 %s, OpenCV's %s", got, want)
	}
	t.Logf("all 2^24 8-bit U values equal OpenCV 4.6.0's")
}

// oracleCase is one synthetic image run through the real library; see
// testdata/gen_oracle.py.
type oracleCase struct {
	Seed, H, W     int
	Kind           string
	BitsFloat      string       `json:"bits_float"`
	BitsUint8      string       `json:"bits_uint8"`
	BitsInputUint8 string       `json:"bits_input_uint8"`
	Samples        [][2]float64 `json:"samples"`
}

// lowbias32 is the integer hash gen_oracle.py uses.
func lowbias32(x uint32) uint32 {
	x ^= x >> 16
	x *= 0x7FEB352D
	x ^= x >> 15
	x *= 0x846CA68B
	x ^= x >> 16
	return x
}

// oracleImage rebuilds gen_oracle.py's make(): every operation is exactly
// rounded float64 arithmetic, so the float32 image is bit-identical.
func oracleImage(c oracleCase) []float32 {
	out := make([]float32, 3*c.H*c.W)
	for ch := 0; ch < 3; ch++ {
		for y := 0; y < c.H; y++ {
			for x := 0; x < c.W; x++ {
				idx := ((c.Seed*3+ch)*c.H+y)*c.W + x
				noise := float64(lowbias32(uint32(idx))) / 4294967296.0
				var v float64
				switch c.Kind {
				case "noise":
					v = noise*2 - 1
				case "smooth":
					ramp := float64((x*(ch+1)+y*(3-ch))%256)/128 - 1
					v = ramp + float64(0.05*(noise-0.5))
				default:
					d := (x*3+ch*22+y*5)%512 - 256
					if d < 0 {
						d = -d
					}
					tri := float64(d)/128 - 1
					v = float64(1.1*tri) + float64(0.2*(noise-0.5))
				}
				out[(ch*c.H+y)*c.W+x] = float32(v)
			}
		}
	}
	return out
}

// TestOracle compares encoder and decoders with the real library on ten
// synthetic images of odd sizes, smooth, noisy and clamped content.
func TestOracle(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "oracle.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Versions string
		Cases    []oracleCase
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("testdata/oracle.json: %v", err)
	}
	t.Logf("oracle: %s", doc.Versions)
	for _, c := range doc.Cases {
		in := oracleImage(c)
		img := append([]float32(nil), in...)
		if err := Apply(img, []int{1, 3, c.H, c.W}); err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for _, s := range c.Samples {
			worst = max(worst, math.Abs(float64(img[int(s[0])])-s[1]))
		}
		if !(worst <= maxAbsTol) {
			t.Errorf("seed %d: sampled pixels differ by %.3g", c.Seed, worst)
		}
		bf, _ := DecodeFloat(img, c.H, c.W)
		bu, _ := DecodeRGB8(toUint8RGB(img, c.H, c.W), 3*c.W, c.H, c.W)
		bi, _ := DecodeRGB8(toUint8RGB(in, c.H, c.W), 3*c.W, c.H, c.W)
		for _, x := range []struct{ what, got, want string }{
			{"float decode", BitsString(bf), c.BitsFloat},
			{"uint8 decode", BitsString(bu), c.BitsUint8},
			{"uint8 decode of the unmarked input", BitsString(bi), c.BitsInputUint8},
		} {
			if x.got != x.want {
				t.Errorf("seed %d (%s %dx%d) %s: %s, library %s", c.Seed, c.Kind, c.W, c.H, x.what, x.got, x.want)
			}
		}
		t.Logf("seed %2d %-6s %dx%d: %d samples max abs %.3g; float %2d/48, uint8 %2d/48 bits as the library",
			c.Seed, c.Kind, c.W, c.H, len(c.Samples), worst, MatchingBits(bf), MatchingBits(bu))
	}
}

func TestFloorDiv(t *testing.T) {
	// Just below a multiple of 36, a/b rounds up to the multiple in float64
	// and math.Floor(a/b) would give the next cell; numpy gives the lower one.
	a := math.Nextafter(36*5, 0)
	if got := floorDiv(a, 36); got != 4 {
		t.Errorf("floorDiv(%v, 36) = %v, want 4 (numpy floor_divide)", a, got)
	}
	for _, c := range [][3]float64{{0, 36, 0}, {35.9, 36, 0}, {36, 36, 1}, {1000, 36, 27}} {
		if got := floorDiv(c[0], c[1]); got != c[2] {
			t.Errorf("floorDiv(%v, %v) = %v, want %v", c[0], c[1], got, c[2])
		}
	}
}

func BenchmarkApply1024(b *testing.B) {
	img := make([]float32, 3*1024*1024)
	for i := range img {
		img[i] = float32(lowbias32(uint32(i)))/(1<<31) - 1
	}
	buf := make([]float32, len(img))
	b.ResetTimer()
	for b.Loop() {
		copy(buf, img)
		if err := Apply(buf, []int{1, 3, 1024, 1024}); err != nil {
			b.Fatal(err)
		}
	}
}
