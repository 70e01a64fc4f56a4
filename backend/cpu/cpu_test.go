package cpu

import (
	"os"
	"testing"

	"github.com/sdxl-go/sdxl/tensor/backendtest"
)

// TestConformance runs the backend conformance suite with every kernel
// this machine supports (subtests named after the kernel), with poisoned
// allocations, so an op that leaves part of its output unwritten fails.
func TestConformance(t *testing.T) {
	forEachKernel(t, Options{PoisonAllocations: true}, func(t *testing.T, b *Backend) {
		backendtest.RunAll(t, b)
	})
}

// TestConformanceSingleThread checks that results do not depend on the
// thread count.
func TestConformanceSingleThread(t *testing.T) {
	if testing.Short() {
		t.Skip("the multi-threaded run covers the same ops")
	}
	forEachKernel(t, Options{Threads: 1, PoisonAllocations: true}, func(t *testing.T, b *Backend) {
		backendtest.RunAll(t, b)
	})
}

// TestKernelSelection checks Options.Kernel, SDXL_CPU_KERNEL and their
// errors, and names the kernels this machine runs.
func TestKernelSelection(t *testing.T) {
	ks := Kernels()
	if ks[0] != KernelGeneric {
		t.Fatalf("Kernels() = %v, want generic first", ks)
	}
	t.Logf("this machine runs %v; default %s", ks, BestKernel())
	for _, k := range ks {
		if got := NewWithOptions(Options{Kernel: k}).Kernel(); got != k {
			t.Errorf("Options{Kernel: %s} built a %s backend", k, got)
		}
		t.Setenv(KernelEnv, string(k))
		if got := New().Kernel(); got != k {
			t.Errorf("%s=%s built a %s backend", KernelEnv, k, got)
		}
	}
	t.Setenv(KernelEnv, "auto")
	if got := New().Kernel(); got != BestKernel() {
		t.Errorf("auto built %s, want %s", got, BestKernel())
	}
	t.Setenv(KernelEnv, "sse9")
	if _, err := Open(Options{}); err == nil {
		t.Error("SDXL_CPU_KERNEL=sse9: no error")
	} else {
		t.Log(err)
	}
	os.Unsetenv(KernelEnv)
	if len(ks) < 3 {
		if _, err := Open(Options{Kernel: KernelAVX512}); err == nil {
			t.Errorf("avx512 on a machine that runs only %v: no error", ks)
		}
	}
	if _, err := Open(Options{Kernel: "AVX512"}); err == nil {
		t.Error(`Options{Kernel: "AVX512"}: no error (names are lower case)`)
	}
}
