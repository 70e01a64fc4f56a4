package imageio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// pngHeader is the start of a PNG declaring w x h 8-bit RGB pixels: the
// signature and the IHDR chunk, all image.DecodeConfig reads.
func pngHeader(w, h uint32) []byte {
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 2, 0, 0, 0) // depth 8, RGB, deflate, filter 0, no interlace
	var buf bytes.Buffer
	buf.Write(pngSignature)
	binary.Write(&buf, binary.BigEndian, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr...)
	buf.Write(chunk)
	binary.Write(&buf, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return buf.Bytes()
}

// TestLoadLimitBeforeDecoding: a PNG declaring 16384x16384 pixels (an image
// bomb: under 1 MB compressed, 1 GiB decoded) is refused from its header,
// without decoding, when over the caller's limit.
func TestLoadLimitBeforeDecoding(t *testing.T) {
	buf := bytes.NewBuffer(pngHeader(16384, 16384))
	p := filepath.Join(t.TempDir(), "bomb.png")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := LoadLimit(p, 4096*4096)
	runtime.ReadMemStats(&after)
	var tl *TooLargeError
	if !errors.As(err, &tl) || tl.Width != 16384 || !strings.Contains(err.Error(), p) ||
		!strings.Contains(err.Error(), "image size 16384x16384 (268435456 pixels) is over the limit of 16777216 pixels") {
		t.Fatalf("LoadLimit: %v", err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d-byte PNG of 16384x16384 refused after allocating %d KiB", buf.Len(), alloc>>10)
	if alloc > 64<<20 {
		t.Errorf("allocated %d MiB before refusing", alloc>>20)
	}
	if _, err := DecodeLimit(buf.Bytes(), 16384*16383); !errors.As(err, &tl) {
		t.Errorf("DecodeLimit: %v", err)
	}
}
