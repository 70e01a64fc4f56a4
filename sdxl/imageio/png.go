package imageio

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/sdxl-go/sdxl/internal/atomicfile"
	"github.com/sdxl-go/sdxl/internal/regfile"
)

// Chunk keywords this package writes.
const (
	// ParametersKey holds AUTOMATIC1111-style generation parameters, the text
	// most image tools show.
	ParametersKey = "parameters"
	// RunKey holds the JSON document of the run (flags, model files and
	// hashes, versions), enough to repeat it from the image alone.
	RunKey = "sdxl-run"
)

// TextChunk is one PNG text chunk: a keyword and its text (a Go string, so
// UTF-8 in memory whatever chunk type carries it in the file).
type TextChunk struct {
	Key   string
	Value string
}

var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// maxChunkLen is the PNG limit on a chunk's data length (2^31-1).
const maxChunkLen = 1<<31 - 1

// checkKeyword enforces the PNG keyword rules: 1-79 Latin-1 printable
// characters, no leading, trailing or consecutive spaces.
func checkKeyword(k string) error {
	if k == "" || len(k) > 79 {
		return fmt.Errorf("png text keyword %q must be 1 to 79 characters", k)
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c < 32 || c > 126 {
			// Latin-1 letters above 160 are legal but need an encoding we do
			// not want in keys; keep keys ASCII.
			return fmt.Errorf("png text keyword %q must be printable ASCII", k)
		}
	}
	if k[0] == ' ' || k[len(k)-1] == ' ' || strings.Contains(k, "  ") {
		return fmt.Errorf("png text keyword %q has leading, trailing or double spaces", k)
	}
	if k == "prompt" || k == "workflow" {
		// ComfyUI loads these as node graphs when an image is dropped on it.
		return fmt.Errorf("png text keyword %q is ComfyUI's graph chunk; use another name", k)
	}
	return nil
}

// latin1 returns s encoded as ISO 8859-1 and whether that was possible
// (every rune below 256), as Pillow's PngInfo.add_text decides between tEXt
// and iTXt.
func latin1(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xFF {
			return nil, false
		}
		out = append(out, byte(r))
	}
	return out, true
}

// chunkData encodes one text chunk's type and data: tEXt when the text is
// Latin-1, otherwise an uncompressed iTXt with empty language and translated
// keyword (what Pillow writes).
func chunkData(c TextChunk) (typ string, data []byte, err error) {
	if err := checkKeyword(c.Key); err != nil {
		return "", nil, err
	}
	if !utf8.ValidString(c.Value) {
		return "", nil, fmt.Errorf("png text chunk %q: value is not valid UTF-8", c.Key)
	}
	if strings.IndexByte(c.Value, 0) >= 0 {
		return "", nil, fmt.Errorf("png text chunk %q: value contains a NUL character, which PNG text cannot hold", c.Key)
	}
	if l1, ok := latin1(c.Value); ok {
		data = append(append([]byte(c.Key), 0), l1...)
		typ = "tEXt"
	} else {
		// keyword, NUL, compression flag 0, method 0, language "", NUL,
		// translated keyword "", NUL, UTF-8 text.
		data = append(append([]byte(c.Key), 0, 0, 0, 0, 0), c.Value...)
		typ = "iTXt"
	}
	if len(data) > maxChunkLen {
		return "", nil, fmt.Errorf("png text chunk %q is too large (%d bytes)", c.Key, len(data))
	}
	return typ, data, nil
}

