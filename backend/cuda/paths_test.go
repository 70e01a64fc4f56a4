package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/tensor"
)

// These tests cover what the conformance suite cannot see from outside:
// every attention implementation (the suite's sizes all pick the generic
// kernel), the chunked paths (conversion staging, im2col chunks, GEMM
// attention query chunks), mixed dtypes, and SDXL-like shapes. They run
// on the emulator and on a GPU, against the CPU backend.

// newBackendFunc opens a backend with options (emulated or real).
type newBackendFunc func(t *testing.T, o Options) *Backend

// tolFor is the relative error allowed for an op's result in dtype dt
// against the CPU backend (DESIGN.md §2: 1e-2 for reduced precision).
func tolFor(dt tensor.DType) float64 {
	if dt == tensor.F32 {
		return 1e-5
	}
	return 1e-2
}

// pair holds one input on both backends.
type pair struct {
	g, c *tensor.Tensor
}

// inputs uploads the same random data to the backend under test and the
// CPU reference.
type inputs struct {
	g   *Backend
	c   *cpu.Backend
	rng *rand.Rand
}

func newInputs(g *Backend) *inputs {
	return &inputs{g: g, c: cpu.New(), rng: rand.New(rand.NewPCG(7, 11))}
}

func (in *inputs) rand(dt tensor.DType, lo, hi float64, shape ...int) pair {
	d := make([]float32, tensor.Shape(shape).Numel())
	for i := range d {
		d[i] = float32(lo + (hi-lo)*in.rng.Float64())
	}
	return in.from(dt, shape, d)
}

func (in *inputs) from(dt tensor.DType, shape tensor.Shape, d []float32) pair {
	return pair{in.g.FromFloat32(dt, shape, d), in.c.FromFloat32(dt, shape, d)}
}

// compare checks got against want within tol, logging the error.
func compare(t *testing.T, name string, b *Backend, got *tensor.Tensor, want *tensor.Tensor, tol float64) {
	t.Helper()
	if !got.Shape().Equal(want.Shape()) || got.DType() != want.DType() {
		t.Errorf("%s: got %v %v, want %v %v", name, got.Shape(), got.DType(), want.Shape(), want.DType())
		return
	}
	g := b.ToFloat32(got)
	w := want.Backend().ToFloat32(want)
	if err := b.Err(); err != nil {
		t.Fatalf("%s: backend error: %v", name, err)
	}
	for i, v := range g {
		if math.IsNaN(float64(v)) && !math.IsNaN(float64(w[i])) {
			t.Errorf("%s: element %d is NaN, want %v", name, i, w[i])
			return
		}
	}
	e := golden.RelErr(g, w)
	t.Logf("%s: rel err %.3g", name, e)
	if !(e <= tol) {
		t.Errorf("%s: relative error %.3g > %.3g", name, e, tol)
	}
}

type attnCase struct {
	q, k, v, mask tensor.Shape
}

// maskData is an additive mask like diffusers builds: 0, -10000 (masked)
// and small biases, with the first key of every row attended.
func maskData(rng *rand.Rand, s tensor.Shape) []float32 {
	d := make([]float32, s.Numel())
	lk := s[len(s)-1]
	for i := range d {
		switch {
		case i%lk == 0:
		case rng.IntN(4) == 0:
			d[i] = -10000
		default:
			d[i] = float32(rng.Float64() - 0.5)
		}
	}
	return d
}

func runAttentionCases(t *testing.T, b *Backend, path string, cases []attnCase, dts []tensor.DType) {
	in := newInputs(b)
	for _, c := range cases {
		for _, dt := range dts {
			D := c.q[3]
			if got := b.attentionPath(D, c.v[3], dt, c.q[2], c.k[2]); got != path {
				t.Errorf("%v q%v: attention path %q, want %q", dt, c.q, got, path)
				continue
			}
			q := in.rand(dt, -2, 2, c.q...)
			k := in.rand(dt, -2, 2, c.k...)
			v := in.rand(dt, -1, 1, c.v...)
			var m pair
			if c.mask != nil {
				// The mask is F32 even for F16 inputs, as a caller may pass it.
				m = in.from(tensor.F32, c.mask, maskData(in.rng, c.mask))
			}
			scale := float32(1 / math.Sqrt(float64(D)))
			got := b.Attention(q.g, k.g, v.g, m.g, scale)
			want := in.c.Attention(q.c, k.c, v.c, m.c, scale)
			compare(t, fmt.Sprintf("%s %v q%v k%v v%v mask%v", path, dt, c.q, c.k, c.v, c.mask), b, got, want, tolFor(dt))
		}
	}
}

