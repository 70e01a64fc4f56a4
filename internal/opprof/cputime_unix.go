//go:build unix

package opprof

import (
	"syscall"
	"time"
)

// CPUTime is the process's user+system CPU time so far (0 where the
// system does not say): on a shared machine, work per CPU second is a
// steadier figure than wall time.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
