//go:build unix

package regfile

import "syscall"

// MakeFIFO creates a named pipe at path, for tests of the refusal.
func MakeFIFO(path string) error { return syscall.Mkfifo(path, 0o644) }
