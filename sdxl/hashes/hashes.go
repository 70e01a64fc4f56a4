// Package hashes computes the file hashes that identify models in image
// metadata, once per file: a Cache remembers each file's digests by path,
// size and modification time in a JSON file, so that a 6.9 GB checkpoint
// is read once, not on every run (AUTOMATIC1111 does the same in
// modules/hashes.py with its cache.json).
//
//   - SHA256 is the file's SHA-256; A1111's "Model hash" is its first 10 hex
//     digits (ModelHash), sd_models.py CheckpointInfo.calculate_shorthash.
//   - AddNet is kohya-ss' "addnet" hash of a safetensors file: the SHA-256
//     of the bytes after the header (modules/hashes.py
//     addnet_hash_safetensors); A1111's "Lora hashes" hold its first 12 hex
//     digits (LoraHash), extensions-builtin/Lora/network.py NetworkOnDisk.
//
// The cache file is replaced atomically, merging what other processes
// wrote meanwhile, so concurrent runs never corrupt it; at worst two
// processes finishing at the same instant lose one entry, which costs one
// more hashing later.
package hashes

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/sdxl-go/sdxl/internal/atomicfile"
)

// ModelHash is A1111's short model hash: the first 10 hex digits of the
// checkpoint's SHA-256.
func ModelHash(sha256hex string) string { return prefix(sha256hex, 10) }

// LoraHash is A1111's short LoRA hash: the first 12 hex digits of the
// addnet hash.
func LoraHash(addnet string) string { return prefix(addnet, 12) }

func prefix(s string, n int) string {
	if len(s) < n {
		return s
	}
	return s[:n]
}

// kind selects which digest of a file is wanted.
type kind int

const (
	wholeFile kind = iota // SHA-256 of every byte
	addNet                // SHA-256 after the safetensors header
)

// record is one file's cache entry.
type record struct {
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"`
	SHA256  string `json:"sha256,omitempty"`
	AddNet  string `json:"addnet,omitempty"`
}

func (r record) get(k kind) string {
	if k == addNet {
		return r.AddNet
	}
	return r.SHA256
}

func (r *record) put(k kind, v string) {
	if k == addNet {
		r.AddNet = v
	} else {
		r.SHA256 = v
	}
}

// cacheFile is the JSON layout on disk.
type cacheFile struct {
	Version int               `json:"version"`
	Files   map[string]record `json:"files"`
}

const cacheVersion = 1

// Cache computes and remembers file hashes. Its methods are safe for
// concurrent use; several processes may share one cache file.
type Cache struct {
	file string // "" keeps the cache in memory only

	mu     sync.Mutex
	mem    map[string]record
	loaded bool

	hashed atomic.Int64
}

// Open returns a cache backed by the JSON file at path (created on first
// write, with its folder). An empty path keeps the cache in memory only.
func Open(path string) *Cache {
	return &Cache{file: path}
}

// DefaultPath is where Default keeps its file: hashes.json in the user's
// cache folder (os.UserCacheDir, under sdxl-go, next to the extracted
// bundled model).
func DefaultPath() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "sdxl-go", "hashes.json"), nil
}

// Default opens the cache at DefaultPath, or a memory-only cache when the
// system has no user cache folder.
func Default() *Cache {
	p, err := DefaultPath()
	if err != nil {
		return Open("")
	}
	return Open(p)
}

// Hashed counts the files this Cache read to hash them (cache misses).
func (c *Cache) Hashed() int64 { return c.hashed.Load() }

// SHA256 returns the hex SHA-256 of the file at path.
func (c *Cache) SHA256(ctx context.Context, path string) (string, error) {
	return c.digest(ctx, path, wholeFile)
}

// AddNet returns the hex addnet hash of the safetensors file at path (see
// AddNetSafetensors).
func (c *Cache) AddNet(ctx context.Context, path string) (string, error) {
	return c.digest(ctx, path, addNet)
}

// Lora returns the hash A1111 records for a LoRA file (NetworkOnDisk in
// extensions-builtin/Lora/network.py): the addnet hash for .safetensors
// files, the whole file's SHA-256 for others. (A1111 prefers the file's
// own "sshs_model_hash" metadata when present; callers holding the
// metadata can do the same.)
func (c *Cache) Lora(ctx context.Context, path string) (string, error) {
	if filepath.Ext(path) == ".safetensors" {
		return c.AddNet(ctx, path)
	}
	return c.SHA256(ctx, path)
}

