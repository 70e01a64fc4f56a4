// Package safetensors reads and writes the safetensors format
// (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
// length, a JSON header mapping tensor names to dtype, shape and byte
// offsets, then the raw little-endian data.
//
// Reading is strict and never panics on bad input: the header must be one
// valid UTF-8 JSON object under MaxHeaderSize with no repeated key, every
// entry must have a known dtype, a shape and two data_offsets inside the
// data section, sizes must equal product(shape) x dtype size, and no two
// tensors may share a byte. Errors name the file and the tensor.
//
// The reader is more lenient than the reference implementation in one way:
// unused gaps between tensors (or after the last one) are accepted, since
// they cannot make a tensor read wrong bytes.
//
// Tensor data is read on demand with pread (os.File.ReadAt), one tensor at a
// time, so loading a multi-gigabyte checkpoint never holds a second full copy
// of it in memory.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sort"
	"sync"
	"unicode/utf8"

	"github.com/x448/float16"

	"github.com/sdxl-go/sdxl/internal/atomicfile"
	"github.com/sdxl-go/sdxl/internal/regfile"
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
	U64  DType = "U64"
	U32  DType = "U32"
	U16  DType = "U16"
	U8   DType = "U8"
	Bool DType = "BOOL"
	// F8E4M3 is the "fn" float8 of torch.float8_e4m3fn: bias 7, no
	// infinities, S.1111.111 is NaN, largest finite value 448.
	F8E4M3 DType = "F8_E4M3"
	// F8E5M2 is torch.float8_e5m2: the upper byte of an IEEE half.
	F8E5M2 DType = "F8_E5M2"
)

// Size returns the element size in bytes, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case F64, I64, U64:
		return 8
	case F32, I32, U32:
		return 4
	case F16, BF16, I16, U16:
		return 2
	case I8, U8, Bool, F8E4M3, F8E5M2:
		return 1
	}
	return 0
}

// IsFloat reports whether d is a floating-point type (F64, F32, F16,
// BF16, F8_E4M3, F8_E5M2): the types model weights may be stored in.
func (d DType) IsFloat() bool {
	switch d {
	case F64, F32, F16, BF16, F8E4M3, F8E5M2:
		return true
	}
	return false
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

// rawEntry is one tensor's header entry as written. The fields are
// pointers so that a missing or null field is told apart from a zero one.
// Unknown fields are ignored, as the reference implementation does.
type rawEntry struct {
	DType       *DType   `json:"dtype"`
	Shape       *[]int64 `json:"shape"`
	DataOffsets *[]int64 `json:"data_offsets"`
}

// maxDim bounds a single dimension; it keeps element counts far from int64
// overflow while allowing any real tensor.
const maxDim = math.MaxInt32

// topLevel splits the header into its top-level keys and raw values,
// rejecting anything but a single JSON object and any repeated key
// (encoding/json would silently keep the last one, so two entries could
// claim one name).
func topLevel(js []byte) ([]string, map[string]json.RawMessage, error) {
	if !utf8.Valid(js) {
		// encoding/json would replace invalid bytes by U+FFFD, silently
		// renaming tensors (and possibly merging two names into one).
		return nil, nil, errors.New("header is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, fmt.Errorf("header is not a JSON object: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, fmt.Errorf("header is not a JSON object (it starts with %s)", describeToken(tok))
	}
	var keys []string
	vals := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("header is not a JSON object: %v", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, nil, fmt.Errorf("header is not a JSON object: key %v", tok)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, fmt.Errorf("header is not a JSON object: value of %q: %v", key, err)
		}
		if _, dup := vals[key]; dup {
			return nil, nil, fmt.Errorf("header names %q twice", key)
		}
		vals[key] = v
		keys = append(keys, key)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, nil, fmt.Errorf("header is not a JSON object: %v", err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, nil, fmt.Errorf("header has trailing data: %v", err)
		}
		return nil, nil, fmt.Errorf("header has trailing data after the object: %s", describeToken(tok))
	}
	return keys, vals, nil
}

func describeToken(tok json.Token) string {
	switch t := tok.(type) {
	case nil:
		return "null"
	case json.Delim:
		return fmt.Sprintf("%q", string(t))
	case string:
		return fmt.Sprintf("the string %q", t)
	default:
		return fmt.Sprintf("%v", t)
	}
}

// ParseHeader validates a header given the JSON bytes and the size of the data
// section that follows it. It is the fuzzed entry point. Errors name the
// tensor at fault; Open adds the file name.
func ParseHeader(js []byte, dataSize int64) (*Header, error) {
	keys, raw, err := topLevel(js)
	if err != nil {
		return nil, err
	}
	h := &Header{Tensors: make(map[string]Info, len(raw))}
	for _, name := range keys {
		msg := raw[name]
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &h.Metadata); err != nil {
				return nil, fmt.Errorf("__metadata__ must map strings to strings: %v", err)
			}
			continue
		}
		in, err := parseEntry(name, msg, dataSize)
		if err != nil {
			return nil, err
		}
		h.Tensors[name] = in
	}
	// No two tensors may share a byte. Empty tensors occupy no bytes, so
	// they may sit anywhere in range (even at the same offset as a
	// neighbour); among the others, sorted by start, any overlap shows up
	// between neighbours.
	infos := make([]Info, 0, len(h.Tensors))
	for _, in := range h.Tensors {
		if in.End > in.Begin {
			infos = append(infos, in)
		}
	}
	sort.Slice(infos, func(i, j int) bool {
		if infos[i].Begin != infos[j].Begin {
			return infos[i].Begin < infos[j].Begin
		}
		return infos[i].Name < infos[j].Name
	})
	for i := 1; i < len(infos); i++ {
		if infos[i].Begin < infos[i-1].End {
			a, b := infos[i-1], infos[i]
			return nil, fmt.Errorf("tensors %q [%d, %d] and %q [%d, %d] overlap", a.Name, a.Begin, a.End, b.Name, b.Begin, b.End)
		}
	}
	return h, nil
}

