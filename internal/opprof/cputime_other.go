//go:build !unix

package opprof

import "time"

// CPUTime is 0 here: the process's CPU time is not measured.
func CPUTime() time.Duration { return 0 }
