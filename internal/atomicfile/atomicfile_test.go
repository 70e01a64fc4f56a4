package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.txt")
	write := func(s string, over bool) error {
		return Write(p, over, func(w io.Writer) error { _, err := io.WriteString(w, s); return err })
	}
	if err := write("one", false); err != nil {
		t.Fatal(err)
	}
	if err := write("two", false); err == nil || !strings.Contains(err.Error(), "--overwrite") {
		t.Fatalf("second write without overwrite: %v", err)
	}
	if err := write("three", true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "three" {
		t.Fatalf("content %q", b)
	}
	failing := Write(filepath.Join(dir, "b.txt"), false, func(w io.Writer) error { return errors.New("boom") })
	if failing == nil {
		t.Fatal("error lost")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("left files behind: %v", ents)
	}
}
