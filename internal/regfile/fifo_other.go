//go:build !unix

package regfile

import "errors"

// MakeFIFO creates a named pipe at path, for tests of the refusal; this
// system has none in its file system.
func MakeFIFO(path string) error { return errors.ErrUnsupported }
