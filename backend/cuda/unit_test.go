package cuda

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/tensor"
)

// fakeEnv is a file system of a few paths for the library search.
func fakeEnv(vars map[string]string, files ...string) libEnv {
	set := map[string]bool{}
	for _, f := range files {
		set[f] = true
	}
	return libEnv{
		getenv: func(k string) string { return vars[k] },
		glob: func(pattern string) ([]string, error) {
			var m []string
			for f := range set {
				if ok, _ := filepath.Match(pattern, f); ok {
					m = append(m, f)
				}
			}
			// Folders of the files match too (for /usr/local/cuda-*).
			for f := range set {
				for d := filepath.Dir(f); d != "/" && d != "."; d = filepath.Dir(d) {
					if ok, _ := filepath.Match(pattern, d); ok && !slices.Contains(m, d) {
						m = append(m, d)
					}
				}
			}
			slices.Sort(m)
			return m, nil
		},
		exists: func(p string) bool { return set[p] },
	}
}

func TestToolkitCandidates(t *testing.T) {
	env := fakeEnv(map[string]string{"CUDA_HOME": "/opt/cuda"},
		"/opt/cuda/lib64/libcublas.so.12",
		"/usr/local/cuda/lib64/libcublas.so.13",
		"/usr/local/cuda-12.4/lib64/libcublas.so.12",
		"/usr/local/cuda-12.10/lib64/libcublas.so.12",
		"/usr/local/cuda-13.0/targets/x86_64-linux/lib/libcublas.so.13",
	)
	got := env.toolkitCandidates("libcublas.so", []int{13, 12})
	want := []string{
		"/opt/cuda/lib64/libcublas.so.12", // $CUDA_HOME wins over newer versions elsewhere
		"/usr/local/cuda/lib64/libcublas.so.13",
	}
	if targetDir() == "x86_64-linux" {
		want = append(want, "/usr/local/cuda-13.0/targets/x86_64-linux/lib/libcublas.so.13")
	}
	want = append(want,
		"/usr/local/cuda-12.10/lib64/libcublas.so.12", // 12.10 is newer than 12.4
		"/usr/local/cuda-12.4/lib64/libcublas.so.12",
		"libcublas.so.13", "libcublas.so.12", // then the loader path
	)
	if !slices.Equal(got, want) {
		t.Errorf("candidates:\n got %q\nwant %q", got, want)
	}
	env = fakeEnv(map[string]string{"SDXL_CUDA_LIBDIR": "/wheel/lib:/other"}, "/wheel/lib/libnvrtc.so.13", "/usr/local/cuda/lib64/libnvrtc.so.13")
	if got := env.toolkitCandidates("libnvrtc.so", []int{13}); got[0] != "/wheel/lib/libnvrtc.so.13" {
		t.Errorf("SDXL_CUDA_LIBDIR not searched first: %q", got)
	}
}

func TestLibraryMajors(t *testing.T) {
	for _, c := range []struct {
		driver int
		want   []int
	}{
		{13000, []int{13, 12}},
		{13020, []int{13, 12}},
		{12080, []int{12, 13}}, // a CUDA 12 driver cannot run cuBLAS 13: try it last
		{0, []int{13, 12}},
	} {
		if got := libraryMajors(c.driver); !slices.Equal(got, c.want) {
			t.Errorf("libraryMajors(%d) = %v, want %v", c.driver, got, c.want)
		}
	}
}

func TestDriverCandidates(t *testing.T) {
	env := fakeEnv(nil, "/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/usr/local/cuda/compat/libcuda.so.1")
	got := env.driverCandidates()
	want := []string{"libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/usr/local/cuda/compat/libcuda.so.1"}
	if !slices.Equal(got, want) {
		t.Errorf("driver candidates %q, want %q", got, want)
	}
}

