package safetensors_test

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/x448/float16"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/safetensors"
)

// writeFile writes a safetensors file by hand: the 8-byte length of js,
// js itself, then data.
func writeFile(t *testing.T, name, js string, data []byte) string {
	t.Helper()
	var b []byte
	b = binary.LittleEndian.AppendUint64(b, uint64(len(js)))
	b = append(b, js...)
	b = append(b, data...)
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWriteFileRoundTrip(t *testing.T) {
	nan := float32(math.NaN())
	tensors := []safetensors.Tensor{
		{Name: "b.weight", Shape: []int{2, 3}, Data: []float32{1, -2, 3.5, float32(math.Inf(1)), float32(math.Copysign(0, -1)), nan}},
		{Name: "a.scalar", Shape: []int{}, Data: []float32{42}},
		{Name: "c.empty", Shape: []int{0, 4}, Data: nil},
		{Name: "d.vec", Shape: []int{5}, Data: []float32{1e-45, -1e38, 0.1, 2, 3}},
		{Name: "unicode.ünï", Shape: []int{1}, Data: []float32{7}},
	}
	// A large tensor crosses the writer's internal buffer boundary.
	big := make([]float32, 70000)
	for i := range big {
		big[i] = float32(i) * 0.25
	}
	tensors = append(tensors, safetensors.Tensor{Name: "e.big", Shape: []int{7, 10000}, Data: big})
	meta := map[string]string{"format": "pt", "note": `quotes " and <html> & ünïcode`}
	p := filepath.Join(t.TempDir(), "rt.safetensors")
	if err := safetensors.WriteFile(p, tensors, meta); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Path() != p {
		t.Errorf("Path() = %q, want %q", f.Path(), p)
	}
	if f.DataOffset%8 != 0 {
		t.Errorf("data section starts at %d, not 8-aligned", f.DataOffset)
	}
	if !reflect.DeepEqual(f.Metadata, meta) {
		t.Errorf("metadata = %v, want %v", f.Metadata, meta)
	}
	want := []string{"a.scalar", "b.weight", "c.empty", "d.vec", "e.big", "unicode.ünï"}
	if got := f.Names(); !reflect.DeepEqual(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	var next int64
	for _, tt := range tensors {
		in, ok := f.Info(tt.Name)
		if !ok {
			t.Fatalf("tensor %q missing", tt.Name)
		}
		if in.DType != safetensors.F32 || !reflect.DeepEqual(in.Shape, tt.Shape) || in.Numel() != len(tt.Data) {
			t.Errorf("%s: info %+v, want F32 %v", tt.Name, in, tt.Shape)
		}
		// The writer lays tensors out back to back in the given order.
		if in.Begin != next {
			t.Errorf("%s: begins at %d, want %d", tt.Name, in.Begin, next)
		}
		next = in.End
		got, shape, err := f.Float32(tt.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(shape, tt.Shape) || !golden.SameBits(got, tt.Data) {
			t.Errorf("%s: read %v %v, want %v %v", tt.Name, shape, got[:min(len(got), 8)], tt.Shape, tt.Data[:min(len(tt.Data), 8)])
		}
		raw, err := f.Raw(tt.Name, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range tt.Data {
			if binary.LittleEndian.Uint32(raw[4*i:]) != math.Float32bits(v) {
				t.Fatalf("%s: raw element %d differs", tt.Name, i)
			}
		}
	}
	st, _ := os.Stat(p)
	if f.DataOffset+next != st.Size() {
		t.Errorf("file is %d bytes, header+data %d", st.Size(), f.DataOffset+next)
	}
	// Reading into a caller buffer and the scratch path.
	dst := make([]float32, 5)
	if err := f.ReadFloat32("d.vec", dst, make([]byte, 3)); err != nil || !golden.SameBits(dst, tensors[3].Data) {
		t.Errorf("ReadFloat32: %v %v", dst, err)
	}
	// Errors name the file and the tensor.
	for _, err := range []error{
		f.ReadFloat32("d.vec", make([]float32, 4), nil),
		f.ReadFloat32("nope", dst, nil),
		func() error { _, _, err := f.Float32("nope"); return err }(),
		func() error { _, err := f.Raw("nope", nil); return err }(),
	} {
		if err == nil || !strings.Contains(err.Error(), p) || !(strings.Contains(err.Error(), `"d.vec"`) || strings.Contains(err.Error(), `"nope"`)) {
			t.Errorf("error %v should name %s and the tensor", err, p)
		}
	}
	// Overwriting replaces the file (atomically) and leaves no temporary.
	if err := safetensors.WriteFile(p, tensors[:1], nil); err != nil {
		t.Fatal(err)
	}
	g, err := safetensors.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if len(g.Tensors) != 1 || g.Metadata != nil {
		t.Errorf("after overwrite: %d tensors, metadata %v", len(g.Tensors), g.Metadata)
	}
	ents, _ := os.ReadDir(filepath.Dir(p))
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries after writes, want 1", len(ents))
	}
}

func TestWriteRawFileRoundTrip(t *testing.T) {
	h := func(vs ...float32) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint16(b, float16.Fromfloat32(v).Bits())
		}
		return b
	}
	bf := func(vs ...float32) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint16(b, uint16(math.Float32bits(v)>>16))
		}
		return b
	}
	i64 := func(vs ...int64) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		}
		return b
	}
	cases := []struct {
		t    safetensors.RawTensor
		want []float32
	}{
		{safetensors.RawTensor{Name: "half", DType: safetensors.F16, Shape: []int{2, 2}, Data: h(1, -0.5, 65504, 5.960464477539063e-08)}, []float32{1, -0.5, 65504, 5.960464477539063e-08}},
		{safetensors.RawTensor{Name: "bf", DType: safetensors.BF16, Shape: []int{3}, Data: bf(1, -2.5, 3.0e38)}, []float32{1, -2.5, math.Float32frombits(math.Float32bits(3.0e38) &^ 0xFFFF)}},
		{safetensors.RawTensor{Name: "ids", DType: safetensors.I64, Shape: []int{1, 3}, Data: i64(0, 49407, -5)}, []float32{0, 49407, -5}},
		{safetensors.RawTensor{Name: "mask", DType: safetensors.Bool, Shape: []int{3}, Data: []byte{1, 0, 1}}, []float32{1, 0, 1}},
		{safetensors.RawTensor{Name: "u8", DType: safetensors.U8, Shape: []int{2}, Data: []byte{255, 7}}, []float32{255, 7}},
		{safetensors.RawTensor{Name: "i8", DType: safetensors.I8, Shape: []int{2}, Data: []byte{255, 7}}, []float32{-1, 7}},
		{safetensors.RawTensor{Name: "e4m3", DType: safetensors.F8E4M3, Shape: []int{4}, Data: []byte{0x38, 0x7E, 0x01, 0xB8}}, []float32{1, 448, 1.0 / 512, -1}},
		{safetensors.RawTensor{Name: "e5m2", DType: safetensors.F8E5M2, Shape: []int{3}, Data: []byte{0x3C, 0x7B, 0x7C}}, []float32{1, 57344, float32(math.Inf(1))}},
	}
	raws := make([]safetensors.RawTensor, len(cases))
	for i, c := range cases {
		raws[i] = c.t
	}
	p := filepath.Join(t.TempDir(), "raw.safetensors")
	if err := safetensors.WriteRawFile(p, raws, nil); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, c := range cases {
		in, _ := f.Info(c.t.Name)
		got, shape, err := f.Float32(c.t.Name)
		if err != nil {
			t.Fatal(err)
		}
		if in.DType != c.t.DType || !reflect.DeepEqual(shape, c.t.Shape) || !golden.SameBits(got, c.want) {
			t.Errorf("%s: %s %v %v, want %s %v %v", c.t.Name, in.DType, shape, got, c.t.DType, c.t.Shape, c.want)
		}
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.safetensors")
	cases := []struct {
		name    string
		tensors []safetensors.Tensor
		meta    map[string]string
		want    string
	}{
		{"duplicate", []safetensors.Tensor{{Name: "x", Shape: []int{1}, Data: []float32{1}}, {Name: "x", Shape: []int{1}, Data: []float32{1}}}, nil, `duplicate tensor name "x"`},
		{"mismatch", []safetensors.Tensor{{Name: "x", Shape: []int{2, 2}, Data: []float32{1}}}, nil, `tensor "x": shape [2 2]`},
		{"negative dims", []safetensors.Tensor{{Name: "x", Shape: []int{-1, -2}, Data: []float32{1, 2}}}, nil, `tensor "x": bad dimension -1`},
		{"reserved name", []safetensors.Tensor{{Name: "__metadata__", Shape: []int{1}, Data: []float32{1}}}, nil, `"__metadata__" is reserved`},
		{"bad utf8 name", []safetensors.Tensor{{Name: "a\xff", Shape: []int{1}, Data: []float32{1}}}, nil, "not valid UTF-8"},
		{"bad utf8 metadata", nil, map[string]string{"k": "\xff"}, "not valid UTF-8"},
	}
	for _, c := range cases {
		err := safetensors.WriteFile(p, c.tensors, c.meta)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
		}
	}
	err := safetensors.WriteRawFile(p, []safetensors.RawTensor{{Name: "y", DType: "Q4", Shape: []int{1}, Data: []byte{0}}}, nil)
	if err == nil || !strings.Contains(err.Error(), `tensor "y": unknown dtype "Q4"`) {
		t.Errorf("unknown dtype: %v", err)
	}
	err = safetensors.WriteRawFile(p, []safetensors.RawTensor{{Name: "y", DType: safetensors.F16, Shape: []int{3}, Data: []byte{0, 0}}}, nil)
	if err == nil || !strings.Contains(err.Error(), `tensor "y": shape [3] of F16 needs 6 bytes, data has 2`) {
		t.Errorf("raw size mismatch: %v", err)
	}
	// Failed writes leave nothing behind.
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("failed writes left %d files", len(ents))
	}
	// A missing directory is reported with the path.
	err = safetensors.WriteFile(filepath.Join(dir, "no", "x.safetensors"), nil, nil)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "no", "x.safetensors")) {
		t.Errorf("missing directory: %v", err)
	}
}

