// Package memlimit sets the Go runtime's soft memory limit for a process
// that holds a model of known size.
//
// An engine's live heap is mostly its weights: a few large []float32 (or
// []uint16) slabs without pointers, which the garbage collector marks
// cheaply. Left at GOGC=100, the collector lets the heap grow to about
// twice the live heap before it collects, so a 14 GB model would fill a
// 24 GB machine with garbage activations. A memory limit a little above
// the weights plus the activations makes it collect when that is reached
// instead, at little cost.
package memlimit

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Headroom is the memory allowed beyond the model's weights for
// activations, buffers and the runtime, unless 15% of the model is more.
const Headroom = 3 << 30

// Limit is a memory limit and where it came from.
type Limit struct {
	Bytes  int64
	Source string // "GOMEMLIMIT", "model" or "available memory"
}

func (l Limit) String() string {
	return fmt.Sprintf("%.1f GiB (%s)", float64(l.Bytes)/(1<<30), l.Source)
}

// Plan computes the limit for a model of modelBytes on a machine with
// available bytes of memory (0: unknown), honouring gomemlimit (the
// GOMEMLIMIT environment variable, "" when unset): the user's setting
// wins; otherwise the model plus headroom, but at most 90% of what is
// available.
func Plan(modelBytes, available int64, gomemlimit string) Limit {
	if gomemlimit != "" {
		// The runtime has applied it at start-up; report it.
		return Limit{Bytes: debug.SetMemoryLimit(-1), Source: "GOMEMLIMIT"}
	}
	want := modelBytes + max(Headroom, modelBytes*15/100)
	if avail := available * 9 / 10; available > 0 && avail < want {
		return Limit{Bytes: avail, Source: "available memory"}
	}
	return Limit{Bytes: want, Source: "model"}
}

// Set applies Plan for modelBytes with this machine's available memory
// (the cgroup limit or MemAvailable plus what this process already
// holds) and the GOMEMLIMIT environment variable, and returns it.
func Set(modelBytes int64) Limit {
	l := Plan(modelBytes, Available(), os.Getenv("GOMEMLIMIT"))
	if l.Source != "GOMEMLIMIT" {
		debug.SetMemoryLimit(l.Bytes)
	}
	return l
}

// Available returns the memory this process may use in bytes, or 0 when
// it cannot tell: the smaller of the cgroup v2 limit and the system's
// MemAvailable plus this process's resident set (memory it already has
// counts as available to it).
func Available() int64 {
	var avail int64
	if f, err := os.Open("/proc/meminfo"); err == nil {
		avail = meminfoField(f, "MemAvailable")
		f.Close()
	}
	if avail > 0 {
		if f, err := os.Open("/proc/self/status"); err == nil {
			avail += meminfoField(f, "VmRSS")
			f.Close()
		}
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && v > 0 && (avail == 0 || v < avail) {
			avail = v
		}
	}
	return avail
}

// meminfoField reads "Name:   123 kB" lines (the /proc/meminfo and
// /proc/self/status format) and returns the named one in bytes, 0 if
// absent.
func meminfoField(r io.Reader, name string) int64 {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != name {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			return 0
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0
		}
		if len(f) > 1 && f[1] == "kB" {
			n <<= 10
		}
		return n
	}
	return 0
}

// PeakRSS is this process's peak resident set size in bytes (VmHWM on
// Linux), 0 where the system does not say.
func PeakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	return meminfoField(f, "VmHWM")
}