// parseEntry validates one tensor entry.
func parseEntry(name string, msg json.RawMessage, dataSize int64) (Info, error) {
	var e rawEntry
	if err := json.Unmarshal(msg, &e); err != nil {
		return Info{}, fmt.Errorf("tensor %q: bad header entry: %v", name, err)
	}
	switch {
	case e.DType == nil:
		return Info{}, fmt.Errorf("tensor %q: header entry has no dtype", name)
	case e.Shape == nil:
		return Info{}, fmt.Errorf("tensor %q: header entry has no shape", name)
	case e.DataOffsets == nil:
		return Info{}, fmt.Errorf("tensor %q: header entry has no data_offsets", name)
	}
	dt := *e.DType
	size := dt.Size()
	if size == 0 {
		return Info{}, fmt.Errorf("tensor %q: unknown dtype %q", name, dt)
	}
	offs := *e.DataOffsets
	if len(offs) != 2 {
		return Info{}, fmt.Errorf("tensor %q: data_offsets must have 2 entries, has %d", name, len(offs))
	}
	begin, end := offs[0], offs[1]
	if begin < 0 || end < begin || end > dataSize {
		if begin >= 0 && end >= begin {
			return Info{}, fmt.Errorf("tensor %q: data_offsets [%d, %d] outside the %d-byte data section (truncated file?)", name, begin, end, dataSize)
		}
		return Info{}, fmt.Errorf("tensor %q: bad data_offsets [%d, %d]", name, begin, end)
	}
	n := int64(1)
	shape := make([]int, len(*e.Shape))
	for i, d := range *e.Shape {
		if d < 0 || d > maxDim {
			return Info{}, fmt.Errorf("tensor %q: bad dimension %d in shape %v", name, d, *e.Shape)
		}
		shape[i] = int(d)
		// Keep n*size representable: n <= MaxInt64/8 throughout.
		if d != 0 && n > math.MaxInt64/8/d {
			return Info{}, fmt.Errorf("tensor %q: shape %v overflows", name, *e.Shape)
		}
		n *= d
	}
	if n*int64(size) != end-begin {
		return Info{}, fmt.Errorf("tensor %q: shape %v of %s needs %d bytes, data_offsets give %d", name, *e.Shape, dt, n*int64(size), end-begin)
	}
	return Info{Name: name, DType: dt, Shape: shape, Begin: begin, End: end}, nil
}