func TestCompanionsAndInclude(t *testing.T) {
	env := fakeEnv(nil,
		"/usr/local/cuda/lib64/libcublasLt.so.13", "/usr/local/cuda/lib64/libcublas.so.13",
		"/usr/local/cuda/lib64/libnvrtc-builtins.so.13.0", "/usr/local/cuda/lib64/libnvrtc.so.13",
		"/usr/local/cuda/include/mma.h", "/usr/local/cuda/include/cuda_fp16.h")
	if got := env.companions("/usr/local/cuda/lib64/libcublas.so.13"); !slices.Equal(got, []string{"/usr/local/cuda/lib64/libcublasLt.so.13"}) {
		t.Errorf("cuBLAS companions %q", got)
	}
	if got := env.companions("/usr/local/cuda/lib64/libnvrtc.so.13"); !slices.Equal(got, []string{"/usr/local/cuda/lib64/libnvrtc-builtins.so.13.0"}) {
		t.Errorf("NVRTC companions %q", got)
	}
	if got := env.companions("libnvrtc.so.13"); got != nil {
		t.Errorf("companions of a bare soname: %q", got)
	}
	if got := env.findInclude("/usr/local/cuda/lib64/libnvrtc.so.13"); got != "/usr/local/cuda/include" {
		t.Errorf("include folder %q", got)
	}
	if got := fakeEnv(nil).findInclude("libnvrtc.so.13"); got != "" {
		t.Errorf("include folder without headers: %q", got)
	}
}

func TestSizeClass(t *testing.T) {
	prev := 0
	for n := 1; n < 1<<26; n = n*5/4 + 1 {
		c := sizeClass(n)
		switch {
		case c < n:
			t.Fatalf("sizeClass(%d) = %d < n", n, c)
		case c%512 != 0:
			t.Fatalf("sizeClass(%d) = %d not a multiple of 512", n, c)
		case n > 1<<20 && float64(c) > 1.125*float64(n):
			t.Fatalf("sizeClass(%d) = %d wastes more than 12.5%%", n, c)
		case c < prev:
			t.Fatalf("sizeClass not monotonic at %d", n)
		}
		if sizeClass(c) != c {
			t.Fatalf("class %d is not its own class", c)
		}
		prev = c
	}
}

// fakeAlloc hands out addresses and can run out of memory.
type fakeAlloc struct {
	next, limit, used int
	live              map[uint64]int
	frees             int
}

func (f *fakeAlloc) memAlloc(n int) (uint64, error) {
	if f.used+n > f.limit {
		return 0, &Error{Call: "cuMemAlloc_v2", Code: cudaErrOutOfMemory, Name: "CUDA_ERROR_OUT_OF_MEMORY"}
	}
	f.next += 1 << 30
	f.used += n
	f.live[uint64(f.next)] = n
	return uint64(f.next), nil
}

func (f *fakeAlloc) memFree(p uint64) error {
	n, ok := f.live[p]
	if !ok {
		return errors.New("double free")
	}
	delete(f.live, p)
	f.used -= n
	f.frees++
	return nil
}

func TestPool(t *testing.T) {
	fa := &fakeAlloc{limit: 10 << 20, live: map[uint64]int{}}
	var st memStats
	p := newPool(fa, false, &st)
	a, ca, err := p.alloc(3000)
	if err != nil || ca != 4096 {
		t.Fatalf("alloc(3000) = %v class %d", err, ca)
	}
	if err := p.release(a, ca); err != nil {
		t.Fatal(err)
	}
	b, cb, _ := p.alloc(4000) // same class: reused, no new allocation
	if b != a || cb != ca || st.allocs.Load() != 1 {
		t.Fatalf("class not reused: %#x vs %#x, %d allocs", b, a, st.allocs.Load())
	}
	if err := p.release(b, cb); err != nil {
		t.Fatal(err)
	}
	if err := p.release(b, cb); err == nil {
		t.Error("double release not reported")
	}
	// Fill memory with cached blocks of another class, then ask for a big
	// one: the pool must trim its cache and retry.
	var held []uint64
	for range 4 {
		q, _, err := p.alloc(2 << 20)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, q)
	}
	for _, q := range held {
		p.release(q, 2<<20)
	}
	if _, _, err := p.alloc(9 << 20); err != nil {
		t.Fatalf("alloc after trim: %v", err)
	}
	if fa.frees < 4 {
		t.Errorf("cache not trimmed (%d frees)", fa.frees)
	}
	if _, _, err := p.alloc(9 << 20); !isOutOfMemory(err) {
		t.Errorf("expected out of memory, got %v", err)
	}
	if st.peakReserved.Load() < 9<<20 || st.inUse.Load() != int64(sizeClass(9<<20)) {
		t.Errorf("stats: peak reserved %d, in use %d", st.peakReserved.Load(), st.inUse.Load())
	}
	if err := p.releaseAll(); err != nil {
		t.Fatal(err)
	}
	if len(fa.live) != 0 || st.reserved.Load() != 0 || st.inUse.Load() != 0 {
		t.Errorf("after releaseAll: %d live, reserved %d, in use %d", len(fa.live), st.reserved.Load(), st.inUse.Load())
	}
}

