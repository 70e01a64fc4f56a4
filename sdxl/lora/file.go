package lora

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sdxl-go/sdxl/safetensors"
)

// File is a parsed LoRA file: its layers, each a set of tensors that change
// one weight of the model. Every key has been classified and every layer
// checked for completeness; mapping layers onto a model's parameters happens
// when the file is applied (see Applier), since kohya names and shapes can
// only be checked against a model.
type File struct {
	// Path is the file's path as given (used in every error message).
	Path string
	// Layers are sorted by component and module.
	Layers []*Layer
	// Warnings are non-fatal findings (ignored dora_scale tensors), one
	// sentence each, naming the file.
	Warnings []string

	data   []byte // the whole file
	header *safetensors.Header
	peft   map[Component]*peftConfig // from lora_adapter_metadata, when present
}

// Load reads and parses a LoRA .safetensors file.
func Load(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("LoRA %s: %w", path, err)
	}
	defer f.Close()
	return read(path, f)
}

// read reads an opened file whole and parses it.
func read(path string, f *os.File) (*File, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("LoRA %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("LoRA %s: not a regular file", path)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("LoRA %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse parses the bytes of a LoRA .safetensors file; path names it in
// errors. The File keeps data.
func Parse(path string, data []byte) (*File, error) {
	h, err := parseHeader(data)
	if err != nil {
		return nil, fmt.Errorf("LoRA %s: %v", path, err)
	}
	f := &File{Path: path, data: data, header: h}
	if f.peft, err = parsePEFTMetadata(h.Metadata); err != nil {
		return nil, fmt.Errorf("LoRA %s: %v", path, err)
	}
	if err := f.buildLayers(); err != nil {
		return nil, fmt.Errorf("LoRA %s: %v", path, err)
	}
	return f, nil
}

// parseHeader reads the length-prefixed JSON header of an in-memory
// safetensors file and validates it against the data that follows (so a
// truncated file fails here, naming the first tensor out of range).
func parseHeader(data []byte) (*safetensors.Header, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("not a safetensors file: %d bytes", len(data))
	}
	n := binary.LittleEndian.Uint64(data)
	if n > safetensors.MaxHeaderSize || n > uint64(len(data)-8) {
		return nil, fmt.Errorf("not a safetensors file (or truncated): header length %d, file %d bytes", n, len(data))
	}
	h, err := safetensors.ParseHeader(data[8:8+n], int64(len(data))-8-int64(n))
	if err != nil {
		return nil, err
	}
	h.DataOffset = 8 + int64(n)
	return h, nil
}

// SHA256 is the hex SHA-256 of the whole file.
func (f *File) SHA256() string {
	s := sha256.Sum256(f.data)
	return hex.EncodeToString(s[:])
}

// AddnetHash is the hex SHA-256 of the file after its header, the "addnet"
// hash AUTOMATIC1111 shows as a LoRA's hash (modules/hashes.py
// addnet_hash_safetensors); its first 12 digits go into "Lora hashes".
func (f *File) AddnetHash() string {
	s := sha256.Sum256(f.data[f.header.DataOffset:])
	return hex.EncodeToString(s[:])
}

// Format names the key layouts found, e.g. "kohya" or "diffusers+lycoris",
// from the layers' formats (sorted, joined by "+"), e.g.
// "kohya+kohya-sgm" for sd-scripts' SDXL files (text encoders named after
// transformers' modules, the UNet after the original SGM modules).
func (f *File) Format() string {
	seen := map[string]bool{}
	var out []string
	for _, l := range f.Layers {
		if !seen[l.Format] {
			seen[l.Format] = true
			out = append(out, l.Format)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "+")
}

// Name is the file's base name without its extension, the name
// AUTOMATIC1111 shows for a LoRA.
func (f *File) Name() string {
	b := filepath.Base(f.Path)
	return strings.TrimSuffix(b, filepath.Ext(b))
}

// tensor reads one tensor of the file as float32 with its shape.
func (f *File) tensor(key string) ([]float32, []int, error) {
	in, ok := f.header.Tensors[key]
	if !ok {
		return nil, nil, fmt.Errorf("LoRA %s: no tensor %q", f.Path, key)
	}
	raw := f.data[f.header.DataOffset+in.Begin : f.header.DataOffset+in.End]
	out := make([]float32, in.Numel())
	if err := safetensors.Decode(in.DType, raw, out); err != nil {
		return nil, nil, fmt.Errorf("LoRA %s: tensor %q: %v", f.Path, key, err)
	}
	return out, in.Shape, nil
}
