package memlimit

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestPlan(t *testing.T) {
	const gib = 1 << 30
	cases := []struct {
		model, avail int64
		want         int64
		source       string
	}{
		{14 * gib, 24 * gib, 17 * gib, "model"},
		{40 * gib, 64 * gib, 40*gib + 40*gib*15/100, "model"},
		{7 * gib, 24 * gib, 10 * gib, "model"},
		{14 * gib, 16 * gib, 16 * gib * 9 / 10, "available memory"},
		{1 * gib, 0, 4 * gib, "model"},
	}
	for _, c := range cases {
		l := Plan(c.model, c.avail, "")
		if l.Bytes != c.want || l.Source != c.source {
			t.Errorf("Plan(%d GiB, %d GiB) = %v, want %d (%s)", c.model/gib, c.avail/gib, l, c.want, c.source)
		}
	}
	// GOMEMLIMIT set: the runtime's current limit is reported untouched.
	old := debug.SetMemoryLimit(5 * gib)
	defer debug.SetMemoryLimit(old)
	if l := Plan(14*gib, 24*gib, "5GiB"); l.Bytes != 5*gib || l.Source != "GOMEMLIMIT" {
		t.Errorf("with GOMEMLIMIT: %v", l)
	}
	if s := Plan(7*gib, 24*gib, "").String(); s != "10.0 GiB (model)" {
		t.Errorf("String() = %q", s)
	}
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