func testAttentionPaths(t *testing.T, open newBackendFunc, big bool) {
	t.Run("flash", func(t *testing.T) {
		b := open(t, Options{Attention: attnFlash})
		if err := b.flashAvailable(); err != nil {
			t.Skipf("flash attention unavailable: %v", err)
		}
		cases := []attnCase{
			{q: S(1, 2, 70, 64), k: S(1, 2, 77, 64), v: S(1, 2, 77, 64)},
			{q: S(2, 1, 64, 64), k: S(2, 1, 32, 64), v: S(2, 1, 32, 64), mask: S(2, 1, 64, 32)},
			{q: S(1, 3, 17, 64), k: S(1, 3, 5, 64), v: S(1, 3, 5, 64), mask: S(1, 1, 1, 5)},
			{q: S(2, 2, 33, 64), k: S(2, 2, 33, 64), v: S(2, 2, 33, 64), mask: S(33, 33)},
		}
		if big {
			cases = append(cases,
				attnCase{q: S(2, 10, 1024, 64), k: S(2, 10, 1024, 64), v: S(2, 10, 1024, 64)},
				attnCase{q: S(2, 10, 1024, 64), k: S(2, 10, 77, 64), v: S(2, 10, 77, 64)},
				attnCase{q: S(1, 20, 77, 64), k: S(1, 20, 77, 64), v: S(1, 20, 77, 64), mask: S(1, 1, 77, 77)})
		}
		runAttentionCases(t, b, attnFlash, cases, []tensor.DType{tensor.F16, tensor.BF16})
	})
	t.Run("generic", func(t *testing.T) {
		b := open(t, Options{Attention: attnGeneric})
		cases := []attnCase{
			{q: S(1, 2, 9, 64), k: S(1, 2, 77, 64), v: S(1, 2, 77, 64), mask: S(1, 1, 1, 77)},
			{q: S(1, 1, 6, 512), k: S(1, 1, 6, 512), v: S(1, 1, 6, 512)},
			{q: S(2, 1, 5, 40), k: S(2, 1, 70, 40), v: S(2, 1, 70, 33), mask: S(2, 1, 5, 70)},
			{q: S(1, 1, 3, 1000), k: S(1, 1, 4, 1000), v: S(1, 1, 4, 1000)},
		}
		if big {
			cases = append(cases, attnCase{q: S(1, 1, 256, 512), k: S(1, 1, 256, 512), v: S(1, 1, 256, 512)})
		}
		runAttentionCases(t, b, attnGeneric, cases, []tensor.DType{tensor.F32, tensor.F16})
	})
	t.Run("gemm", func(t *testing.T) {
		b := open(t, Options{Attention: attnGEMM})
		b.attnChunkBytes = 3000 // several query chunks
		cases := []attnCase{
			{q: S(1, 1, 12, 512), k: S(1, 1, 12, 512), v: S(1, 1, 12, 512)},
			{q: S(2, 3, 7, 16), k: S(2, 3, 9, 16), v: S(2, 3, 9, 5), mask: S(2, 1, 7, 9)},
			{q: S(1, 2, 10, 64), k: S(1, 2, 77, 64), v: S(1, 2, 77, 64), mask: S(1, 1, 1, 77)},
		}
		if big {
			b.attnChunkBytes = 64 << 20
			cases = append(cases, attnCase{q: S(1, 1, 4096, 512), k: S(1, 1, 4096, 512), v: S(1, 1, 4096, 512)})
		}
		runAttentionCases(t, b, attnGEMM, cases, []tensor.DType{tensor.F32, tensor.F16, tensor.BF16})
	})
	t.Run("auto", func(t *testing.T) {
		b := open(t, Options{})
		want := attnFlash
		if b.flashAvailable() != nil {
			want = attnGEMM
		}
		if got := b.attentionPath(64, 64, tensor.F16, 4096, 4096); got != want {
			t.Errorf("SDXL self-attention F16: path %q, want %q", got, want)
		}
		if got := b.attentionPath(64, 64, tensor.F32, 4096, 4096); got != attnGEMM {
			t.Errorf("SDXL 64x64 self-attention F32: path %q, want %q", got, attnGEMM)
		}
		if got := b.attentionPath(64, 64, tensor.F32, 1024, 1024); got != attnGeneric {
			t.Errorf("SDXL 32x32 self-attention F32: path %q, want %q", got, attnGeneric)
		}
		if got := b.attentionPath(512, 512, tensor.F32, 16384, 16384); got != attnGEMM {
			t.Errorf("VAE mid-block attention F32: path %q, want %q", got, attnGEMM)
		}
		if got := b.attentionPath(8, 5, tensor.F32, 17, 33); got != attnGeneric {
			t.Errorf("small attention: path %q, want %q", got, attnGeneric)
		}
	})
}

