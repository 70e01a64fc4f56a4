// Package safetensors reads and writes the safetensors format
// (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
// length, a JSON header mapping tensor names to dtype, shape and byte
// offsets, then the raw little-endian data.
//
// Reading is strict and never panics on bad input: the header must be valid
// JSON under MaxHeaderSize, every dtype known, every offset pair inside the
// data section, sizes equal to product(shape) x dtype size, and no two
// tensors may overlap. Errors name the file and the tensor.
//
// Tensor data is read on demand with pread (os.File.ReadAt), one tensor at a
// time, so loading a multi-gigabyte checkpoint never holds a second full copy
// of it in memory.
package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"

	"github.com/x448/float16"

	"github.com/sdxl-go/sdxl/internal/atomicfile"
)

// MaxHeaderSize bounds the JSON header (the reference implementation uses
// 100 MB).
const MaxHeaderSize = 100 << 20

// DType is a safetensors element type name, e.g. "F32".
type DType string

const (
	F64  DType = "F64"
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U8   DType = "U8"
	Bool DType = "BOOL"
)

// Size returns the element size in bytes, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case F64, I64:
		return 8
	case F32, I32:
		return 4
	case F16, BF16, I16:
		return 2
	case I8, U8, Bool:
		return 1
	}
	return 0
}

// Info describes one tensor in a file.
type Info struct {
	Name  string
	DType DType
	Shape []int
	// Begin and End are byte offsets relative to the start of the data
	// section.
	Begin, End int64
}

// Numel is the number of elements.
func (i Info) Numel() int {
	n := 1
	for _, d := range i.Shape {
		n *= d
	}
	return n
}

// Header is a parsed and validated safetensors header.
type Header struct {
	Metadata map[string]string
	Tensors  map[string]Info
	// DataOffset is where the data section starts in the file.
	DataOffset int64
}

