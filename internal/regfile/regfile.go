// Package regfile opens input files only when they are regular files (or
// symbolic links to one). Opening a named pipe blocks until a writer
// appears (a FIFO given as a weight file hung the program), and a device
// or a folder is never what a model, config or image path means; each is
// refused before it is opened, with an error that says what the path is.
package regfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Kind describes a file mode's type for messages: "a folder", "a named
// pipe (FIFO)", ...; "a regular file" for regular files.
func Kind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a folder"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	default:
		return "not a regular file"
	}
}

// Check returns nil when path is a regular file or a symbolic link that
// leads to one. Otherwise the error names path and says what it is: a
// missing file (errors.Is(err, fs.ErrNotExist)), a link that cannot be
// followed (a loop, or a dangling link), a folder, a pipe, a device.
func Check(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		if lst, lerr := os.Lstat(path); lerr == nil && lst.Mode()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(path)
			if errors.Is(err, fs.ErrNotExist) {
				return notExist(fmt.Sprintf("%s is a symbolic link to %s, which does not exist", path, target))
			}
			return fmt.Errorf("%s is a symbolic link that cannot be followed (a loop?): %v", path, unwrapPath(err))
		}
		if errors.Is(err, fs.ErrNotExist) {
			return notExist(path + ": no such file")
		}
		return fmt.Errorf("%s: %v", path, unwrapPath(err))
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is %s, not a regular file", path, Kind(st.Mode()))
	}
	return nil
}

// notExist is a missing-file error that reads well and still satisfies
// errors.Is(err, fs.ErrNotExist).
type notExist string

func (e notExist) Error() string        { return string(e) }
func (e notExist) Is(target error) bool { return target == fs.ErrNotExist }

// unwrapPath drops the *fs.PathError wrapper, whose message repeats the
// path.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Open opens path for reading after Check, and checks the opened file
// again (the path may have been replaced in between).
func Open(path string) (*os.File, error) {
	if err := Check(path); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s is %s, not a regular file", path, Kind(st.Mode()))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ReadFile is os.ReadFile for regular files only (see Check). Files
// larger than limit bytes are refused (limit <= 0: no limit): a config or
// prompt file is small, and a huge one would only exhaust memory.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if limit > 0 {
		r = io.LimitReader(f, limit+1)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, unwrapPath(err))
	}
	if limit > 0 && int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is over the %d-byte limit for this kind of file", path, limit)
	}
	return data, nil
}
