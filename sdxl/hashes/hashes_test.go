package hashes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// safetensorsBytes builds a small safetensors file: header length, JSON
// header, data.
func safetensorsBytes(header string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(header)))
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestDigests(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte{1, 2, 3, 4, 5}, 700_000) // > 3 MiB: several reads
	header := `{"w":{"dtype":"U8","shape":[3500000],"data_offsets":[0,3500000]},"__metadata__":{"ss_output_name":"x"}}`
	file := safetensorsBytes(header, data)
	path := filepath.Join(dir, "lora.safetensors")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	c := Open(filepath.Join(dir, "cache.json"))
	ctx := context.Background()
	whole, err := c.SHA256(ctx, path)
	if err != nil || whole != sha(file) {
		t.Fatalf("SHA256 = %s, %v; want %s", whole, err, sha(file))
	}
	addnet, err := c.AddNet(ctx, path)
	if err != nil || addnet != sha(data) {
		t.Fatalf("AddNet = %s, %v; want the SHA-256 of the data after the header, %s", addnet, err, sha(data))
	}
	if l, _ := c.Lora(ctx, path); l != addnet {
		t.Errorf("Lora(.safetensors) = %s, want the addnet hash", l)
	}
	if ModelHash(whole) != whole[:10] || LoraHash(addnet) != addnet[:12] {
		t.Error("short hashes")
	}
	// Editing the metadata changes the file hash, not the addnet hash.
	edited := safetensorsBytes(strings.Replace(header, `"x"`, `"y-renamed"`, 1), data)
	if a, _ := AddNetSafetensors(ctx, bytes.NewReader(edited)); a != addnet {
		t.Errorf("addnet hash changed with the metadata: %s", a)
	}
	if _, err := AddNetSafetensors(ctx, bytes.NewReader([]byte("\xff\xff\xff\xff\x00\x00\x00\x00{}"))); err == nil {
		t.Error("header length beyond the file accepted")
	}
	if _, err := c.SHA256(ctx, dir); err == nil {
		t.Error("hashing a folder accepted")
	}
	if _, err := c.SHA256(ctx, filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
}

// TestCacheNoRehash is the acceptance check: a second run (a new Cache on
// the same cache file, as a new process would open) does not read the file
// again; a changed file is hashed again.
func TestCacheNoRehash(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "model.safetensors")
	os.WriteFile(model, safetensorsBytes("{}", bytes.Repeat([]byte("sdxl"), 1<<18)), 0o644)
	cacheFile := filepath.Join(dir, "sub", "hashes.json")
	ctx := context.Background()

	first := Open(cacheFile)
	h1, err := first.SHA256(ctx, model)
	if err != nil || first.Hashed() != 1 {
		t.Fatalf("first run: %s, %v, hashed %d files", h1, err, first.Hashed())
	}
	if h, _ := first.SHA256(ctx, model); h != h1 || first.Hashed() != 1 {
		t.Errorf("same Cache hashed again (%d)", first.Hashed())
	}

	second := Open(cacheFile)
	h2, err := second.SHA256(ctx, model)
	if err != nil || h2 != h1 || second.Hashed() != 0 {
		t.Fatalf("second run: %s, %v, hashed %d files; want %s from the cache", h2, err, second.Hashed(), h1)
	}
	// A relative path names the same entry.
	wd, _ := os.Getwd()
	if rel, err := filepath.Rel(wd, model); err == nil {
		if h, _ := second.SHA256(ctx, rel); h != h1 || second.Hashed() != 0 {
			t.Errorf("relative path hashed again")
		}
	}

	// Same size, new content and modification time: hashed again.
	os.WriteFile(model, safetensorsBytes("{}", bytes.Repeat([]byte("SDXL"), 1<<18)), 0o644)
	later := time.Now().Add(2 * time.Second)
	os.Chtimes(model, later, later)
	third := Open(cacheFile)
	h3, err := third.SHA256(ctx, model)
	if err != nil || h3 == h1 || third.Hashed() != 1 {
		t.Errorf("changed file: %s (was %s), %v, hashed %d", h3, h1, err, third.Hashed())
	}

	// A corrupt cache file is rebuilt, not fatal.
	os.WriteFile(cacheFile, []byte("{not json"), 0o644)
	fourth := Open(cacheFile)
	if h, err := fourth.SHA256(ctx, model); err != nil || h != h3 || fourth.Hashed() != 1 {
		t.Errorf("corrupt cache: %s, %v, hashed %d", h, err, fourth.Hashed())
	}
	if h, _ := Open(cacheFile).SHA256(ctx, model); h != h3 {
		t.Error("rebuilt cache lost the entry")
	}
	// Cancellation stops hashing.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Open("").SHA256(cctx, model); err == nil {
		t.Error("canceled hashing succeeded")
	}
}

