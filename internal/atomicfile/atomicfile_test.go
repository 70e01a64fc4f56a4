package atomicfile

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/internal/regfile"
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

// TestOnlyRegularFilesReplaced: a device, a named pipe, a folder or a
// symbolic link at the output path is refused by CheckTarget and Write,
// with or without overwrite, and left as it was.
func TestOnlyRegularFilesReplaced(t *testing.T) {
	dir := t.TempDir()
	fill := func(w io.Writer) error { _, err := io.WriteString(w, "png"); return err }
	targets := map[string]string{}
	sub := filepath.Join(dir, "folder.png")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	targets[sub] = "it is a folder"
	if fifo := filepath.Join(dir, "fifo.png"); regfile.MakeFIFO(fifo) == nil {
		targets[fifo] = "it is a named pipe (FIFO)"
	}
	reg := filepath.Join(dir, "real.png")
	if err := os.WriteFile(reg, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if link := filepath.Join(dir, "link.png"); os.Symlink(reg, link) == nil {
		targets[link] = "it is a symbolic link"
	}
	if runtime.GOOS != "windows" {
		// Never written: every check fails before a temporary file is
		// made in /dev.
		targets["/dev/null"] = "it is a character device"
	}
	for path, want := range targets {
		for _, over := range []bool{false, true} {
			for what, err := range map[string]error{"CheckTarget": CheckTarget(path, over), "Write": Write(path, over, fill)} {
				if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), want) ||
					!strings.Contains(err.Error(), "only a regular file is ever replaced") {
					t.Errorf("%s(%s, overwrite %v) = %v, want %q", what, path, over, err, want)
				}
			}
		}
	}
	if b, _ := os.ReadFile(reg); string(b) != "old" {
		t.Errorf("the link's target changed: %q", b)
	}
	if st, err := os.Stat("/dev/null"); runtime.GOOS != "windows" && (err != nil || st.Mode()&os.ModeCharDevice == 0) {
		t.Errorf("/dev/null: %v %v", st, err)
	}
	// A regular file: refused without overwrite, replaced with it.
	if err := CheckTarget(reg, false); !errors.Is(err, ErrExists) {
		t.Errorf("CheckTarget of an existing file: %v", err)
	}
	if err := CheckTarget(reg, true); err != nil {
		t.Error(err)
	}
	for path, want := range map[string]string{
		filepath.Join(dir, "nodir", "a.png"): "cannot write",
		filepath.Join(reg, "a.png"):          "a.png: not a directory",
	} {
		if err := CheckTarget(path, true); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckTarget(%s) = %v, want %q", path, err, want)
		}
	}
	assertOnly(t, dir, "fifo.png", "folder.png", "link.png", "real.png")
}

// TestWriteContextCancelled: a cancellation during or after fill leaves
// nothing.
func TestWriteContextCancelled(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	p := filepath.Join(dir, "out.png")
	err := WriteContext(ctx, p, false, func(w io.Writer) error {
		cancel()
		_, err := w.Write(make([]byte, 2<<20)) // past the buffer: reaches the file
		return err
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled during fill: %v", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	err = WriteContext(ctx, p, false, func(w io.Writer) error { cancel(); _, err := w.Write([]byte("x")); return err })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled after fill: %v", err)
	}
	assertOnly(t, dir)
}

func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}

// TestCommitAll: staged files appear only at the commit; a commit that
// fails part-way removes the files it created and aborts the rest.
func TestCommitAll(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	fill := func(s string) func(io.Writer) error {
		return func(w io.Writer) error { _, err := io.WriteString(w, s); return err }
	}
	a, err := Stage(ctx, filepath.Join(dir, "a.png"), false, fill("a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Stage(ctx, filepath.Join(dir, "b.safetensors"), false, fill("b"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a.Path()); err == nil {
		t.Error("a staged file is visible before the commit")
	}
	if err := CommitAll(a, b); err != nil {
		t.Fatal(err)
	}
	assertOnly(t, dir, "a.png", "b.safetensors")
	// c stages fine, then d's path appears before the commit.
	c, _ := Stage(ctx, filepath.Join(dir, "c.png"), false, fill("c"))
	d, _ := Stage(ctx, filepath.Join(dir, "d.png"), false, fill("d"))
	e, _ := Stage(ctx, filepath.Join(dir, "e.png"), false, fill("e"))
	if err := os.WriteFile(filepath.Join(dir, "d.png"), []byte("someone else's"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CommitAll(c, d, e); !errors.Is(err, ErrExists) {
		t.Errorf("CommitAll over a new file: %v", err)
	}
	assertOnly(t, dir, "a.png", "b.safetensors", "d.png")
	f, _ := Stage(ctx, filepath.Join(dir, "f.png"), false, fill("f"))
	AbortAll(f)
	assertOnly(t, dir, "a.png", "b.safetensors", "d.png")
}
