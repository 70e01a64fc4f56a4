// Package atomicfile writes files so that readers see either the old
// content or the complete new one, never a partial file.
package atomicfile

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Write creates path via a temporary file in the same directory that is
// synced and renamed into place. If overwrite is false and path exists, it
// fails without touching anything. On any error the temporary file is
// removed.
func Write(path string, overwrite bool, fill func(w io.Writer) error) (err error) {
	if !overwrite {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s already exists (use --overwrite to replace it)", path)
		}
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("cannot write %s: %v", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err = fill(bw); err != nil {
		return fmt.Errorf("writing %s: %v", path, err)
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("writing %s: %v", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("writing %s: %v", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %v", path, err)
	}
	if err = os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if overwrite {
		if err = os.Rename(tmp.Name(), path); err != nil {
			return fmt.Errorf("cannot write %s: %v", path, err)
		}
		return nil
	}
	// Link fails if path appeared since the check above, so a file created
	// meanwhile by someone else is never replaced.
	if err = os.Link(tmp.Name(), path); err != nil {
		if os.IsExist(err) {
			return fmt.Errorf("%s already exists (use --overwrite to replace it)", path)
		}
		// File systems without hard links: fall back to rename.
		if err = os.Rename(tmp.Name(), path); err != nil {
			return fmt.Errorf("cannot write %s: %v", path, err)
		}
		return nil
	}
	os.Remove(tmp.Name())
	return nil
}