// File is an open safetensors file.
type File struct {
	Header
	path string
	f    *os.File
}

// Open reads and validates the header of a safetensors file. The file stays
// open for Raw/ReadFloat32 until Close; File's read methods are safe for
// concurrent use (they use pread).
//
// Only a regular file (or a symbolic link to one) is opened: a named pipe,
// a device or a folder is refused before open(2), which blocks on a pipe.
func Open(path string) (*File, error) {
	f, err := regfile.Open(path)
	if err != nil {
		return nil, err
	}
	h, err := readHeader(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &File{Header: *h, path: path, f: f}, nil
}

// readHeader reads and validates the length prefix and header of f.
func readHeader(f *os.File, path string) (*Header, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a safetensors file: not a regular file (%v)", path, st.Mode().Type())
	}
	size := st.Size()
	if size < 8 {
		return nil, fmt.Errorf("%s: not a safetensors file: too short (%d bytes)", path, size)
	}
	var lenBuf [8]byte
	if _, err := f.ReadAt(lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("%s: reading the header length: %v", path, err)
	}
	hl := binary.LittleEndian.Uint64(lenBuf[:])
	if hl > MaxHeaderSize {
		return nil, fmt.Errorf("%s: header length %d is over the %d-byte limit (not a safetensors file?)", path, hl, MaxHeaderSize)
	}
	if int64(hl) > size-8 {
		return nil, fmt.Errorf("%s: header length %d is larger than the rest of the %d-byte file (truncated?)", path, hl, size)
	}
	js := make([]byte, hl)
	if _, err := f.ReadAt(js, 8); err != nil {
		return nil, fmt.Errorf("%s: reading header: %v", path, err)
	}
	dataOff := int64(8 + hl)
	h, err := ParseHeader(js, size-dataOff)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	h.DataOffset = dataOff
	return h, nil
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
	shape := make([]int, len(in.Shape))
	copy(shape, in.Shape)
	return out, shape, nil
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
// makes fp16 checkpoint widening a table lookup. It is filled once and only
// read afterwards.
var f16Table = func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		t[i] = float16.Frombits(uint16(i)).Float32()
	}
	return &t
}()

// f8Tables hold the float32 value of every float8 byte (E4M3FN, E5M2).
var f8E4M3Table, f8E5M2Table = func() (*[256]float32, *[256]float32) {
	var a, b [256]float32
	for i := range 256 {
		a[i] = f8E4M3ToFloat32(uint8(i))
		// E5M2 is a half with the low 8 mantissa bits dropped.
		b[i] = f16Table[uint16(i)<<8]
	}
	return &a, &b
}()

// f8E4M3ToFloat32 decodes one float8_e4m3fn value: sign, 4 exponent bits
// (bias 7), 3 mantissa bits; exponent 0 is subnormal; S.1111.111 is NaN and
// there are no infinities.
func f8E4M3ToFloat32(b uint8) float32 {
	sign := 1.0
	if b&0x80 != 0 {
		sign = -1
	}
	e := int(b>>3) & 0xF
	m := float64(b & 7)
	switch {
	case e == 0xF && b&7 == 7:
		return float32(math.Copysign(math.NaN(), sign))
	case e == 0:
		return float32(sign * math.Ldexp(m/8, -6))
	}
	return float32(sign * math.Ldexp(1+m/8, e-7))
}