// S is shorthand for a shape.
func S(d ...int) tensor.Shape { return tensor.Shape(d) }

// testChunkedPaths shrinks the temporary-buffer bounds so that every
// chunked loop runs several times, and mixes dtypes.
func testChunkedPaths(t *testing.T, open newBackendFunc) {
	b := open(t, Options{})
	b.stageElems = 7
	b.convChunkBytes = 500
	in := newInputs(b)
	t.Run("staging", func(t *testing.T) {
		for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16} {
			x := in.rand(dt, -3, 3, 5, 13)
			compare(t, fmt.Sprintf("FromFloat32/ToFloat32 %v", dt), b, x.g, x.c, 0)
		}
	})
	t.Run("conv", func(t *testing.T) {
		for _, dt := range []tensor.DType{tensor.F32, tensor.F16} {
			x := in.rand(dt, -1, 1, 2, 6, 9, 11)
			w := in.rand(dt, -1, 1, 4, 6, 3, 3)
			bias := in.rand(dt, -1, 1, 4)
			for _, sp := range [][2]int{{1, 1}, {2, 1}, {1, 0}} {
				got := b.Conv2D(x.g, w.g, bias.g, sp[0], sp[1])
				want := in.c.Conv2D(x.c, w.c, bias.c, sp[0], sp[1])
				compare(t, fmt.Sprintf("Conv2D %v stride %d pad %d", dt, sp[0], sp[1]), b, got, want, tolFor(dt))
			}
		}
	})
	t.Run("mixed dtypes", func(t *testing.T) {
		a := in.rand(tensor.F16, -1, 1, 3, 5, 7)
		w := in.rand(tensor.F32, -1, 1, 9, 7)
		bias := in.rand(tensor.F32, -1, 1, 9)
		compare(t, "MatMul F16 x F32", b, b.MatMul(a.g, w.g, false, true), in.c.MatMul(a.c, w.c, false, true), 1e-2)
		compare(t, "Linear F16 x F32", b, tensor.Linear(b, a.g, w.g, bias.g), tensor.Linear(in.c, a.c, w.c, bias.c), 1e-2)
		compare(t, "Add F16 + F32", b, b.Add(a.g, a.g), in.c.Add(a.c, a.c), 1e-2)
		x := in.rand(tensor.F16, -1, 1, 1, 6, 5, 5)
		cw := in.rand(tensor.F32, -1, 1, 2, 6, 3, 3)
		compare(t, "Conv2D F16 x F32", b, b.Conv2D(x.g, cw.g, nil, 1, 1), in.c.Conv2D(x.c, cw.c, nil, 1, 1), 1e-2)
		gw := in.rand(tensor.F32, 0.5, 1.5, 6)
		compare(t, "GroupNorm F16 x, F32 weight", b, b.GroupNorm(x.g, 3, gw.g, nil, 1e-5), in.c.GroupNorm(x.c, 3, gw.c, nil, 1e-5), 1e-2)
		c32 := in.rand(tensor.F32, -1, 1, 1, 2, 5, 5)
		compare(t, "Concat F16 + F32", b, b.Concat(1, x.g, c32.g), in.c.Concat(1, x.c, c32.c), 1e-2)
		q := in.rand(tensor.F16, -1, 1, 1, 2, 5, 8)
		k := in.rand(tensor.F32, -1, 1, 1, 2, 6, 8)
		compare(t, "Attention F16 q, F32 k/v", b, b.Attention(q.g, k.g, k.g, nil, 0.3), in.c.Attention(q.c, k.c, k.c, nil, 0.3), 1e-2)
	})
	t.Run("split groupnorm", func(t *testing.T) {
		// Every group split into parts of about 7 elements (the last
		// shorter, uneven across channel boundaries), and a single-part
		// run of the same input for comparison: the statistics combine
		// partial means and squared deviations in double precision, so
		// they must hold even with a mean 50 times the spread.
		b.gnTargetBlocks, b.gnMinChunk = 1<<20, 7
		defer func() { b.gnTargetBlocks, b.gnMinChunk = 0, 0 }()
		for _, c := range []struct {
			shape  []int
			groups int
			offset float64
			silu   bool
		}{
			{[]int{2, 6, 5, 7}, 3, 0, false},
			{[]int{1, 64, 9, 9}, 32, 50, true},
			{[]int{2, 8, 3, 2, 2}, 4, -2, true},
			{[]int{1, 4, 300}, 1, 3, false},
		} {
			for _, dt := range []tensor.DType{tensor.F32, tensor.F16} {
				x := in.rand(dt, c.offset-1, c.offset+1, c.shape...)
				w := in.rand(tensor.F32, 0.5, 1.5, c.shape[1])
				bias := in.rand(dt, -1, 1, c.shape[1])
				name := fmt.Sprintf("GroupNorm %v %v groups=%d offset=%v silu=%v", dt, c.shape, c.groups, c.offset, c.silu)
				got := b.GroupNorm(x.g, c.groups, w.g, bias.g, 1e-5)
				want := in.c.GroupNorm(x.c, c.groups, w.c, bias.c, 1e-5)
				if c.silu {
					got = b.GroupNormSiLU(x.g, c.groups, w.g, bias.g, 1e-5)
					want = tensor.GroupNormSiLU(in.c, x.c, c.groups, w.c, bias.c, 1e-5)
				}
				compare(t, name, b, got, want, tolFor(dt))
				if c.silu {
					again := b.ToFloat32(b.GroupNormSiLU(x.g, c.groups, w.g, bias.g, 1e-5))
					if first := b.ToFloat32(got); !slices.Equal(first, again) {
						t.Errorf("%s: two runs differ", name)
					}
				}
			}
		}
		if p := b.groupNormParts(2, 300); p != 43 {
			t.Errorf("groupNormParts(2 groups of 300) with 7-element parts = %d, want 43", p)
		}
	})
	t.Run("sdxl-like", func(t *testing.T) {
		// Rank-3 activations against rank-2 weights (folded batch), a
		// GroupNorm over many channels per group, a GEGLU of a wide row.
		x := in.rand(tensor.F16, -1, 1, 2, 77, 64)
		w := in.rand(tensor.F16, -0.2, 0.2, 320, 64)
		compare(t, "MatMul [2 77 64] x [320 64]^T", b, b.MatMul(x.g, w.g, false, true), in.c.MatMul(x.c, w.c, false, true), 1e-2)
		h := in.rand(tensor.F16, -2, 3, 2, 64, 8, 8)
		compare(t, "GroupNormSiLU 32 groups", b, b.GroupNormSiLU(h.g, 32, nil, nil, 1e-5), tensor.GroupNormSiLU(in.c, h.c, 32, nil, nil, 1e-5), 1e-2)
		g := in.rand(tensor.F16, -3, 3, 2, 5, 2560)
		compare(t, "GEGLU [2 5 2560]", b, b.GEGLU(g.g), in.c.GEGLU(g.c), 1e-2)
		u := in.rand(tensor.F16, -1, 1, 1, 4, 5, 3)
		compare(t, "Upsample 5x3 -> 10x6", b, b.Upsample(u.g, 10, 6), in.c.Upsample(u.c, 10, 6), 0)
	})
}

func TestEmulatedAttentionPaths(t *testing.T) {
	testAttentionPaths(t, func(t *testing.T, o Options) *Backend { return newEmuBackend(t, o) }, false)
}

// TestEmulatedAttentionPathsShuffled reruns the attention kernels (the ones
// with the most barriers) with threads in random and reverse order.
func TestEmulatedAttentionPathsShuffled(t *testing.T) {
	for _, order := range []string{"shuffle", "reverse"} {
		t.Run(order, func(t *testing.T) {
			testAttentionPaths(t, func(t *testing.T, o Options) *Backend { return newEmuBackendOrder(t, o, order) }, false)
		})
	}
}

func TestEmulatedChunkedPaths(t *testing.T) {
	testChunkedPaths(t, func(t *testing.T, o Options) *Backend { return newEmuBackend(t, o) })
}