// TestCacheConcurrent: many Caches (as many processes would) and
// goroutines hashing different files into one cache file leave it valid
// JSON with correct entries.
func TestCacheConcurrent(t *testing.T) {
	dir := t.TempDir()
	cachePath := filepath.Join(dir, "hashes.json")
	var files []string
	for i := 0; i < 12; i++ {
		p := filepath.Join(dir, fmt.Sprintf("m%d.bin", i))
		os.WriteFile(p, bytes.Repeat([]byte{byte(i)}, 1000+i), 0o644)
		files = append(files, p)
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		c := Open(cachePath)
		for i, p := range files {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := c.SHA256(context.Background(), p)
				if want := sha(bytes.Repeat([]byte{byte(i)}, 1000+i)); err != nil || got != want {
					t.Errorf("%s: %s, %v", p, got, err)
				}
			}()
		}
	}
	wg.Wait()
	var f cacheFile
	b, err := os.ReadFile(cachePath)
	if err != nil || json.Unmarshal(b, &f) != nil || len(f.Files) == 0 {
		t.Fatalf("cache file after concurrent writes: %v, %q", err, b)
	}
	for p, r := range f.Files {
		i := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "m"), ".bin")
		var n int
		fmt.Sscan(i, &n)
		if r.SHA256 != sha(bytes.Repeat([]byte{byte(n)}, 1000+n)) {
			t.Errorf("%s: wrong cached hash", p)
		}
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

func ExampleCache() {
	dir, _ := os.MkdirTemp("", "hashes-example")
	defer os.RemoveAll(dir)
	model := filepath.Join(dir, "model.safetensors")
	os.WriteFile(model, safetensorsBytes("{}", []byte("weights")), 0o644)

	ctx := context.Background()
	c := Open(filepath.Join(dir, "hashes.json")) // normally Default()
	sum, _ := c.SHA256(ctx, model)
	fmt.Println("Model hash:", ModelHash(sum))
	again := Open(filepath.Join(dir, "hashes.json"))
	again.SHA256(ctx, model)
	fmt.Println("files read by the second cache:", again.Hashed())
	// Output:
	// Model hash: a9e8fe4708
	// files read by the second cache: 0
}

// BenchmarkSHA256 compares hashing a 64 MiB file with a cache hit.
func BenchmarkSHA256(b *testing.B) {
	dir := b.TempDir()
	p := filepath.Join(dir, "w.bin")
	os.WriteFile(p, bytes.Repeat([]byte("0123456789abcdef"), 4<<20), 0o644)
	ctx := context.Background()
	b.Run("uncached", func(b *testing.B) {
		b.SetBytes(64 << 20)
		for i := 0; i < b.N; i++ {
			if _, err := Open("").SHA256(ctx, p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		file := filepath.Join(dir, "c.json")
		Open(file).SHA256(ctx, p)
		for i := 0; i < b.N; i++ {
			c := Open(file)
			if _, err := c.SHA256(ctx, p); err != nil || c.Hashed() != 0 {
				b.Fatal(err)
			}
		}
	})
}