// colMajorGemm applies a gemmCall to host arrays with cuBLAS's documented
// column-major semantics (element (i, j) of an ld-matrix at i + j*ld).
func colMajorGemm(g gemmCall, A, B, C []float64, aOff, bOff, cOff int) {
	for bi := range g.batch {
		a := aOff + bi*int(g.strideA)
		b := bOff + bi*int(g.strideB)
		c := cOff + bi*int(g.strideC)
		for j := range g.n {
			for i := range g.m {
				var s float64
				for l := range g.k {
					ai, bj := a+i+l*g.lda, b+l+j*g.ldb
					if g.transA {
						ai = a + l + i*g.lda
					}
					if g.transB {
						bj = b + j + l*g.ldb
					}
					av, bv := A[ai], B[bj]
					s += av * bv
				}
				idx := c + i + j*g.ldc
				C[idx] = float64(g.alpha)*s + float64(g.beta)*C[idx]
			}
		}
	}
}

// TestColMajorMapping checks rowGemm.colMajor on random row-major products
// with padded leading dimensions, strides and every transpose combination:
// the column-major result must equal the row-major definition.
func TestColMajorMapping(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for it := range 200 {
		M, N, K := 1+rng.IntN(7), 1+rng.IntN(7), 1+rng.IntN(7)
		tA, tB := rng.IntN(2) == 1, rng.IntN(2) == 1
		batch := 1 + rng.IntN(3)
		// Stored shapes and leading dimensions (row lengths).
		ar, ac := M, K
		if tA {
			ar, ac = K, M
		}
		br, bc := K, N
		if tB {
			br, bc = N, K
		}
		lda, ldb, ldc := ac+rng.IntN(3), bc+rng.IntN(3), N+rng.IntN(3)
		sA, sB, sC := ar*lda+rng.IntN(4), br*ldb+rng.IntN(4), M*ldc+rng.IntN(4)
		A := randSlice(rng, batch*sA+5)
		B := randSlice(rng, batch*sB+5)
		C := randSlice(rng, batch*sC+5)
		alpha, beta := float32(0.5+rng.Float64()), float32(rng.IntN(2))
		want := slices.Clone(C)
		for bi := range batch {
			for i := range M {
				for j := range N {
					var s float64
					for l := range K {
						ai, bj := bi*sA+i*lda+l, bi*sB+l*ldb+j
						if tA {
							ai = bi*sA + l*lda + i
						}
						if tB {
							bj = bi*sB + j*ldb + l
						}
						av, bv := A[ai], B[bj]
						s += av * bv
					}
					idx := bi*sC + i*ldc + j
					want[idx] = float64(alpha)*s + float64(beta)*want[idx]
				}
			}
		}
		rg := rowGemm{transA: tA, transB: tB, m: M, n: N, k: K, alpha: alpha, beta: beta,
			lda: lda, ldb: ldb, ldc: ldc, strideA: int64(sA), strideB: int64(sB), strideC: int64(sC), batch: batch}
		cg := rg.colMajor(cublasCompute32F)
		if err := cg.validate(); err != nil {
			t.Fatalf("case %d: %v", it, err)
		}
		// cuBLAS's A is our B and vice versa.
		got := slices.Clone(C)
		colMajorGemm(cg, B, A, got, 0, 0, 0)
		for i := range want {
			if math.Abs(got[i]-want[i]) > 1e-9 {
				t.Fatalf("case %d (M=%d N=%d K=%d tA=%v tB=%v): element %d = %v, want %v", it, M, N, K, tA, tB, i, got[i], want[i])
			}
		}
	}
}

func randSlice(rng *rand.Rand, n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = rng.Float64()*2 - 1
	}
	return s
}

