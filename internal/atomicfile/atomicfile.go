// Package atomicfile writes files so that readers see either the old
// content or the complete new one, never a partial file, and so that only
// regular files are ever replaced.
//
// An existing path is replaced only when overwrite is set and it is a
// regular file: a device node (/dev/null), a named pipe, a socket, a
// folder or a symbolic link at the output path is an error naming it,
// with or without overwrite (renaming over /dev/null as root would
// replace the device by a file). CheckTarget makes the same checks before
// any work, so a front end can refuse a bad output path before it
// computes what to write.
package atomicfile

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sdxl-go/sdxl/internal/regfile"
)

// ErrExists is returned (wrapped) when the path exists and overwrite is
// false.
var ErrExists = errors.New("already exists (use --overwrite to replace it)")

// checkExisting checks what is at path now: nothing, or a regular file
// that overwrite allows replacing.
func checkExisting(path string, overwrite bool) error {
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("cannot write %s: %v", path, unwrapPath(err))
	case !st.Mode().IsRegular():
		return fmt.Errorf("cannot write %s: it is %s, and only a regular file is ever replaced", path, regfile.Kind(st.Mode()))
	case !overwrite:
		return fmt.Errorf("%s %w", path, ErrExists)
	}
	return nil
}

// CheckTarget reports whether Write(path, overwrite, ...) can succeed, as
// far as can be known before writing: whatever is at path is a regular
// file and overwrite is set, or nothing is there; and the folder exists
// and takes a new file (checked by creating and removing a temporary
// file). Front ends call it before long work.
func CheckTarget(path string, overwrite bool) error {
	return CheckTargets(overwrite, path)
}

// CheckTargets is CheckTarget for several paths, trying each folder once.
func CheckTargets(overwrite bool, paths ...string) error {
	dirs := map[string]error{}
	for _, path := range paths {
		if err := checkExisting(path, overwrite); err != nil {
			return err
		}
		dir := filepath.Dir(path)
		err, seen := dirs[dir]
		if !seen {
			err = checkDir(dir)
			dirs[dir] = err
		}
		if err != nil {
			return fmt.Errorf("cannot write %s: %v", path, err)
		}
	}
	return nil
}

// checkDir checks that dir is a folder that takes a new file.
func checkDir(dir string) error {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		if err == nil {
			return fmt.Errorf("%s is %s", dir, regfile.Kind(st.Mode()))
		}
		return fmt.Errorf("folder %s: %v", dir, unwrapPath(err))
	}
	f, err := os.CreateTemp(dir, ".sdxl-check*")
	if err != nil {
		return fmt.Errorf("folder %s: %v", dir, unwrapPath(err))
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// Write creates path via a temporary file in the same directory that is
// synced and renamed into place. If overwrite is false and path exists, it
// fails without touching anything; if path is anything but a regular file
// it fails either way. On any error the temporary file is removed.
func Write(path string, overwrite bool, fill func(w io.Writer) error) error {
	return WriteContext(context.Background(), path, overwrite, fill)
}

// WriteContext is Write that stops when ctx is done: fill's writes fail
// with ctx's error, and a cancellation that comes after fill but before
// the rename still leaves nothing behind.
func WriteContext(ctx context.Context, path string, overwrite bool, fill func(w io.Writer) error) error {
	p, err := Stage(ctx, path, overwrite, fill)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		p.Abort()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return p.Commit()
}

// Pending is a complete file written under a temporary name beside its
// path, not yet in place.
type Pending struct {
	tmp, path string
	overwrite bool
	created   bool // Commit made path (it did not exist before)
	done      bool
}

// Path is where Commit puts the file.
func (p *Pending) Path() string { return p.path }

// Stage writes fill's output to a synced temporary file beside path (after
// the checks Write makes) and returns it pending: Commit puts it in place,
// Abort removes it. A front end writing several outputs stages them all and
// then commits them all (CommitAll), so that an error or a cancellation
// before the commit leaves nothing. Writes fail with ctx's error once it is
// done.
func Stage(ctx context.Context, path string, overwrite bool, fill func(w io.Writer) error) (_ *Pending, err error) {
	if err := checkExisting(path, overwrite); err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("cannot write %s: %v", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(ctxWriter{ctx, tmp}, 1<<20)
	if err = fill(bw); err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	if err = bw.Flush(); err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return nil, fmt.Errorf("writing %s: %v", path, err)
	}
	if err = tmp.Close(); err != nil {
		return nil, fmt.Errorf("writing %s: %v", path, err)
	}
	if err = os.Chmod(tmp.Name(), 0o644); err != nil {
		return nil, err
	}
	return &Pending{tmp: tmp.Name(), path: path, overwrite: overwrite}, nil
}

// Commit puts the file in place (see Write); on error the temporary file
// is removed.
func (p *Pending) Commit() error {
	if p.done {
		return fmt.Errorf("%s: already committed or aborted", p.path)
	}
	p.done = true
	_, lerr := os.Lstat(p.path)
	p.created = errors.Is(lerr, fs.ErrNotExist)
	if err := place(p.tmp, p.path, p.overwrite); err != nil {
		os.Remove(p.tmp)
		return err
	}
	return nil
}

// Abort removes the temporary file (a no-op after Commit).
func (p *Pending) Abort() {
	if !p.done {
		p.done = true
		os.Remove(p.tmp)
	}
}

// CommitAll commits ps in order. If one fails, the rest are aborted and
// the files this call created are removed again (a file that replaced an
// existing one stays: the old content is gone), so a failed commit leaves
// no new file behind.
func CommitAll(ps ...*Pending) error {
	for i, p := range ps {
		if err := p.Commit(); err != nil {
			for _, q := range ps[i+1:] {
				q.Abort()
			}
			for _, q := range ps[:i] {
				if q.created {
					os.Remove(q.path)
				}
			}
			return err
		}
	}
	return nil
}

// AbortAll aborts every pending file.
func AbortAll(ps ...*Pending) {
	for _, p := range ps {
		p.Abort()
	}
}

// place moves the complete temporary file to path.
func place(tmp, path string, overwrite bool) error {
	// Check again right before the rename: the path may have changed
	// while the file was being written.
	if err := checkExisting(path, overwrite); err != nil {
		return err
	}
	if overwrite {
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("cannot write %s: %v", path, err)
		}
		return nil
	}
	// Link fails if path appeared since the check above, so a file created
	// meanwhile by someone else is never replaced.
	if err := os.Link(tmp, path); err != nil {
		if os.IsExist(err) {
			return fmt.Errorf("%s %w", path, ErrExists)
		}
		// File systems without hard links: fall back to rename.
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("cannot write %s: %v", path, err)
		}
		return nil
	}
	os.Remove(tmp)
	return nil
}

// unwrapPath drops an *fs.PathError's wrapper, whose message repeats the
// path.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ctxWriter fails writes once ctx is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
