package memlimit

import (
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func TestPlan(t *testing.T) {
	const gib = 1 << 30
	cases := []struct {
		live, avail int64
		want        int64
		source      string
	}{
		{14 * gib, 24 * gib, 15 * gib, "live heap"},
		{40 * gib, 64 * gib, 42 * gib, "live heap"},
		{14 * gib, 16 * gib, 16 * gib * 9 / 10, "available memory"},
		{1 * gib, 0, 2 * gib, "live heap"},
	}
	for _, c := range cases {
		l := Plan(c.live, c.avail, "")
		if l.Bytes != c.want || l.Source != c.source {
			t.Errorf("Plan(%d GiB, %d GiB) = %v, want %d (%s)", c.live/gib, c.avail/gib, l, c.want, c.source)
		}
	}
	// GOMEMLIMIT set: the runtime's current limit is reported untouched.
	old := debug.SetMemoryLimit(5 * gib)
	defer debug.SetMemoryLimit(old)
	if l := Plan(14*gib, 24*gib, "5GiB"); l.Bytes != 5*gib || l.Source != "GOMEMLIMIT" {
		t.Errorf("with GOMEMLIMIT: %v", l)
	}
	if s := Plan(7*gib, 24*gib, "").String(); s != "8.0 GiB (live heap)" {
		t.Errorf("String() = %q", s)
	}
}

// TestTrack checks that the limit follows the live heap after a
// collection.
func TestTrack(t *testing.T) {
	if os.Getenv("GOMEMLIMIT") != "" {
		t.Skip("GOMEMLIMIT is set: Track leaves the limit alone")
	}
	old := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(old)
	Track()
	keep := make([]byte, 64<<20)
	for range 3 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond) // the finalizer runs on its own goroutine
	}
	l := debug.SetMemoryLimit(-1)
	if l < 64<<20+Headroom || l > 64<<20+Headroom+256<<20 {
		t.Errorf("limit %.2f GiB with a 64 MiB live heap, want about %.2f GiB", float64(l)/(1<<30), float64(64<<20+Headroom)/(1<<30))
	}
	runtime.KeepAlive(keep)
}

func TestMeminfoField(t *testing.T) {
	in := "MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\nHugePages_Total:       0\n"
	if got := meminfoField(strings.NewReader(in), "MemAvailable"); got != 20000000<<10 {
		t.Errorf("MemAvailable = %d", got)
	}
	if got := meminfoField(strings.NewReader(in), "HugePages_Total"); got != 0 {
		t.Errorf("HugePages_Total = %d", got)
	}
	if got := meminfoField(strings.NewReader(in), "Missing"); got != 0 {
		t.Errorf("Missing = %d", got)
	}
}

func TestAvailable(t *testing.T) {
	a := Available()
	t.Logf("available to this process: %.1f GiB", float64(a)/(1<<30))
	if a < 0 {
		t.Fatalf("Available() = %d", a)
	}
}
