package cuda

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/sdxl-go/sdxl/tensor/backendtest"
)

// Tests on a real GPU. Without one (or without the libraries) they skip
// with "CUDA unavailable: <why>"; with SDXL_CUDA_REQUIRE=1 (set by
// scripts/device-check.sh) they fail instead, so that a GPU machine whose
// setup is broken cannot pass by skipping.

// newGPU opens device 0 (SDXL_CUDA_DEVICE selects another) or skips.
func newGPU(t testing.TB, o Options) *Backend {
	t.Helper()
	ordinal := 0
	if v := os.Getenv("SDXL_CUDA_DEVICE"); v != "" {
		if _, err := fmt.Sscan(v, &ordinal); err != nil {
			t.Fatalf("SDXL_CUDA_DEVICE=%q: %v", v, err)
		}
	}
	b, err := NewWithOptions(ordinal, o)
	if err != nil {
		if errors.Is(err, ErrUnavailable) && os.Getenv("SDXL_CUDA_REQUIRE") != "1" {
			t.Skip(err.Error())
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		failed := b.Err() != nil
		if err := b.Close(); err != nil && !failed {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func gpuOpener(t *testing.T, o Options) *Backend { return newGPU(t, o) }

// TestDeviceInfo logs what was loaded (the first thing to read in a
// device-check log).
func TestDeviceInfo(t *testing.T) {
	b := newGPU(t, Options{})
	i := b.Info()
	t.Logf("device %d: %s, compute capability %d.%d, %d SMs, %.1f GiB", i.Ordinal, i.Name, i.Major, i.Minor, i.SMs, float64(i.TotalMemory)/(1<<30))
	t.Logf("driver %s, cuBLAS %d, NVRTC %d.%d", versionString(i.DriverVersion), i.CUBLASVersion, i.NVRTCVersion[0], i.NVRTCVersion[1])
	t.Logf("libraries %q", i.Libraries)
	t.Logf("include dir %q, kernel cache %q", i.IncludeDir, i.KernelCacheDir)
	if i.FlashUnavailable != "" {
		t.Logf("flash attention unavailable: %s", i.FlashUnavailable)
	}
	for _, m := range allModules {
		err := b.call(task{op: "prepare " + m.name, always: true, fn: func(d *devState) error { return d.dev.prepare(m) }})
		if err != nil {
			t.Errorf("compiling module %s: %v", m.name, err)
		}
	}
}

// TestConformance runs the conformance suite on the GPU.
func TestConformance(t *testing.T) {
	backendtest.RunAll(t, newGPU(t, Options{}))
}

// TestConformanceDebug runs it again with exact allocations and a sync
// after every op (a kernel fault is then reported with its op), and with
// the elementwise kernels' 64-bit index path.
func TestConformanceDebug(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	b := newGPU(t, Options{ExactAllocations: true, SyncEveryOp: true})
	b.forceWide = true
	backendtest.RunAll(t, b)
}

func TestAttentionPaths(t *testing.T) { testAttentionPaths(t, gpuOpener, true) }

func TestChunkedPaths(t *testing.T) { testChunkedPaths(t, gpuOpener) }

func TestFailureIsRecorded(t *testing.T) {
	// 2^30 x 1024 float32 = 4 TiB: more than any GPU has.
	testFailureIsRecorded(t, gpuOpener, 1<<30)
}

func TestMemoryLifecycle(t *testing.T) { testMemoryLifecycle(t, gpuOpener) }

func TestClose(t *testing.T) {
	testClose(t, func(t *testing.T, o Options) *Backend {
		b, err := NewWithOptions(0, o)
		if err != nil {
			if errors.Is(err, ErrUnavailable) && os.Getenv("SDXL_CUDA_REQUIRE") != "1" {
				t.Skip(err.Error())
			}
			t.Fatal(err)
		}
		return b
	})
}

// TestUnavailableMessage checks the skip path's wording where there is no
// GPU: New fails with an error wrapping ErrUnavailable.
func TestUnavailableMessage(t *testing.T) {
	b, err := New(0)
	if err == nil {
		b.Close()
		t.Skip("a GPU is present")
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("New without a GPU: %v (does not wrap ErrUnavailable)", err)
	}
	t.Logf("New(0): %v", err)
}