// Names returns the tensor names in sorted order.
func (h *Header) Names() []string {
	names := make([]string, 0, len(h.Tensors))
	for n := range h.Tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

type rawEntry struct {
	DType       DType   `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

// ParseHeader validates a header given the JSON bytes and the size of the data
// section that follows it. It is the fuzzed entry point.
func ParseHeader(js []byte, dataSize int64) (*Header, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(js, &raw); err != nil {
		return nil, fmt.Errorf("header is not a JSON object: %v", err)
	}
	h := &Header{Tensors: make(map[string]Info, len(raw))}
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &h.Metadata); err != nil {
				return nil, fmt.Errorf("__metadata__ must map strings to strings: %v", err)
			}
			continue
		}
		var e rawEntry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, fmt.Errorf("tensor %q: bad header entry: %v", name, err)
		}
		size := e.DType.Size()
		if size == 0 {
			return nil, fmt.Errorf("tensor %q: unknown dtype %q", name, e.DType)
		}
		if len(e.DataOffsets) != 2 {
			return nil, fmt.Errorf("tensor %q: data_offsets must have 2 entries, has %d", name, len(e.DataOffsets))
		}
		begin, end := e.DataOffsets[0], e.DataOffsets[1]
		if begin < 0 || end < begin || end > dataSize {
			return nil, fmt.Errorf("tensor %q: data_offsets [%d, %d] outside the %d-byte data section", name, begin, end, dataSize)
		}
		n := int64(1)
		shape := make([]int, len(e.Shape))
		for i, d := range e.Shape {
			if d < 0 || d > math.MaxInt32 {
				return nil, fmt.Errorf("tensor %q: bad dimension %d", name, d)
			}
			shape[i] = int(d)
			if d != 0 && n > math.MaxInt64/8/d {
				return nil, fmt.Errorf("tensor %q: shape %v overflows", name, e.Shape)
			}
			n *= d
		}
		if n*int64(size) != end-begin {
			return nil, fmt.Errorf("tensor %q: shape %v of %s needs %d bytes, data_offsets give %d", name, e.Shape, e.DType, n*int64(size), end-begin)
		}
		h.Tensors[name] = Info{Name: name, DType: e.DType, Shape: shape, Begin: begin, End: end}
	}
	// No overlaps: sort by start and check neighbours.
	infos := make([]Info, 0, len(h.Tensors))
	for _, in := range h.Tensors {
		infos = append(infos, in)
	}
	sort.Slice(infos, func(i, j int) bool {
		if infos[i].Begin != infos[j].Begin {
			return infos[i].Begin < infos[j].Begin
		}
		return infos[i].Name < infos[j].Name
	})
	for i := 1; i < len(infos); i++ {
		if infos[i].Begin < infos[i-1].End {
			return nil, fmt.Errorf("tensors %q and %q overlap", infos[i-1].Name, infos[i].Name)
		}
	}
	return h, nil
}

// File is an open safetensors file.
type File struct {
	Header
	path string
	f    *os.File
}

// Open reads and validates the header of a safetensors file.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	var lenBuf [8]byte
	if _, err := io.ReadFull(f, lenBuf[:]); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: not a safetensors file: too short (%d bytes)", path, st.Size())
	}
	hl := binary.LittleEndian.Uint64(lenBuf[:])
	if hl > MaxHeaderSize || int64(hl) > st.Size()-8 {
		f.Close()
		return nil, fmt.Errorf("%s: header length %d is larger than the file or the %d-byte limit", path, hl, MaxHeaderSize)
	}
	js := make([]byte, hl)
	if _, err := io.ReadFull(f, js); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: reading header: %v", path, err)
	}
	dataOff := int64(8 + hl)
	h, err := ParseHeader(js, st.Size()-dataOff)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	h.DataOffset = dataOff
	return &File{Header: *h, path: path, f: f}, nil
}

// Path returns the file's path.
func (f *File) Path() string { return f.path }

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

// Info returns the description of a tensor.
func (f *File) Info(name string) (Info, bool) {
	in, ok := f.Tensors[name]
	return in, ok
}

// Raw reads a tensor's bytes into buf (grown if needed) and returns them.
func (f *File) Raw(name string, buf []byte) ([]byte, error) {
	in, ok := f.Tensors[name]
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", f.path, name)
	}
	n := int(in.End - in.Begin)
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := f.f.ReadAt(buf, f.DataOffset+in.Begin); err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %v", f.path, name, err)
	}
	return buf, nil
}

// Float32 reads a tensor and converts it to float32. F32, F16, BF16, F64 and
// integer types are accepted; F16 and BF16 widen exactly.
func (f *File) Float32(name string) ([]float32, []int, error) {
	in, ok := f.Tensors[name]
	if !ok {
		return nil, nil, fmt.Errorf("%s: no tensor %q", f.path, name)
	}
	out := make([]float32, in.Numel())
	if err := f.ReadFloat32(name, out, nil); err != nil {
		return nil, nil, err
	}
	return out, append([]int(nil), in.Shape...), nil
}

// ReadFloat32 converts a tensor into dst (len must equal its element
// count), using scratch (may be nil) as the read buffer.
func (f *File) ReadFloat32(name string, dst []float32, scratch []byte) error {
	in, ok := f.Tensors[name]
	if !ok {
		return fmt.Errorf("%s: no tensor %q", f.path, name)
	}
	if len(dst) != in.Numel() {
		return fmt.Errorf("%s: tensor %q has %d elements, destination %d", f.path, name, in.Numel(), len(dst))
	}
	raw, err := f.Raw(name, scratch)
	if err != nil {
		return err
	}
	if err := Decode(in.DType, raw, dst); err != nil {
		return fmt.Errorf("%s: tensor %q: %v", f.path, name, err)
	}
	return nil
}

// f16Table maps every half-precision bit pattern to its float32 value; it
// makes fp16 checkpoint widening a table lookup.
var f16Table = func() *[65536]float32 {
	var t [65536]float32
	for i := range t {
		t[i] = float16.Frombits(uint16(i)).Float32()
	}
	return &t
}()

// Decode converts little-endian raw data of dtype dt into float32.
func Decode(dt DType, raw []byte, dst []float32) error {
	if len(raw) != len(dst)*dt.Size() {
		return fmt.Errorf("%d bytes for %d %s elements", len(raw), len(dst), dt)
	}
	le := binary.LittleEndian
	switch dt {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = f16Table[le.Uint16(raw[2*i:])]
		}
	case BF16:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(le.Uint16(raw[2*i:])) << 16)
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(le.Uint64(raw[8*i:])))
		}
	case I64:
		for i := range dst {
			dst[i] = float32(int64(le.Uint64(raw[8*i:])))
		}
	case I32:
		for i := range dst {
			dst[i] = float32(int32(le.Uint32(raw[4*i:])))
		}
	case I16:
		for i := range dst {
			dst[i] = float32(int16(le.Uint16(raw[2*i:])))
		}
	case I8:
		for i := range dst {
			dst[i] = float32(int8(raw[i]))
		}
	case U8, Bool:
		for i := range dst {
			dst[i] = float32(raw[i])
		}
	default:
		return errors.New("unsupported dtype " + string(dt))
	}
	return nil
}

// Tensor is a named float32 tensor for writing.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// WriteFile writes float32 tensors atomically (to a temporary file in the
// same directory, then renamed), so a failed write never leaves a partial
// file at path.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) error {
	type entry struct {
		DType       DType   `json:"dtype"`
		Shape       []int   `json:"shape"`
		DataOffsets []int64 `json:"data_offsets"`
	}
	hdr := map[string]any{}
	if len(metadata) > 0 {
		hdr["__metadata__"] = metadata
	}
	var off int64
	seen := map[string]bool{}
	for _, t := range tensors {
		if seen[t.Name] {
			return fmt.Errorf("safetensors: duplicate tensor name %q", t.Name)
		}
		seen[t.Name] = true
		n := 1
		for _, d := range t.Shape {
			n *= d
		}
		if n != len(t.Data) {
			return fmt.Errorf("safetensors: tensor %q: shape %v has %d elements, data %d", t.Name, t.Shape, n, len(t.Data))
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		hdr[t.Name] = entry{F32, shape, []int64{off, off + int64(4*n)}}
		off += int64(4 * n)
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return err
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	return atomicfile.Write(path, true, func(w io.Writer) error {
		var lb [8]byte
		binary.LittleEndian.PutUint64(lb[:], uint64(len(js)))
		if _, err := w.Write(lb[:]); err != nil {
			return err
		}
		if _, err := w.Write(js); err != nil {
			return err
		}
		buf := make([]byte, 0, 1<<16)
		for _, t := range tensors {
			for _, v := range t.Data {
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
				if len(buf) == cap(buf) {
					if _, err := w.Write(buf); err != nil {
						return err
					}
					buf = buf[:0]
				}
			}
		}
		_, err := w.Write(buf)
		return err
	})
}
