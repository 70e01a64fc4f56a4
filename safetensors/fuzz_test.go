package safetensors_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/sdxl-go/sdxl/safetensors"
)

// headerSeeds are valid and invalid headers covering every rule; the
// fuzzers start from them (plus the files in testdata/fuzz).
var headerSeeds = []string{
	`{}`,
	`{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}`,
	`{"a":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[6,8]}}`,
	`{"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`,
	`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`,
	`{"w":{"dtype":"F64","shape":[2147483647,2147483647,2147483647],"data_offsets":[0,8]}}`,
	`{"w":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"__metadata__":{"a":"b"}}`,
	`{"w":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}}`,
	`{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`,
	`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`,
	`{"__metadata__":{"a":1}}`,
	`[1,2,3]`,
	`null`,
	"{\"\xff\":{}}",
}

// checkHeader asserts the invariants of an accepted header.
func checkHeader(t *testing.T, h *safetensors.Header, dataSize int64) {
	t.Helper()
	var spans [][2]int64
	for name, in := range h.Tensors {
		if in.Name != name || in.DType.Size() == 0 || in.Begin < 0 || in.End < in.Begin || in.End > dataSize {
			t.Fatalf("accepted bad entry %q: %+v (data %d bytes)", name, in, dataSize)
		}
		if int64(in.Numel())*int64(in.DType.Size()) != in.End-in.Begin {
			t.Fatalf("accepted %q with %d elements of %s in %d bytes", name, in.Numel(), in.DType, in.End-in.Begin)
		}
		if in.End > in.Begin {
			spans = append(spans, [2]int64{in.Begin, in.End})
		}
	}
	for i := range spans {
		for j := range i {
			if spans[i][0] < spans[j][1] && spans[j][0] < spans[i][1] {
				t.Fatalf("accepted overlapping spans %v and %v", spans[i], spans[j])
			}
		}
	}
}

// FuzzParseHeader feeds arbitrary header bytes and data sizes to the header
// validator: it must never panic, and whatever it accepts must be sound.
func FuzzParseHeader(f *testing.F) {
	for _, s := range headerSeeds {
		f.Add([]byte(s), int64(16))
	}
	f.Fuzz(func(t *testing.T, js []byte, dataSize int64) {
		h, err := safetensors.ParseHeader(js, dataSize)
		if err != nil {
			return
		}
		if len(h.Tensors) > 0 && dataSize < 0 {
			t.Fatalf("accepted tensors with a negative data size")
		}
		// Quadratic check; keep it to fuzz-sized headers.
		if len(h.Tensors) <= 2000 {
			checkHeader(t, h, dataSize)
		}
	})
}

// FuzzOpen writes arbitrary bytes to a file and opens it: Open must never
// panic, and every tensor of an accepted file must read.
func FuzzOpen(f *testing.F) {
	for _, s := range headerSeeds {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(s)))
		b = append(b, s...)
		f.Add(append(b, make([]byte, 16)...))
	}
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3})
	f.Add(binary.LittleEndian.AppendUint64(nil, 1<<63))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "fuzz.safetensors")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		sf, err := safetensors.Open(p)
		if err != nil {
			return
		}
		defer sf.Close()
		if sf.DataOffset < 8 || sf.DataOffset > int64(len(data)) {
			t.Fatalf("data offset %d in a %d-byte file", sf.DataOffset, len(data))
		}
		if len(sf.Tensors) <= 2000 {
			checkHeader(t, &sf.Header, int64(len(data))-sf.DataOffset)
		}
		for _, name := range sf.Names() {
			got, shape, err := sf.Float32(name)
			if err != nil {
				t.Fatalf("accepted tensor %q does not read: %v", name, err)
			}
			n := 1
			for _, d := range shape {
				n *= d
			}
			if len(got) != n {
				t.Fatalf("tensor %q: %d values for shape %v", name, len(got), shape)
			}
		}
	})
}