func writeChunk(w io.Writer, typ string, data []byte) error {
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(len(data)))
	copy(hdr[4:], typ)
	crc := crc32.NewIEEE()
	crc.Write(hdr[4:])
	crc.Write(data)
	var tail [4]byte
	binary.BigEndian.PutUint32(tail[:], crc.Sum32())
	for _, b := range [][]byte{hdr[:], data, tail[:]} {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// EncodePNG writes img as a PNG with the text chunks placed right after IHDR
// (before the image data, where every reader looks). Go's image/png writes
// no text chunks, so the image is encoded into memory and the chunks are
// spliced in with their CRCs.
func EncodePNG(w io.Writer, img image.Image, chunks []TextChunk) error {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return fmt.Errorf("encoding png: %v", err)
	}
	b := buf.Bytes()
	// Signature (8) + IHDR chunk (4 length + 4 type + 13 data + 4 CRC).
	const ihdrEnd = 8 + 25
	if len(b) < ihdrEnd || !bytes.Equal(b[:8], pngSignature) || string(b[12:16]) != "IHDR" {
		return errors.New("encoding png: image/png output does not start with IHDR")
	}
	if _, err := w.Write(b[:ihdrEnd]); err != nil {
		return err
	}
	for _, c := range chunks {
		typ, data, err := chunkData(c)
		if err != nil {
			return err
		}
		if err := writeChunk(w, typ, data); err != nil {
			return err
		}
	}
	_, err := w.Write(b[ihdrEnd:])
	return err
}

// WritePNG writes img with its text chunks to path atomically: the file
// appears complete or not at all, and an existing file is replaced only when
// overwrite is true.
func WritePNG(path string, img image.Image, chunks []TextChunk, overwrite bool) error {
	// Encode first so that a bad chunk or image fails before any file exists.
	var buf bytes.Buffer
	if err := EncodePNG(&buf, img, chunks); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	return atomicfile.Write(path, overwrite, func(w io.Writer) error {
		_, err := w.Write(buf.Bytes())
		return err
	})
}

// RunChunk marshals a run description as the RunKey chunk. Non-ASCII text
// stays UTF-8 (the chunk becomes iTXt); HTML characters are not escaped.
func RunChunk(run any) (TextChunk, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(run); err != nil {
		return TextChunk{}, fmt.Errorf("encoding %s chunk: %v", RunKey, err)
	}
	return TextChunk{Key: RunKey, Value: strings.TrimSuffix(buf.String(), "\n")}, nil
}

// ReadTextChunks returns every tEXt, zTXt and iTXt chunk of a PNG stream in
// file order, decoded to UTF-8 strings, after checking each chunk's CRC. It
// reads chunk by chunk and stops at IEND; image data is skipped, not
// decoded.
func ReadTextChunks(r io.Reader) ([]TextChunk, error) {
	var sig [8]byte
	if _, err := io.ReadFull(r, sig[:]); err != nil || !bytes.Equal(sig[:], pngSignature) {
		return nil, errors.New("not a PNG file")
	}
	var out []TextChunk
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, fmt.Errorf("png: truncated before IEND: %v", err)
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		typ := string(hdr[4:8])
		if n > maxChunkLen {
			return nil, fmt.Errorf("png: chunk %q has invalid length %d", typ, n)
		}
		isText := typ == "tEXt" || typ == "zTXt" || typ == "iTXt"
		crc := crc32.NewIEEE()
		crc.Write(hdr[4:])
		var data []byte
		if isText {
			data = make([]byte, n)
			if _, err := io.ReadFull(r, data); err != nil {
				return nil, fmt.Errorf("png: truncated %s chunk: %v", typ, err)
			}
			crc.Write(data)
		} else if _, err := io.CopyN(crc, r, int64(n)); err != nil {
			return nil, fmt.Errorf("png: truncated %s chunk: %v", typ, err)
		}
		var tail [4]byte
		if _, err := io.ReadFull(r, tail[:]); err != nil {
			return nil, fmt.Errorf("png: truncated %s chunk: %v", typ, err)
		}
		if binary.BigEndian.Uint32(tail[:]) != crc.Sum32() {
			return nil, fmt.Errorf("png: CRC mismatch in %s chunk", typ)
		}
		if isText {
			c, err := parseTextChunk(typ, data)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		if typ == "IEND" {
			return out, nil
		}
	}
}