func TestGemmValidate(t *testing.T) {
	g := gemmCall{m: 4, n: 3, k: 5, lda: 4, ldb: 5, ldc: 4, batch: 1, aType: tensor.F16, bType: tensor.F16}
	if err := g.validate(); err != nil {
		t.Fatal(err)
	}
	bad := g
	bad.lda = 3
	if err := bad.validate(); err == nil || !strings.Contains(err.Error(), "lda=3") {
		t.Errorf("small lda: %v", err)
	}
	bad = g
	bad.bType = tensor.F32
	if err := bad.validate(); err == nil {
		t.Error("mixed operand types accepted")
	}
	tr := g
	tr.transA, tr.lda = true, 5 // A stored k x m
	if err := tr.validate(); err != nil {
		t.Errorf("transposed A: %v", err)
	}
}

func TestCollapse(t *testing.T) {
	for _, c := range []struct {
		shape, a, b     []int
		wantS, wantA, w []int
	}{
		// Same-shape Add: one dimension.
		{[]int{2, 3, 4}, []int{12, 4, 1}, []int{12, 4, 1}, []int{24}, []int{1}, []int{1}},
		// Bias over channels of [N, C, HW]: the broadcast blocks merging.
		{[]int{2, 3, 4}, []int{12, 4, 1}, []int{0, 1, 0}, []int{2, 3, 4}, []int{12, 4, 1}, []int{0, 1, 0}},
		// Size-1 dimensions disappear.
		{[]int{1, 5, 1}, []int{5, 1, 1}, []int{0, 0, 0}, []int{5}, []int{1}, []int{0}},
		// All ones: a single element.
		{[]int{1, 1}, []int{1, 1}, []int{1, 1}, []int{1}, []int{0}, []int{0}},
		// Transpose of the last two axes stays 2-d after merging the batch.
		{[]int{2, 3, 4, 5}, []int{60, 20, 1, 4}, []int{60, 20, 5, 1}, []int{6, 4, 5}, []int{20, 1, 4}, []int{20, 5, 1}},
	} {
		s, st := collapse("test", c.shape, c.a, c.b)
		if !slices.Equal(s, c.wantS) || !slices.Equal(st[0], c.wantA) || !slices.Equal(st[1], c.w) {
			t.Errorf("collapse(%v, %v, %v) = %v %v %v, want %v %v %v", c.shape, c.a, c.b, s, st[0], st[1], c.wantS, c.wantA, c.w)
		}
	}
}

// TestKernelArgLayout checks the byte layout of the structs the kernels
// receive (prelude.cuh: Dims 192 bytes, MaskSpec 56, AttnSpec 64) and of
// scalar slots.
func TestKernelArgLayout(t *testing.T) {
	d := dimsStruct([]int{6, 4}, []int{20, 1}, []int{0, 3})
	if len(d) != 192 {
		t.Fatalf("Dims is %d bytes", len(d))
	}
	word := func(b []byte, i int) int64 { return int64(binary.LittleEndian.Uint64(b[8*i:])) }
	if word(d, 0) != 6 || word(d, 1) != 4 || word(d, 2) != 1 || word(d, 7) != 1 || word(d, 8) != 20 || word(d, 9) != 1 || word(d, 10) != 0 || word(d, 17) != 3 {
		t.Errorf("Dims layout wrong: %v", d)
	}
	m := maskSpecStruct(7, 3, maskStrides{1, 2, 3, 4}, 5)
	if len(m) != 56 || word(m, 0) != 7 || word(m, 5) != 4 || binary.LittleEndian.Uint32(m[48:]) != 5 {
		t.Errorf("MaskSpec layout wrong: %v", m)
	}
	s := attnSpec{ms: maskStrides{1, 2, 3, 4}, heads: 5, lq: 6, lk: 7, d: 8, dv: 9, tk: 10, dp: 11, bh0: 12}.bytes()
	if len(s) != 64 || word(s, 3) != 4 || binary.LittleEndian.Uint32(s[32:]) != 5 || binary.LittleEndian.Uint32(s[60:]) != 12 {
		t.Errorf("AttnSpec layout wrong: %v", s)
	}
	a := newArgs().i32(-2).f32(1.5).ptr(0xdeadbeef).raw(m)
	if len(a.offs) != 4 || len(a.data) != 24+56 {
		t.Fatalf("args: %d slots, %d bytes", len(a.offs), len(a.data))
	}
	if int32(binary.LittleEndian.Uint32(a.slot(0))) != -2 || math.Float32frombits(binary.LittleEndian.Uint32(a.slot(1))) != 1.5 || len(a.slot(3)) != 56 {
		t.Errorf("scalar slots wrong")
	}
}

