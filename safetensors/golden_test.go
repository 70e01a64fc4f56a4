package safetensors_test

import (
	"encoding/binary"
	"encoding/json"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/x448/float16"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/safetensors"
)

// goldenModelFiles lists the model weight files of the golden sets: every
// *.safetensors under tiny/models and small/models (the diffusers folders
// and the single-file checkpoint). It skips when neither set is present.
func goldenModelFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, rel := range []string{"tiny/models", "small/models"} {
		root := golden.Find(rel)
		if root == "" {
			t.Logf("golden %s not found in %v", rel, golden.Dirs())
			continue
		}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".safetensors") {
				files = append(files, p)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(files) == 0 {
		golden.Path(t, "tiny/models") // skips with the search path
	}
	sort.Strings(files)
	return files
}

// independentHeader parses a file's header with plain encoding/json, apart
// from the package's validator, to cross-check what Open reports.
func independentHeader(t *testing.T, path string) (map[string]struct {
	DType       string  `json:"dtype"`
	Shape       []int   `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}, int64, int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(b)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &raw); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	delete(raw, "__metadata__")
	out := map[string]struct {
		DType       string  `json:"dtype"`
		Shape       []int   `json:"shape"`
		DataOffsets []int64 `json:"data_offsets"`
	}{}
	for k, v := range raw {
		e := out[k]
		if err := json.Unmarshal(v, &e); err != nil {
			t.Fatalf("%s: %s: %v", path, k, err)
		}
		out[k] = e
	}
	return out, int64(8 + n), int64(len(b)) - int64(8+n)
}

// TestGoldenModelFiles opens every golden model file and reads every
// tensor: shapes and dtypes must match an independent parse of the header,
// the data must tile the data section as the reference writer lays it out,
// values must be finite, and F16 data must widen exactly as x448/float16
// does.
func TestGoldenModelFiles(t *testing.T) {
	files := goldenModelFiles(t)
	// The single-file checkpoint of the small model is named explicitly in
	// the golden README; make sure it is among them when small/ exists.
	if golden.Find("small/models") != "" {
		single := golden.Path(t, "small/models/sdxl-small-base.safetensors")
		found := false
		for _, f := range files {
			found = found || f == single
		}
		if !found {
			t.Errorf("%s not visited", single)
		}
	}
	var tensors, elems int
	for _, path := range files {
		f, err := safetensors.Open(path)
		if err != nil {
			t.Errorf("open: %v", err)
			continue
		}
		want, dataOff, dataSize := independentHeader(t, path)
		if f.DataOffset != dataOff || len(f.Tensors) != len(want) {
			t.Errorf("%s: data offset %d / %d tensors, independent parse %d / %d", path, f.DataOffset, len(f.Tensors), dataOff, len(want))
		}
		// small/ is saved in fp16 throughout; tiny/ in fp32 plus *.fp16 variants.
		wantDT := safetensors.F32
		if strings.Contains(path, string(filepath.Separator)+"small"+string(filepath.Separator)) || strings.HasSuffix(path, ".fp16.safetensors") {
			wantDT = safetensors.F16
		}
		var spans [][2]int64
		var raw []byte
		for _, name := range f.Names() {
			in, _ := f.Info(name)
			w, ok := want[name]
			if !ok || string(in.DType) != w.DType || !reflect.DeepEqual(in.Shape, w.Shape) || in.Begin != w.DataOffsets[0] || in.End != w.DataOffsets[1] {
				t.Errorf("%s: %s: got %s %v [%d,%d], header says %+v", path, name, in.DType, in.Shape, in.Begin, in.End, w)
			}
			if in.DType != wantDT {
				t.Errorf("%s: %s: dtype %s, want %s", path, name, in.DType, wantDT)
			}
			spans = append(spans, [2]int64{in.Begin, in.End})
			vals, shape, err := f.Float32(name)
			if err != nil {
				t.Errorf("%v", err)
				continue
			}
			if !reflect.DeepEqual(shape, w.Shape) || len(vals) != in.Numel() {
				t.Errorf("%s: %s: read %d values of shape %v, want %v", path, name, len(vals), shape, w.Shape)
			}
			raw, err = f.Raw(name, raw)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Errorf("%s: %s[%d] = %g", path, name, i, v)
					break
				}
				if in.DType == safetensors.F16 {
					if lib := float16.Frombits(binary.LittleEndian.Uint16(raw[2*i:])).Float32(); math.Float32bits(lib) != math.Float32bits(v) {
						t.Errorf("%s: %s[%d] widened to %g, x448/float16 gives %g", path, name, i, v, lib)
						break
					}
				}
			}
			tensors++
			elems += len(vals)
		}
		// The reference writer packs tensors back to back from offset 0 to
		// the end of the file; check our offsets describe exactly that.
		sort.Slice(spans, func(i, j int) bool { return spans[i][0] < spans[j][0] })
		next := int64(0)
		for _, s := range spans {
			if s[0] != next {
				t.Errorf("%s: gap or overlap at byte %d (next tensor starts at %d)", path, next, s[0])
				break
			}
			next = s[1]
		}
		if next != dataSize {
			t.Errorf("%s: tensors end at %d, data section has %d bytes", path, next, dataSize)
		}
		f.Close()
	}
	t.Logf("%d files, %d tensors, %d values read", len(files), tensors, elems)
}

// TestGoldenFP16Variants compares each *.fp16.safetensors of the tiny set
// with its fp32 sibling. The fp16 files were saved from the same fp32
// weights (torch .half(), round to nearest even), so narrowing the fp32
// value with float16.Fromfloat32 must give the stored bits for every
// element, and widening those bits must equal the fp32 value to within half
// an fp16 ulp.
func TestGoldenFP16Variants(t *testing.T) {
	files := goldenModelFiles(t)
	pairs := 0
	for _, p16 := range files {
		if !strings.HasSuffix(p16, ".fp16.safetensors") {
			continue
		}
		p32 := strings.TrimSuffix(p16, ".fp16.safetensors") + ".safetensors"
		if _, err := os.Stat(p32); err != nil {
			t.Errorf("%s has no fp32 sibling: %v", p16, err)
			continue
		}
		pairs++
		f16, err := safetensors.Open(p16)
		if err != nil {
			t.Fatal(err)
		}
		f32, err := safetensors.Open(p32)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(f16.Names(), f32.Names()) {
			t.Errorf("%s and %s hold different tensor names", p16, p32)
		}
		var n, mismatch int
		var maxRel float64
		var raw []byte
		for _, name := range f32.Names() {
			in16, ok := f16.Info(name)
			in32, _ := f32.Info(name)
			if !ok || !reflect.DeepEqual(in16.Shape, in32.Shape) || in16.DType != safetensors.F16 || in32.DType != safetensors.F32 {
				t.Errorf("%s: %s: fp16 %+v vs fp32 %+v", p16, name, in16, in32)
				continue
			}
			v32, _, err := f32.Float32(name)
			if err != nil {
				t.Fatal(err)
			}
			v16, _, err := f16.Float32(name)
			if err != nil {
				t.Fatal(err)
			}
			raw, err = f16.Raw(name, raw)
			if err != nil {
				t.Fatal(err)
			}
			for i, x := range v32 {
				bits := binary.LittleEndian.Uint16(raw[2*i:])
				if float16.Fromfloat32(x).Bits() != bits {
					if mismatch == 0 {
						t.Errorf("%s: %s[%d]: fp32 %g narrows to %#04x, file has %#04x", p16, name, i, x, float16.Fromfloat32(x).Bits(), bits)
					}
					mismatch++
				}
				// Half an ulp of a normal half is 2^-11 relative; subnormals
				// (|x| < 2^-14) have an absolute step of 2^-24.
				d := math.Abs(float64(v16[i]) - float64(x))
				if d > math.Max(math.Abs(float64(x))*0x1p-11, 0x1p-25) {
					t.Errorf("%s: %s[%d]: fp16 %g vs fp32 %g", p16, name, i, v16[i], x)
				}
				if math.Abs(float64(x)) >= 0x1p-14 { // normal halves only
					maxRel = math.Max(maxRel, d/math.Abs(float64(x)))
				}
				n++
			}
		}
		if mismatch != 0 {
			t.Errorf("%s: %d of %d values differ from float16.Fromfloat32(fp32)", p16, mismatch, n)
		}
		t.Logf("%s: %d values, all equal float16.Fromfloat32(fp32); max relative error of the fp16 value vs fp32 (normal range) %.3g (bound 2^-11 = 4.9e-4)", filepath.Base(filepath.Dir(p16))+"/"+filepath.Base(p16), n, maxRel)
		f16.Close()
		f32.Close()
	}
	if pairs == 0 {
		t.Skip("no *.fp16.safetensors with an fp32 sibling in the golden models")
	}
}