// TestHeaderValidation checks every rule of the reader on hand-made files;
// each error must name the file and (where there is one) the tensor.
func TestHeaderValidation(t *testing.T) {
	data16 := make([]byte, 16)
	cases := []struct {
		name   string
		header string
		data   []byte
		want   string // substring of the error after the file name
	}{
		{"end past data", `{"w":{"dtype":"F32","shape":[5],"data_offsets":[0,20]}}`, data16, `tensor "w": data_offsets [0, 20] outside the 16-byte data section`},
		{"begin after end", `{"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}`, data16, `tensor "w": bad data_offsets [8, 4]`},
		{"negative begin", `{"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`, data16, `tensor "w": bad data_offsets [-4, 0]`},
		{"offsets count", `{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, data16, `tensor "w": data_offsets must have 2 entries, has 3`},
		{"offsets not ints", `{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4.5]}}`, data16, `tensor "w": bad header entry`},
		{"overlap", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, data16, `tensors "a" [0, 8] and "b" [4, 12] overlap`},
		{"same range", `{"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}`, data16, `tensors "a" [0, 8] and "b" [0, 8] overlap`},
		{"nested overlap", `{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F16","shape":[1],"data_offsets":[6,8]}}`, data16, `tensors "a" [0, 16] and "b" [6, 8] overlap`},
		{"size mismatch", `{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, data16, `tensor "w": shape [3] of F32 needs 12 bytes, data_offsets give 8`},
		{"size mismatch f16", `{"w":{"dtype":"F16","shape":[2,2],"data_offsets":[0,16]}}`, data16, `tensor "w": shape [2 2] of F16 needs 8 bytes, data_offsets give 16`},
		{"unknown dtype", `{"w":{"dtype":"F12","shape":[1],"data_offsets":[0,4]}}`, data16, `tensor "w": unknown dtype "F12"`},
		{"lowercase dtype", `{"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}`, data16, `tensor "w": unknown dtype "f32"`},
		{"no dtype", `{"w":{"shape":[1],"data_offsets":[0,4]}}`, data16, `tensor "w": header entry has no dtype`},
		{"no shape", `{"w":{"dtype":"F32","data_offsets":[0,4]}}`, data16, `tensor "w": header entry has no shape`},
		{"null shape", `{"w":{"dtype":"F32","shape":null,"data_offsets":[0,4]}}`, data16, `tensor "w": header entry has no shape`},
		{"no offsets", `{"w":{"dtype":"F32","shape":[1]}}`, data16, `tensor "w": header entry has no data_offsets`},
		{"negative dim", `{"w":{"dtype":"F32","shape":[-1,-1],"data_offsets":[0,4]}}`, data16, `tensor "w": bad dimension -1`},
		{"huge dim", `{"w":{"dtype":"F32","shape":[4294967296],"data_offsets":[0,4]}}`, data16, `tensor "w": bad dimension 4294967296`},
		{"overflowing shape", `{"w":{"dtype":"F64","shape":[2147483647,2147483647,2147483647],"data_offsets":[0,8]}}`, data16, `tensor "w": shape [2147483647 2147483647 2147483647] overflows`},
		{"entry not object", `{"w":[1,2]}`, data16, `tensor "w": bad header entry`},
		{"entry null", `{"w":null}`, data16, `tensor "w": header entry has no dtype`},
		{"array", `[]`, nil, `header is not a JSON object`},
		{"null", `null`, nil, `header is not a JSON object`},
		{"string", `"abc"`, nil, `header is not a JSON object`},
		{"number", `12`, nil, `header is not a JSON object`},
		{"empty", ``, nil, `header is not a JSON object`},
		{"unterminated", `{"w":{"dtype":"F32"`, data16, `header is not a JSON object`},
		{"trailing data", `{} {}`, nil, `trailing data`},
		{"duplicate key", `{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, data16, `header names "w" twice`},
		{"invalid utf8", "{\"w\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", data16, `not valid UTF-8`},
		{"metadata not strings", `{"__metadata__":{"a":1}}`, nil, `__metadata__ must map strings to strings`},
		{"metadata array", `{"__metadata__":["a"]}`, nil, `__metadata__ must map strings to strings`},
		{"metadata nested", `{"__metadata__":{"a":{"b":"c"}}}`, nil, `__metadata__ must map strings to strings`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeFile(t, "x.safetensors", c.header, c.data)
			f, err := safetensors.Open(p)
			if err == nil {
				f.Close()
				t.Fatalf("Open accepted header %s", c.header)
			}
			if !strings.HasPrefix(err.Error(), p+": ") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want %q naming the file", err, c.want)
			}
			// ParseHeader alone gives the same verdict.
			if _, err := safetensors.ParseHeader([]byte(c.header), int64(len(c.data))); err == nil {
				t.Errorf("ParseHeader accepted %s", c.header)
			}
		})
	}
}

func TestFileLevelErrors(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short.safetensors")
	os.WriteFile(short, []byte{1, 2, 3}, 0o644)
	huge := filepath.Join(dir, "huge.safetensors")
	var b []byte
	b = binary.LittleEndian.AppendUint64(b, safetensors.MaxHeaderSize+1)
	os.WriteFile(huge, append(b, make([]byte, 64)...), 0o644)
	long := filepath.Join(dir, "long.safetensors")
	b = binary.LittleEndian.AppendUint64(nil, 100)
	os.WriteFile(long, append(b, `{"a":1}`...), 0o644)
	// A real file cut short: the header promises more data than is there.
	whole := filepath.Join(dir, "whole.safetensors")
	if err := safetensors.WriteFile(whole, []safetensors.Tensor{{Name: "t.weight", Shape: []int{4, 4}, Data: make([]float32, 16)}}, nil); err != nil {
		t.Fatal(err)
	}
	full, _ := os.ReadFile(whole)
	cut := filepath.Join(dir, "cut.safetensors")
	os.WriteFile(cut, full[:len(full)-1], 0o644)
	cases := []struct{ path, want string }{
		{short, "not a safetensors file: too short (3 bytes)"},
		{huge, "over the 104857600-byte limit"},
		{long, "header length 100 is larger than the rest of the 15-byte file"},
		{cut, `tensor "t.weight": data_offsets [0, 64] outside the 63-byte data section (truncated file?)`},
		{dir, "not a regular file"},
		{filepath.Join(dir, "absent.safetensors"), "no such file"},
	}
	for _, c := range cases {
		f, err := safetensors.Open(c.path)
		if err == nil {
			f.Close()
			t.Errorf("%s: opened", c.path)
			continue
		}
		if !strings.Contains(err.Error(), c.path) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %q, want %q naming %s", err, c.want, c.path)
		}
	}
	// A file truncated after Open fails on read with the file and tensor named.
	tr := filepath.Join(dir, "later.safetensors")
	os.WriteFile(tr, full, 0o644)
	f, err := safetensors.Open(tr)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Truncate(tr, int64(len(full)-8)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Float32("t.weight"); err == nil || !strings.Contains(err.Error(), tr) || !strings.Contains(err.Error(), `"t.weight"`) {
		t.Errorf("read of truncated file: %v", err)
	}
}

// TestAcceptedLayouts covers headers the reference writer may produce or
// that are harmless: empty tensors anywhere, gaps, scalars, metadata null,
// unknown entry fields, whitespace padding.
func TestAcceptedLayouts(t *testing.T) {
	data := make([]byte, 24)
	binary.LittleEndian.PutUint32(data[0:], math.Float32bits(1.5))
	binary.LittleEndian.PutUint32(data[4:], math.Float32bits(-2))
	binary.LittleEndian.PutUint32(data[12:], math.Float32bits(9))
	hdr := `  {"__metadata__":null,` +
		`"zz.empty":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},` + // empty, at another tensor's start
		`"a.pair":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},` +
		`"m.empty":{"dtype":"F16","shape":[3,0],"data_offsets":[2,2]},` + // empty, inside another tensor
		`"s.scalar":{"dtype":"F32","shape":[],"data_offsets":[12,16],"extra":"ignored"},` + // after a gap
		`"e.end":{"dtype":"BF16","shape":[0],"data_offsets":[24,24]}}    `
	p := writeFile(t, "ok.safetensors", hdr, data)
	f, err := safetensors.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(f.Tensors) != 5 || f.Metadata != nil {
		t.Fatalf("got %d tensors, metadata %v", len(f.Tensors), f.Metadata)
	}
	for name, want := range map[string][]float32{"a.pair": {1.5, -2}, "s.scalar": {9}, "zz.empty": {}, "m.empty": {}, "e.end": {}} {
		got, _, err := f.Float32(name)
		if err != nil || !golden.SameBits(got, want) {
			t.Errorf("%s: %v %v, want %v", name, got, err, want)
		}
	}
	if in, _ := f.Info("s.scalar"); len(in.Shape) != 0 || in.Numel() != 1 {
		t.Errorf("scalar info %+v", in)
	}
}

// f16Exact is the value of a binary16 pattern computed from its fields in
// float64 (every half is exactly representable there and in float32).
func f16Exact(b uint16) float64 {
	s := 1.0
	if b&0x8000 != 0 {
		s = -1
	}
	e := int(b>>10) & 0x1F
	m := float64(b & 0x3FF)
	switch e {
	case 0:
		return s * math.Ldexp(m, -24)
	case 31:
		if m == 0 {
			return math.Inf(int(s))
		}
		return math.NaN()
	}
	return s * math.Ldexp(1024+m, e-25)
}

// TestDecodeF16AllPatterns checks the F16 widening on all 65536 patterns
// against the value computed from the bit fields and against x448/float16,
// and that narrowing the result gives back the same bits.
func TestDecodeF16AllPatterns(t *testing.T) {
	raw := make([]byte, 2<<16)
	for i := range 1 << 16 {
		binary.LittleEndian.PutUint16(raw[2*i:], uint16(i))
	}
	dst := make([]float32, 1<<16)
	if err := safetensors.Decode(safetensors.F16, raw, dst); err != nil {
		t.Fatal(err)
	}
	bad := 0
	for i := range 1 << 16 {
		b := uint16(i)
		got := dst[i]
		want := f16Exact(b)
		lib := float16.Frombits(b).Float32()
		var ok bool
		if math.IsNaN(want) {
			// NaN stays NaN with its sign; like F16C hardware (vcvtph2ps)
			// and x448/float16, signalling NaNs come out quiet.
			ok = math.IsNaN(float64(got)) && math.Float32bits(got) == math.Float32bits(lib) &&
				math.Float32bits(got)>>31 == uint32(b>>15) && math.Float32bits(got)&(1<<22) != 0
		} else {
			ok = float64(got) == want && math.Float32bits(got) == math.Float32bits(lib) &&
				math.Signbit(float64(got)) == (b&0x8000 != 0) && float16.Fromfloat32(got).Bits() == b
		}
		if !ok {
			if bad == 0 {
				t.Errorf("pattern %#04x: got %g (%#08x), want %g", b, got, math.Float32bits(got), want)
			}
			bad++
		}
	}
	if bad != 0 {
		t.Errorf("%d of 65536 F16 patterns widen wrongly", bad)
	} else {
		t.Logf("all 65536 F16 patterns widen exactly (bit fields, x448/float16 and the round trip agree)")
	}
}

// TestDecodeParallel widens tensors large enough to be split across
// goroutines and compares every element with x448/float16 and the BF16 and
// F32 bit rules.
func TestDecodeParallel(t *testing.T) {
	const n = 3<<20 + 7 // uneven, so chunks differ in length
	raw := make([]byte, 4*n)
	for i := range raw {
		raw[i] = byte(i*2654435761>>13) ^ byte(i)
	}
	f16 := make([]float32, n)
	bf := make([]float32, n)
	f32 := make([]float32, n)
	if err := safetensors.Decode(safetensors.F16, raw[:2*n], f16); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.Decode(safetensors.BF16, raw[:2*n], bf); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.Decode(safetensors.F32, raw, f32); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		h := binary.LittleEndian.Uint16(raw[2*i:])
		if math.Float32bits(f16[i]) != math.Float32bits(float16.Frombits(h).Float32()) ||
			math.Float32bits(bf[i]) != uint32(h)<<16 ||
			math.Float32bits(f32[i]) != binary.LittleEndian.Uint32(raw[4*i:]) {
			t.Fatalf("element %d: f16 %g bf16 %g f32 %g", i, f16[i], bf[i], f32[i])
		}
	}
}

// TestDecodeBF16AndF8 checks BF16 on all patterns and the float8 types on
// all 256 bytes against values computed from the bit fields.
func TestDecodeBF16AndF8(t *testing.T) {
	raw := make([]byte, 2<<16)
	for i := range 1 << 16 {
		binary.LittleEndian.PutUint16(raw[2*i:], uint16(i))
	}
	dst := make([]float32, 1<<16)
	if err := safetensors.Decode(safetensors.BF16, raw, dst); err != nil {
		t.Fatal(err)
	}
	for i := range 1 << 16 {
		if math.Float32bits(dst[i]) != uint32(i)<<16 {
			t.Fatalf("BF16 %#04x -> %#08x", i, math.Float32bits(dst[i]))
		}
	}
	bytes256 := make([]byte, 256)
	for i := range bytes256 {
		bytes256[i] = byte(i)
	}
	e4 := make([]float32, 256)
	e5 := make([]float32, 256)
	if err := safetensors.Decode(safetensors.F8E4M3, bytes256, e4); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.Decode(safetensors.F8E5M2, bytes256, e5); err != nil {
		t.Fatal(err)
	}
	nans := 0
	for i := range 256 {
		// E5M2 is the top byte of a half.
		if w := f16Exact(uint16(i) << 8); !(float64(e5[i]) == w || math.IsNaN(w) && math.IsNaN(float64(e5[i]))) {
			t.Errorf("E5M2 %#02x -> %g, want %g", i, e5[i], w)
		}
		// E4M3FN: bias 7, subnormals at exponent 0, only S.1111.111 is NaN.
		s := 1.0
		if i&0x80 != 0 {
			s = -1
		}
		e, m := (i>>3)&0xF, float64(i&7)
		var w float64
		switch {
		case e == 15 && i&7 == 7:
			w = math.NaN()
		case e == 0:
			w = s * m / 8 / 64
		default:
			w = s * (1 + m/8) * math.Pow(2, float64(e-7))
		}
		if math.IsNaN(w) {
			nans++
			if !math.IsNaN(float64(e4[i])) {
				t.Errorf("E4M3 %#02x -> %g, want NaN", i, e4[i])
			}
		} else if float64(e4[i]) != w {
			t.Errorf("E4M3 %#02x -> %g, want %g", i, e4[i], w)
		}
	}
	if nans != 2 || e4[0x7E] != 448 || e4[0x01] != 1.0/512 {
		t.Errorf("E4M3: %d NaNs (want 2), max %g (want 448), min subnormal %g", nans, e4[0x7E], e4[0x01])
	}
}

func TestDecodeIntegers(t *testing.T) {
	le := binary.LittleEndian
	cases := []struct {
		dt   safetensors.DType
		raw  []byte
		want []float32
	}{
		{safetensors.I64, le.AppendUint64(le.AppendUint64(nil, uint64(1<<40)), ^uint64(0)), []float32{1 << 40, -1}},
		{safetensors.I32, le.AppendUint32(nil, uint32(0x80000000)), []float32{-2147483648}},
		{safetensors.I16, le.AppendUint16(nil, 0xFFFE), []float32{-2}},
		{safetensors.U64, le.AppendUint64(nil, ^uint64(0)), []float32{18446744073709551615}},
		{safetensors.U32, le.AppendUint32(nil, 0xFFFFFFFF), []float32{4294967295}},
		{safetensors.U16, le.AppendUint16(nil, 0xFFFE), []float32{65534}},
		{safetensors.F64, le.AppendUint64(nil, math.Float64bits(0.1)), []float32{0.1}},
	}
	for _, c := range cases {
		got := make([]float32, len(c.want))
		if err := safetensors.Decode(c.dt, c.raw, got); err != nil || !golden.SameBits(got, c.want) {
			t.Errorf("%s: %v %v, want %v", c.dt, got, err, c.want)
		}
	}
	if err := safetensors.Decode(safetensors.F32, make([]byte, 7), make([]float32, 2)); err == nil || !strings.Contains(err.Error(), "7 bytes for 2 F32 elements") {
		t.Errorf("length mismatch: %v", err)
	}
	if err := safetensors.Decode("X9", nil, nil); err == nil || !strings.Contains(err.Error(), `unsupported dtype X9`) {
		t.Errorf("unknown dtype: %v", err)
	}
}

// BenchmarkDecodeF16 measures fp16 -> fp32 widening of a 64 MiB (32 Mi
// element) tensor, the size class of the largest SDXL weights; bytes/s
// counts the fp16 input.
func BenchmarkDecodeF16(b *testing.B) {
	const n = 32 << 20
	raw := make([]byte, 2*n)
	for i := range n {
		// Realistic weights: small normal values with varied mantissas.
		binary.LittleEndian.PutUint16(raw[2*i:], float16.Fromfloat32(float32(i%4093-2046)*1e-4).Bits())
	}
	dst := make([]float32, n)
	b.SetBytes(2 * n)
	b.ResetTimer()
	for range b.N {
		if err := safetensors.Decode(safetensors.F16, raw, dst); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeBF16 is the same for bfloat16 (a shift, no table).
func BenchmarkDecodeBF16(b *testing.B) {
	const n = 32 << 20
	raw := make([]byte, 2*n)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	dst := make([]float32, n)
	b.SetBytes(2 * n)
	b.ResetTimer()
	for range b.N {
		if err := safetensors.Decode(safetensors.BF16, raw, dst); err != nil {
			b.Fatal(err)
		}
	}
}