// Decode converts little-endian raw data of dtype dt into float32. F16,
// BF16 and the float8 types widen exactly; F64 rounds to nearest; integers
// convert as Go's float32(x) does (exact up to 2^24 in magnitude).
func Decode(dt DType, raw []byte, dst []float32) error {
	if dt.Size() == 0 {
		return errors.New("unsupported dtype " + string(dt))
	}
	if len(raw) != len(dst)*dt.Size() {
		return fmt.Errorf("%d bytes for %d %s elements", len(raw), len(dst), dt)
	}
	le := binary.LittleEndian
	switch dt {
	case F32:
		parallel(len(dst), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				dst[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
			}
		})
	case F16:
		parallel(len(dst), func(lo, hi int) { decodeF16(raw[2*lo:2*hi], dst[lo:hi]) })
	case BF16:
		parallel(len(dst), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				dst[i] = math.Float32frombits(uint32(le.Uint16(raw[2*i:])) << 16)
			}
		})
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
	case U64:
		for i := range dst {
			dst[i] = float32(le.Uint64(raw[8*i:]))
		}
	case U32:
		for i := range dst {
			dst[i] = float32(le.Uint32(raw[4*i:]))
		}
	case U16:
		for i := range dst {
			dst[i] = float32(le.Uint16(raw[2*i:]))
		}
	case U8, Bool:
		for i := range dst {
			dst[i] = float32(raw[i])
		}
	case F8E4M3:
		for i := range dst {
			dst[i] = f8E4M3Table[raw[i]]
		}
	case F8E5M2:
		for i := range dst {
			dst[i] = f8E5M2Table[raw[i]]
		}
	default:
		return errors.New("unsupported dtype " + string(dt))
	}
	return nil
}

// parallelMin is the element count below which Decode stays on one
// goroutine: smaller tensors decode in well under a millisecond.
const parallelMin = 1 << 20

// parallel runs fn over [0, n) in GOMAXPROCS contiguous chunks when n is
// large; weights of a multi-gigabyte checkpoint then widen at memory speed
// rather than one core's speed.
func parallel(n int, fn func(lo, hi int)) {
	workers := runtime.GOMAXPROCS(0)
	if n < parallelMin || workers < 2 {
		fn(0, n)
		return
	}
	chunk := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// decodeF16 widens little-endian halves; len(raw) must be 2*len(dst). The
// re-slicing lets the compiler drop the bounds checks in the loop.
func decodeF16(raw []byte, dst []float32) {
	raw = raw[:2*len(dst)]
	t := f16Table
	for i := range dst {
		dst[i] = t[uint16(raw[2*i])|uint16(raw[2*i+1])<<8]
	}
}

// Tensor is a named float32 tensor for writing.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// RawTensor is a named tensor of any dtype for writing: Data holds its
// little-endian bytes, len(Data) = product(Shape) x DType.Size().
type RawTensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// outTensor is one tensor on its way to a file: the header facts plus a
// function that streams its bytes.
type outTensor struct {
	name  string
	dtype DType
	shape []int
	size  int64
	emit  func(w io.Writer, buf []byte) error
}

// checkOut validates a tensor to be written: a readable name, a known
// dtype, non-negative dimensions and a byte count matching the shape.
func checkOut(name string, dt DType, shape []int, nbytes int64) error {
	if name == "__metadata__" {
		return fmt.Errorf("safetensors: %q is reserved for the metadata and cannot name a tensor", name)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("safetensors: tensor name %q is not valid UTF-8", name)
	}
	if dt.Size() == 0 {
		return fmt.Errorf("safetensors: tensor %q: unknown dtype %q", name, dt)
	}
	n := int64(1)
	for _, d := range shape {
		if d < 0 || d > maxDim {
			return fmt.Errorf("safetensors: tensor %q: bad dimension %d in shape %v", name, d, shape)
		}
		if d != 0 && n > math.MaxInt64/8/int64(d) {
			return fmt.Errorf("safetensors: tensor %q: shape %v overflows", name, shape)
		}
		n *= int64(d)
	}
	if n*int64(dt.Size()) != nbytes {
		return fmt.Errorf("safetensors: tensor %q: shape %v of %s needs %d bytes, data has %d", name, shape, dt, n*int64(dt.Size()), nbytes)
	}
	return nil
}

// WriteFile writes float32 tensors atomically (to a temporary file in the
// same directory, then renamed), so a failed write never leaves a partial
// file at path. Tensors are stored in the given order; an existing file is
// replaced.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) error {
	return WriteFileExclusive(path, tensors, metadata, true)
}

