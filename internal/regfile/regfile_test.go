package regfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "w.safetensors")
	if err := os.WriteFile(reg, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.safetensors")
	loop := filepath.Join(dir, "loop.safetensors")
	dangling := filepath.Join(dir, "dangling.safetensors")
	symlink(t, reg, link)
	symlink(t, loop, loop)
	symlink(t, filepath.Join(dir, "gone"), dangling)
	if err := Check(reg); err != nil {
		t.Error(err)
	}
	if err := Check(link); err != nil {
		t.Errorf("a link to a regular file: %v", err)
	}
	cases := map[string]string{
		loop:                          "is a symbolic link that cannot be followed (a loop?)",
		dangling:                      "is a symbolic link to " + filepath.Join(dir, "gone") + ", which does not exist",
		dir:                           "is a folder, not a regular file",
		filepath.Join(dir, "missing"): ": no such file",
		filepath.Join(reg, "under"):   "not a directory",
	}
	if fifo := filepath.Join(dir, "fifo"); MakeFIFO(fifo) == nil {
		cases[fifo] = "is a named pipe (FIFO), not a regular file"
	}
	if runtime.GOOS != "windows" {
		cases["/dev/null"] = "is a character device, not a regular file"
	}
	for path, want := range cases {
		err := Check(path)
		if err == nil || !strings.HasPrefix(err.Error(), path) || !strings.Contains(err.Error(), want) {
			t.Errorf("Check(%s) = %v, want %q", path, err, want)
		}
	}
	if err := Check(dangling); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dangling link: %v is not ErrNotExist", err)
	}
}

// TestOpenFIFODoesNotBlock: a named pipe with no writer is refused at
// once instead of blocking in open(2).
func TestOpenFIFODoesNotBlock(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "model.safetensors")
	if err := MakeFIFO(fifo); err != nil {
		t.Skipf("no named pipe: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := ReadFile(fifo, 0); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "named pipe") {
			t.Errorf("ReadFile(fifo) = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFile of a FIFO blocked") // the goroutine stays blocked; the test binary exits anyway
	}
}

func TestReadFileLimit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.json")
	must(t, os.WriteFile(p, []byte("0123456789"), 0o644))
	if b, err := ReadFile(p, 10); err != nil || string(b) != "0123456789" {
		t.Errorf("at the limit: %q %v", b, err)
	}
	if _, err := ReadFile(p, 9); err == nil || !strings.Contains(err.Error(), "over the 9-byte limit") {
		t.Errorf("over the limit: %v", err)
	}
}

// symlink makes a symbolic link, skipping the test where the system does
// not allow it (Windows without the privilege).
func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("cannot make symbolic links here: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
