package opprof

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/tensor"
)

func TestCountsOpsAndKeepsResults(t *testing.T) {
	inner := cpu.New()
	p := New(inner, nil)
	a := p.FromFloat32(tensor.F32, tensor.Shape{2, 3}, []float32{1, 2, 3, 4, 5, 6})
	w := p.FromFloat32(tensor.F32, tensor.Shape{2, 3}, []float32{1, 0, 0, 0, 1, 0})
	y := p.Linear(a, w, nil)
	z := p.Add(y, y)
	if got := p.ToFloat32(z); got[0] != 2 || got[1] != 4 || got[2] != 8 || got[3] != 10 {
		t.Fatalf("result %v", got)
	}
	st := p.Stats()
	calls := map[string]int{}
	for _, s := range st {
		calls[s.Op] = s.Calls
	}
	if calls["Linear"] != 1 || calls["Add"] != 1 {
		t.Fatalf("calls %v", calls)
	}
	var buf bytes.Buffer
	p.Report(&buf)
	if !strings.Contains(buf.String(), "Linear") {
		t.Fatalf("report %q", buf.String())
	}
}
