package cpu

import (
	"testing"

	"github.com/sdxl-go/sdxl/tensor/backendtest"
)

// TestConformance runs the backend conformance suite with poisoned
// allocations, so an op that leaves part of its output unwritten fails.
func TestConformance(t *testing.T) {
	backendtest.RunAll(t, NewWithOptions(Options{PoisonAllocations: true}))
}

// TestConformanceSingleThread checks that results do not depend on the
// thread count.
func TestConformanceSingleThread(t *testing.T) {
	if testing.Short() {
		t.Skip("the multi-threaded run covers the same ops")
	}
	backendtest.RunAll(t, NewWithOptions(Options{Threads: 1, PoisonAllocations: true}))
}
