// Package memlimit sets the Go runtime's soft memory limit for a process
// that holds large models.
//
// An engine's live heap is mostly its weights: a few large []float32 (or
// []uint16) slabs without pointers, which the garbage collector marks
// cheaply. Left at GOGC=100, the collector lets the heap grow to about
// twice the live heap before it collects, so a 14 GB model would fill a
// 24 GB machine with garbage activations. A memory limit a little above
// the live heap makes it collect when that is reached instead, at little
// cost (Track).
package memlimit

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
)

// Headroom is the memory allowed beyond the live heap (the weights, the
// activations in use) before the collector runs, unless 5% of the live
// heap is more.
const Headroom = 1 << 30

// Limit is a memory limit and where it came from.
type Limit struct {
	Bytes  int64
	Source string // "GOMEMLIMIT", "live heap" or "available memory"
}

func (l Limit) String() string {
	return fmt.Sprintf("%.1f GiB (%s)", float64(l.Bytes)/(1<<30), l.Source)
}

// Plan computes the limit for a live heap of live bytes (mostly a model's
// weights) on a machine with available bytes of memory (0: unknown),
// honouring gomemlimit (the GOMEMLIMIT environment variable, "" when
// unset): the user's setting wins; otherwise the live heap plus headroom,
// but at most 90% of what is available.
func Plan(live, available int64, gomemlimit string) Limit {
	if gomemlimit != "" {
		// The runtime has applied it at start-up; report it.
		return Limit{Bytes: debug.SetMemoryLimit(-1), Source: "GOMEMLIMIT"}
	}
	want := live + max(Headroom, live/20)
	if avail := available * 9 / 10; available > 0 && avail < want {
		return Limit{Bytes: avail, Source: "available memory"}
	}
	return Limit{Bytes: want, Source: "live heap"}
}

// tracking makes Track start one tracker per process: the memory limit is
// the runtime's, global by nature.
var tracking sync.Once

// Track keeps the runtime's memory limit at Plan(live heap, available
// memory) from now on, re-planning after every garbage collection, so the
// limit follows the models a process loads and frees without being told
// their sizes. It does nothing when GOMEMLIMIT is set, and only once per
// process. Until the first collection the limit is 90% of the available
// memory.
func Track() {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	tracking.Do(func() {
		avail := Available()
		if avail > 0 {
			debug.SetMemoryLimit(avail * 9 / 10)
		}
		arm(avail)
	})
}

// sentinel is garbage whose cleanup runs after the collection that
// finds it unreachable: a hook after every cycle.
type sentinel struct{ _ [16]byte }

func arm(avail int64) {
	runtime.SetFinalizer(new(sentinel), func(*sentinel) {
		s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		metrics.Read(s)
		if s[0].Value.Kind() == metrics.KindUint64 {
			debug.SetMemoryLimit(Plan(int64(s[0].Value.Uint64()), avail, "").Bytes)
		}
		arm(avail)
	})
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
