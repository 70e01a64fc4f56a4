package cuda

import (
	"testing"

	"github.com/sdxl-go/sdxl/tensor/backendtest"
)

// TestEmulatedConformance runs the conformance suite against the backend
// on the kernel emulator, with exact allocations (an out-of-bounds access
// hits a guard page), with threads scheduled in a random order, and with
// the pool (freed NaN-filled blocks are reused, so unwritten outputs show)
// and 64-bit index arithmetic in the elementwise kernels (the path for
// tensors of 2^32 elements or more).
func TestEmulatedConformance(t *testing.T) {
	t.Run("exact", func(t *testing.T) {
		backendtest.RunAll(t, newEmuBackend(t, Options{ExactAllocations: true}))
	})
	t.Run("shuffled", func(t *testing.T) {
		// Threads between barriers run in a random order: a missing
		// barrier that the natural order satisfies fails here.
		if testing.Short() {
			t.Skip("short")
		}
		backendtest.RunAll(t, newEmuBackendOrder(t, Options{ExactAllocations: true}, "shuffle"))
	})
	t.Run("pooled", func(t *testing.T) {
		if testing.Short() {
			t.Skip("short: the exact run covers the same ops")
		}
		b := newEmuBackend(t, Options{})
		b.forceWide = true
		backendtest.RunAll(t, b)
	})
}
