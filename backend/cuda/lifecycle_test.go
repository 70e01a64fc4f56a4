package cuda

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sdxl-go/sdxl/tensor"
)

// testFailureIsRecorded: an allocation the device cannot satisfy becomes
// the backend's error (naming the op, the call and the CUDA result),
// later ops are skipped without crashing, and ToFloat32 returns zeros.
func testFailureIsRecorded(t *testing.T, open newBackendFunc, huge int) {
	b := open(t, Options{})
	x := b.FromFloat32(tensor.F32, S(2, 2), []float32{1, 2, 3, 4})
	big := b.Zeros(tensor.F32, huge, 1024)
	err := b.Sync()
	if err == nil {
		t.Fatal("allocating a huge tensor did not fail")
	}
	t.Logf("recorded error: %v", err)
	var ce *Error
	if !errors.As(err, &ce) || !strings.HasPrefix(ce.Name, "CUDA_ERROR_") || ce.Call != "cuMemAlloc_v2" || !strings.HasPrefix(ce.Op, "Zeros") {
		t.Errorf("error %v does not name the op, the call and the result", err)
	}
	y := b.Add(big, big) // skipped, but shapes still checked and a tensor returned
	if !y.Shape().Equal(S(huge, 1024)) {
		t.Errorf("Add after failure: shape %v", y.Shape())
	}
	if got := b.ToFloat32(x); got[0] != 0 || len(got) != 4 {
		t.Errorf("ToFloat32 after failure: %v (want zeros)", got)
	}
	if b.Err() != err {
		t.Errorf("Err changed from %v to %v", err, b.Err())
	}
	y.Free()
	big.Free()
	x.Free()
}

// testMemoryLifecycle: Free returns memory to the pool (in-use bytes drop
// and the next op of the same size does not allocate), dropped tensors are
// reclaimed by the garbage collector, a freed tensor cannot be used, and
// the backend serves several goroutines.
func testMemoryLifecycle(t *testing.T, open newBackendFunc) {
	b := open(t, Options{})
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	base := b.MemStats()
	x := b.FromFloat32(tensor.F16, S(64, 64), make([]float32, 64*64))
	for range 3 {
		y := b.SiLU(x)
		y.Free()
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	st := b.MemStats()
	if st.InUse-base.InUse != int64(sizeClass(64*64*2)) {
		t.Errorf("in use after frees: %d bytes over the start, want one tensor (%d)", st.InUse-base.InUse, sizeClass(64*64*2))
	}
	allocs := st.Allocs
	for range 5 {
		y := b.Scale(x, 2)
		y.Free()
	}
	b.Sync()
	if got := b.MemStats().Allocs; got != allocs {
		t.Errorf("steady state allocated %d new blocks", got-allocs)
	}
	if b.PeakBytes() < st.Reserved {
		t.Errorf("PeakBytes %d < reserved %d", b.PeakBytes(), st.Reserved)
	}

	// Drop tensors without Free: the garbage collector returns them.
	for range 10 {
		_ = b.GELU(x)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		b.Sync()
		if b.MemStats().InUse == st.InUse || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := b.MemStats().InUse; got != st.InUse {
		t.Errorf("dropped tensors not reclaimed: %d bytes in use, want %d", got, st.InUse)
	}

	v := x.Reshape(4096)
	x.Free()
	x.Free() // double free is harmless
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "after Free") {
				t.Errorf("use after Free: panic %v", r)
			}
		}()
		b.SiLU(v)
	}()

	// Several goroutines at once: each op is queued whole, so results stay
	// right.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := make([]float32, 1000)
			for i := range d {
				d[i] = float32(g)
			}
			a := b.FromFloat32(tensor.F32, S(1000), d)
			s := b.Add(a, a)
			got := b.ToFloat32(s)
			if got[999] != float32(2*g) {
				errs <- fmt.Errorf("goroutine %d got %v", g, got[999])
			}
			a.Free()
			s.Free()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
}

// testClose: Close releases everything and later use panics clearly.
func testClose(t *testing.T, open newBackendFunc) {
	b := open(t, Options{SyncEveryOp: true})
	x := b.Zeros(tensor.F32, 10)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	x.Free() // harmless after Close
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "closed") {
			t.Errorf("use after Close: panic %v", r)
		}
	}()
	b.Zeros(tensor.F32, 3)
}

func TestEmulatedFailureIsRecorded(t *testing.T) {
	testFailureIsRecorded(t, func(t *testing.T, o Options) *Backend { return newEmuBackend(t, o) }, 1<<20)
}

func TestEmulatedMemoryLifecycle(t *testing.T) {
	testMemoryLifecycle(t, func(t *testing.T, o Options) *Backend { return newEmuBackend(t, o) })
}

func TestEmulatedClose(t *testing.T) {
	bin := emuBinary(t)
	testClose(t, func(t *testing.T, o Options) *Backend {
		b, err := newBackend("emu", o, func() (device, error) { return openEmu(bin, "") })
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}