// WriteFileExclusive is WriteFile that, unless overwrite is set, fails
// without touching anything when path already exists.
func WriteFileExclusive(path string, tensors []Tensor, metadata map[string]string, overwrite bool) error {
	out, err := float32Out(tensors)
	if err != nil {
		return err
	}
	return write(path, out, metadata, overwrite)
}

// Encoder returns a function that writes float32 tensors as one
// safetensors file to w, for callers that place the file themselves (see
// internal/atomicfile.Stage); the header is checked at once.
func Encoder(tensors []Tensor, metadata map[string]string) (func(w io.Writer) error, error) {
	out, err := float32Out(tensors)
	if err != nil {
		return nil, err
	}
	return encoder(out, metadata)
}

// float32Out prepares float32 tensors for writing.
func float32Out(tensors []Tensor) ([]outTensor, error) {
	out := make([]outTensor, len(tensors))
	for i, t := range tensors {
		if err := checkOut(t.Name, F32, t.Shape, 4*int64(len(t.Data))); err != nil {
			return nil, err
		}
		data := t.Data
		out[i] = outTensor{t.Name, F32, t.Shape, 4 * int64(len(data)), func(w io.Writer, buf []byte) error {
			for len(data) > 0 {
				n := min(len(data), len(buf)/4)
				for j, v := range data[:n] {
					binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(v))
				}
				if _, err := w.Write(buf[:4*n]); err != nil {
					return err
				}
				data = data[n:]
			}
			return nil
		}}
	}
	return out, nil
}

// WriteRawFile writes tensors of any dtype atomically, like WriteFile.
func WriteRawFile(path string, tensors []RawTensor, metadata map[string]string) error {
	out := make([]outTensor, len(tensors))
	for i, t := range tensors {
		if err := checkOut(t.Name, t.DType, t.Shape, int64(len(t.Data))); err != nil {
			return err
		}
		data := t.Data
		out[i] = outTensor{t.Name, t.DType, t.Shape, int64(len(data)), func(w io.Writer, _ []byte) error {
			_, err := w.Write(data)
			return err
		}}
	}
	return write(path, out, metadata, true)
}

// write lays out the header (tensors back to back in the given order, the
// JSON padded with spaces to a multiple of 8 bytes so the data section is
// 8-aligned, as the reference writer does) and streams the data.
func write(path string, tensors []outTensor, metadata map[string]string, overwrite bool) error {
	fill, err := encoder(tensors, metadata)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, overwrite, fill)
}

// encoder checks and lays out the header and returns the function that
// writes the file.
func encoder(tensors []outTensor, metadata map[string]string) (func(w io.Writer) error, error) {
	type entry struct {
		DType       DType   `json:"dtype"`
		Shape       []int   `json:"shape"`
		DataOffsets []int64 `json:"data_offsets"`
	}
	hdr := map[string]any{}
	if len(metadata) > 0 {
		for k, v := range metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, fmt.Errorf("safetensors: metadata %q: not valid UTF-8", k)
			}
		}
		hdr["__metadata__"] = metadata
	}
	var off int64
	for _, t := range tensors {
		if _, dup := hdr[t.name]; dup {
			return nil, fmt.Errorf("safetensors: duplicate tensor name %q", t.name)
		}
		shape := t.shape
		if shape == nil {
			shape = []int{}
		}
		hdr[t.name] = entry{t.dtype, shape, []int64{off, off + t.size}}
		off += t.size
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return nil, err
	}
	if len(js) > MaxHeaderSize {
		return nil, fmt.Errorf("safetensors: header of %d bytes is over the %d-byte limit", len(js), MaxHeaderSize)
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	return func(w io.Writer) error {
		var lb [8]byte
		binary.LittleEndian.PutUint64(lb[:], uint64(len(js)))
		if _, err := w.Write(lb[:]); err != nil {
			return err
		}
		if _, err := w.Write(js); err != nil {
			return err
		}
		buf := make([]byte, 1<<16)
		for _, t := range tensors {
			if err := t.emit(w, buf); err != nil {
				return err
			}
		}
		return nil
	}, nil
}