// ReadPNGText opens a PNG file and returns its text chunks.
func ReadPNGText(path string) ([]TextChunk, error) {
	f, err := regfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := ReadTextChunks(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return c, nil
}

// Metadata is what a PNG's text chunks say about how it was made.
type Metadata struct {
	// Run is the RunKey chunk: sdxl-run's JSON record of the run, "" when
	// absent.
	Run string
	// Parameters is the ParametersKey chunk: AUTOMATIC1111's infotext as
	// A1111, Forge, sd.cpp and sdxl-run write it (see package infotext), ""
	// when absent.
	Parameters string
	// Chunks are all text chunks (tEXt, zTXt, iTXt) in file order.
	Chunks []TextChunk
}

// ReadMetadata reads the text chunks of a PNG stream (see ReadTextChunks).
func ReadMetadata(r io.Reader) (Metadata, error) {
	c, err := ReadTextChunks(r)
	return metadataOf(c), err
}

// ReadPNGMetadata opens a PNG file and reads its metadata.
func ReadPNGMetadata(path string) (Metadata, error) {
	c, err := ReadPNGText(path)
	return metadataOf(c), err
}

func metadataOf(c []TextChunk) Metadata {
	m := Metadata{Chunks: c}
	m.Run, _ = Lookup(c, RunKey)
	m.Parameters, _ = Lookup(c, ParametersKey)
	return m
}

// Lookup returns the value of the first chunk with key.
func Lookup(chunks []TextChunk, key string) (string, bool) {
	for _, c := range chunks {
		if c.Key == key {
			return c.Value, true
		}
	}
	return "", false
}

// maxInflated bounds a compressed text chunk's decompressed size so that a
// hostile file cannot exhaust memory.
const maxInflated = 64 << 20

func inflate(typ string, b []byte) ([]byte, error) {
	zr, err := zlib.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("png: %s chunk: %v", typ, err)
	}
	defer zr.Close()
	out, err := io.ReadAll(io.LimitReader(zr, maxInflated+1))
	if err != nil {
		return nil, fmt.Errorf("png: %s chunk: %v", typ, err)
	}
	if len(out) > maxInflated {
		return nil, fmt.Errorf("png: %s chunk inflates to more than %d bytes", typ, maxInflated)
	}
	return out, nil
}

func fromLatin1(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b))
	for _, c := range b {
		sb.WriteRune(rune(c))
	}
	return sb.String()
}

func parseTextChunk(typ string, data []byte) (TextChunk, error) {
	k := bytes.IndexByte(data, 0)
	if k < 1 || k > 79 {
		return TextChunk{}, fmt.Errorf("png: %s chunk has no valid keyword", typ)
	}
	key, rest := fromLatin1(data[:k]), data[k+1:]
	switch typ {
	case "tEXt":
		return TextChunk{key, fromLatin1(rest)}, nil
	case "zTXt":
		if len(rest) < 1 || rest[0] != 0 {
			return TextChunk{}, fmt.Errorf("png: zTXt chunk %q: unknown compression method", key)
		}
		text, err := inflate(typ, rest[1:])
		if err != nil {
			return TextChunk{}, err
		}
		return TextChunk{key, fromLatin1(text)}, nil
	}
	// iTXt: flag, method, language NUL, translated keyword NUL, text.
	if len(rest) < 2 {
		return TextChunk{}, fmt.Errorf("png: iTXt chunk %q is truncated", key)
	}
	flag, method := rest[0], rest[1]
	rest = rest[2:]
	for i := 0; i < 2; i++ { // skip language tag and translated keyword
		j := bytes.IndexByte(rest, 0)
		if j < 0 {
			return TextChunk{}, fmt.Errorf("png: iTXt chunk %q is truncated", key)
		}
		rest = rest[j+1:]
	}
	if flag == 1 {
		if method != 0 {
			return TextChunk{}, fmt.Errorf("png: iTXt chunk %q: unknown compression method %d", key, method)
		}
		var err error
		if rest, err = inflate(typ, rest); err != nil {
			return TextChunk{}, err
		}
	}
	if !utf8.Valid(rest) {
		return TextChunk{}, fmt.Errorf("png: iTXt chunk %q is not valid UTF-8", key)
	}
	return TextChunk{key, string(rest)}, nil
}
