package cuda

import (
	"testing"

	"github.com/sdxl-go/sdxl/tensor/backendtest"
)

// TestEmulatedConformance runs the conformance suite against the backend
// on the kernel emulator, with exact allocations (an out-of-bounds access
// hits a guard page) and again with the pool (freed NaN-filled blocks are
// reused, so unwritten outputs show).
func TestEmulatedConformance(t *testing.T) {
	t.Run("exact", func(t *testing.T) {
		backendtest.RunAll(t, newEmuBackend(t, Options{ExactAllocations: true}))
	})
	t.Run("pooled", func(t *testing.T) {
		if testing.Short() {
			t.Skip("short: the exact run covers the same ops")
		}
		backendtest.RunAll(t, newEmuBackend(t, Options{}))
	})
}
