package cpu

import (
	"testing"
)

// forEachKernel runs f on a backend for every kernel this machine
// supports, as subtests named after the kernel, and logs which ran.
func forEachKernel(t *testing.T, opt Options, f func(t *testing.T, b *Backend)) {
	t.Helper()
	for _, k := range Kernels() {
		o := opt
		o.Kernel = k
		b, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(string(k), func(t *testing.T) { f(t, b) })
	}
	t.Logf("kernels run: %v", Kernels())
}

// forEachISA runs f at every instruction-set level of the vectorised
// loops this machine supports.
func forEachISA(t *testing.T, f func(t *testing.T, v isa)) {
	t.Helper()
	forEachKernel(t, Options{}, func(t *testing.T, b *Backend) { f(t, b.v) })
}