func (c *Cache) digest(ctx context.Context, path string, k kind) (string, error) {
	key, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(key)
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s: not a regular file", path)
	}
	size, mtime := st.Size(), st.ModTime().UnixNano()
	if rec, ok := c.lookup(key); ok && rec.Size == size && rec.ModTime == mtime && rec.get(k) != "" {
		return rec.get(k), nil
	}
	sum, err := hashFile(ctx, key, k)
	if err != nil {
		return "", err
	}
	c.hashed.Add(1)
	// A file that changed while it was read gets no entry.
	if st2, err := os.Stat(key); err == nil && st2.Size() == size && st2.ModTime().UnixNano() == mtime {
		if err := c.store(key, size, mtime, k, sum); err != nil {
			return sum, fmt.Errorf("hash cache %s: %v", c.file, err)
		}
	}
	return sum, nil
}

// lookup finds key in memory, loading the file once.
func (c *Cache) lookup(key string) (record, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.loaded {
		c.mem, _ = c.read()
		c.loaded = true
	}
	r, ok := c.mem[key]
	return r, ok
}

// store records a digest and writes the cache file: the file's current
// entries (other processes' included), then this one, renamed into place.
func (c *Cache) store(key string, size, mtime int64, k kind, sum string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	files, err := c.read()
	if err != nil {
		// An unreadable cache is rebuilt rather than fatal.
		files = map[string]record{}
	}
	for p, r := range c.mem {
		if _, ok := files[p]; !ok {
			files[p] = r
		}
	}
	r := files[key]
	if r.Size != size || r.ModTime != mtime {
		r = record{Size: size, ModTime: mtime}
	}
	r.put(k, sum)
	files[key] = r
	c.mem, c.loaded = files, true
	if c.file == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(c.file), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(c.file, true, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", " ")
		return enc.Encode(cacheFile{Version: cacheVersion, Files: files})
	})
}

// read loads the cache file; a missing file is an empty cache.
func (c *Cache) read() (map[string]record, error) {
	files := map[string]record{}
	if c.file == "" {
		return files, nil
	}
	b, err := os.ReadFile(c.file)
	if errors.Is(err, os.ErrNotExist) {
		return files, nil
	}
	if err != nil {
		return files, err
	}
	var f cacheFile
	if err := json.Unmarshal(b, &f); err != nil || f.Version != cacheVersion {
		return files, fmt.Errorf("unreadable or old cache file, rebuilding it")
	}
	if f.Files != nil {
		files = f.Files
	}
	return files, nil
}

func hashFile(ctx context.Context, path string, k kind) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if k == addNet {
		if err := skipSafetensorsHeader(f); err != nil {
			return "", fmt.Errorf("%s: %v", path, err)
		}
	}
	if err := copyCtx(ctx, h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// AddNetSafetensors is kohya-ss' addnet hash (A1111 modules/hashes.py
// addnet_hash_safetensors): the SHA-256 of a safetensors file's bytes after
// its 8-byte header length and JSON header, so that editing the metadata
// does not change it. Uncached; Cache.AddNet caches it.
func AddNetSafetensors(ctx context.Context, r io.ReadSeeker) (string, error) {
	if err := skipSafetensorsHeader(r); err != nil {
		return "", err
	}
	h := sha256.New()
	if err := copyCtx(ctx, h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// skipSafetensorsHeader seeks past the little-endian u64 header length and
// the header.
func skipSafetensorsHeader(r io.ReadSeeker) error {
	var n [8]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return fmt.Errorf("not a safetensors file: %v", err)
	}
	size := binary.LittleEndian.Uint64(n[:])
	end, err := r.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if size > uint64(end-8) {
		return fmt.Errorf("not a safetensors file: header length %d beyond the file's %d bytes", size, end)
	}
	_, err = r.Seek(8+int64(size), io.SeekStart)
	return err
}

// copyCtx hashes r in 1 MiB reads, checking ctx between them.
func copyCtx(ctx context.Context, h hash.Hash, r io.Reader) error {
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := r.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