func TestCheckLaunch(t *testing.T) {
	ok := [][2][3]uint32{{{1, 1, 1}, {256, 1, 1}}, {{1<<31 - 1, 65535, 1}, {32, 32, 1}}}
	for _, c := range ok {
		if err := checkLaunch("k", c[0], c[1]); err != nil {
			t.Errorf("%v: %v", c, err)
		}
	}
	bad := [][2][3]uint32{{{0, 1, 1}, {256, 1, 1}}, {{1, 65536, 1}, {32, 1, 1}}, {{1, 1, 1}, {1025, 1, 1}}}
	for _, c := range bad {
		if err := checkLaunch("k", c[0], c[1]); err == nil {
			t.Errorf("%v accepted", c)
		}
	}
}

func TestGenericTiles(t *testing.T) {
	for _, c := range []struct{ d, dv, nch, tk int }{
		{8, 5, 1, 64}, {64, 64, 2, 64}, {40, 33, 2, 64}, {512, 512, 16, 8}, {1000, 1000, 32, 4},
	} {
		nch, tk := genericTiles(c.d, c.dv)
		if nch != c.nch || tk != c.tk || tk*nch*32 > 4096 {
			t.Errorf("genericTiles(%d, %d) = %d, %d; want %d, %d", c.d, c.dv, nch, tk, c.nch, c.tk)
		}
	}
}

func TestErrorMessages(t *testing.T) {
	e := &Error{Op: "MatMul [2 3] F16", Call: "cublasGemmEx", Code: 7, Name: "CUBLAS_STATUS_INVALID_VALUE", Msg: "m=1"}
	want := "cuda: MatMul [2 3] F16: cublasGemmEx: CUBLAS_STATUS_INVALID_VALUE (7): m=1"
	if e.Error() != want {
		t.Errorf("got %q, want %q", e.Error(), want)
	}
	if codeName(cuResultNames, "CUresult", 12345) != "CUresult(12345)" || codeName(cuResultNames, "CUresult", 2) != "CUDA_ERROR_OUT_OF_MEMORY" {
		t.Error("codeName")
	}
	u := unavailable("no device %d", 3)
	if !errors.Is(u, ErrUnavailable) || u.Error() != "CUDA unavailable: no device 3" {
		t.Errorf("unavailable: %v", u)
	}
	if !isOutOfMemory(fmt.Errorf("wrapped: %w", &Error{Call: "cuMemAlloc_v2", Code: 2})) {
		t.Error("isOutOfMemory misses a wrapped error")
	}
}

// TestMemoryBudget: a device without the driver's free-memory figure is
// taken as the backend's own (total less the context reserve); with it,
// what the backend holds counts as available, and the device's total caps
// the sum.
func TestMemoryBudget(t *testing.T) {
	b := newNullBackend(t)
	if got, want := b.MemoryBudget(), int64(80<<30-contextReserve); got != want {
		t.Fatalf("MemoryBudget of an 80 GiB device of its own: %d, want %d", got, want)
	}
	for _, c := range []struct{ held, free, total, want int64 }{
		{0, 70 << 30, 80 << 30, 70<<30 - contextReserve},
		{10 << 30, 60 << 30, 80 << 30, 70<<30 - contextReserve}, // another process holds 10 GiB
		{10 << 30, 75 << 30, 80 << 30, 80<<30 - contextReserve}, // never above the total
		{0, 100 << 20, 80 << 30, 0},                             // less than the reserve: nothing
		{0, 0, 0, 0},                                            // unknown device
	} {
		if got := budgetOf(c.held, c.free, c.total); got != c.want {
			t.Errorf("budgetOf(held %d, free %d, total %d) = %d, want %d", c.held, c.free, c.total, got, c.want)
		}
	}
}
