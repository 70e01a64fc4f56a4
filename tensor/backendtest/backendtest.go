// Package backendtest is the conformance suite every tensor.Backend runs,
// in the style of gonum's testblas: a backend's own test calls
//
//	backendtest.RunAll(t, mybackend.New())
//
// and gets one subtest per op. Each op is checked on random inputs (odd
// sizes such as 1, 3, 7, 17 and 33, non-square matrices, ranks 2 to 5,
// broadcasting, transposes, masks, tiles larger than typical blocking
// sizes) against a float64 reference implementation written here
// independently of any backend:
//
//   - arithmetic ops must match the reference to a relative error
//     ‖out−ref‖₂/‖ref‖₂ within the dtype's tolerance (Config.Tol: 1e-5 for
//     F32, 1e-2 for F16 and BF16 storage), and every element must lie within
//     10·tol·(|ref|+rms(ref)) of the reference, so a few wrong elements
//     cannot hide in the norm;
//   - data movement (Concat, Slice, Permute, Upsample, Embedding, Cast,
//     Reshape, Zeros, FromFloat32/ToFloat32) must be bit-exact, and so must
//     F32 Add, Mul and Scale (one correctly rounded float32 operation);
//     Upsample follows PyTorch's "nearest" indexing exactly, float32 scale
//     included (see tensor.NearestIndex);
//   - every output element must be written: before each call the suite
//     allocates and frees NaN-filled tensors of the output's size (so a
//     pooling allocator hands the NaN garbage back to the op), and every op
//     runs twice, each time after such poisoning; a backend without a pool
//     should poison its fresh allocations in its test configuration (the
//     CPU backend's PoisonAllocations option);
//   - ops never modify their inputs, even after the output is freed and the
//     pool poisoned again; the output has the first input's dtype and the
//     documented shape; with Config.Deterministic the two runs agree bit for
//     bit;
//   - shape errors panic with a message naming the op.
//
// The suite takes a few seconds on the CPU backend.
package backendtest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/tensor"
)

// Config parameterises the suite for a backend.
type Config struct {
	// DTypes lists the storage types to test. F32 runs every case; the
	// reduced types run a representative subset of each op.
	DTypes []tensor.DType
	// Tol is the relative error each dtype's arithmetic ops must meet.
	Tol map[tensor.DType]float64
	// Deterministic requires two runs of an op to agree bit for bit.
	Deterministic bool
	// Seed seeds the random inputs.
	Seed uint64
}

// DefaultConfig tests F32 at 1e-5 and F16/BF16 storage at 1e-2, requiring
// deterministic results.
func DefaultConfig() Config {
	return Config{
		DTypes:        []tensor.DType{tensor.F32, tensor.F16, tensor.BF16},
		Tol:           map[tensor.DType]float64{tensor.F32: 1e-5, tensor.F16: 1e-2, tensor.BF16: 1e-2},
		Deterministic: true,
		Seed:          1,
	}
}

// RunAll runs the whole suite with DefaultConfig.
func RunAll(t *testing.T, b tensor.Backend) { Run(t, b, DefaultConfig()) }

// Run runs the whole suite with cfg.
func Run(t *testing.T, b tensor.Backend, cfg Config) {
	for _, tc := range suite {
		t.Run(tc.name, func(t *testing.T) {
			h := &harness{t: t, b: b, cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, hashName(tc.name)))}
			tc.fn(h)
			if err := b.Err(); err != nil {
				t.Fatalf("%s: backend error: %v", tc.name, err)
			}
		})
	}
}

type testCase struct {
	name string
	fn   func(h *harness)
}

// suite lists every op test; ops.go fills it.
var suite []testCase

func hashName(s string) uint64 {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

type harness struct {
	t   *testing.T
	b   tensor.Backend
	cfg Config
	rng *rand.Rand
}

// dtypes returns the dtypes under test.
func (h *harness) dtypes() []tensor.DType { return h.cfg.DTypes }

func (h *harness) tol(dt tensor.DType) float64 {
	if v, ok := h.cfg.Tol[dt]; ok {
		return v
	}
	if dt == tensor.F32 {
		return 1e-5
	}
	return 1e-2
}

// input is a test input: the backend tensor and its stored values.
type input struct {
	t *tensor.Tensor
	v []float64
}

// rand returns a tensor with uniform values in [lo, hi), rounded to dt.
func (h *harness) rand(dt tensor.DType, lo, hi float64, shape ...int) input {
	s := tensor.Shape(shape)
	d := make([]float32, s.Numel())
	for i := range d {
		d[i] = float32(lo + (hi-lo)*h.rng.Float64())
	}
	return h.from(dt, s, d)
}

// from uploads d and returns the tensor with its expected stored values
// (d rounded to dt by the suite's own rounding).
func (h *harness) from(dt tensor.DType, s tensor.Shape, d []float32) input {
	t := h.b.FromFloat32(dt, s, d)
	v := make([]float64, len(d))
	for i, x := range d {
		v[i] = float64(RoundTo(dt, x))
	}
	return input{t, v}
}

// poison allocates and frees NaN-filled tensors of n elements, so that a
// pooling backend reuses NaN garbage for the next output.
func (h *harness) poison(dt tensor.DType, n int) {
	if n == 0 {
		return
	}
	nan := make([]float32, n)
	for i := range nan {
		nan[i] = float32(math.NaN())
	}
	var ts []*tensor.Tensor
	for range 3 {
		ts = append(ts, h.b.FromFloat32(dt, tensor.Shape{n}, nan))
	}
	for _, t := range ts {
		t.Free()
	}
}

// check runs op twice (after poisoning each time), compares its output
// with want (exactly, or within the dtype tolerance) and verifies that the
// inputs are unchanged.
func (h *harness) check(name string, dt tensor.DType, wantShape tensor.Shape, want []float64, exact bool, op func() *tensor.Tensor, inputs ...input) {
	h.t.Helper()
	before := make([][]float32, len(inputs))
	for i, in := range inputs {
		before[i] = h.b.ToFloat32(in.t)
		if !bitsEqual(before[i], toF32(in.v)) {
			h.t.Errorf("%s: input %d does not hold its rounded values before the op", name, i)
			return
		}
	}
	var first []float32
	for run := range 2 {
		h.poison(dt, wantShape.Numel())
		out := op()
		if out == nil {
			h.t.Errorf("%s: nil output", name)
			return
		}
		if !out.Shape().Equal(wantShape) || out.DType() != dt {
			h.t.Errorf("%s: output %v %v, want %v %v", name, out.Shape(), out.DType(), wantShape, dt)
			return
		}
		got := h.b.ToFloat32(out)
		out.Free()
		if exact {
			if i := firstDiff(got, want); i >= 0 {
				h.t.Errorf("%s (run %d): element %d = %v, want exactly %v", name, run+1, i, got[i], want[i])
				return
			}
		} else if !h.close(name, run, dt, got, want) {
			return
		}
		if run == 0 {
			first = got
			if !exact {
				h.t.Logf("%s: rel err %.3g", name, relErr(got, want))
			}
		} else if h.cfg.Deterministic && !bitsEqual(first, got) {
			h.t.Errorf("%s: two runs differ (element %d: %v vs %v)", name, firstDiffF32(first, got), first[firstDiffF32(first, got)], got[firstDiffF32(first, got)])
		}
	}
	h.poison(dt, wantShape.Numel())
	for i, in := range inputs {
		after := h.b.ToFloat32(in.t)
		if !bitsEqual(before[i], after) {
			h.t.Errorf("%s: op modified input %d (element %d)", name, i, firstDiffF32(before[i], after))
		}
	}
}

// close reports whether got matches want within the dtype tolerance,
// logging an error when not.
func (h *harness) close(name string, run int, dt tensor.DType, got []float32, want []float64) bool {
	h.t.Helper()
	tol := h.tol(dt)
	e := relErr(got, want)
	if !(e <= tol) {
		i := worst(got, want)
		h.t.Errorf("%s (run %d): relative error %.3g > %.3g (worst element %d: got %v, want %v)", name, run+1, e, tol, i, got[i], want[i])
		return false
	}
	rms := 0.0
	for _, w := range want {
		rms += w * w
	}
	rms = math.Sqrt(rms / float64(max(1, len(want))))
	for i, w := range want {
		if d := math.Abs(float64(got[i]) - w); !(d <= 10*tol*(math.Abs(w)+rms)) {
			h.t.Errorf("%s (run %d): element %d = %v, want %v (|diff| %.3g, rms %.3g)", name, run+1, i, got[i], w, d, rms)
			return false
		}
	}
	return true
}

// relErr is ‖got−want‖₂/‖want‖₂ (the absolute norm when want is zero);
// NaN when got has a NaN.
func relErr(got []float32, want []float64) float64 {
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - w
		num += d * d
		den += w * w
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

func worst(got []float32, want []float64) int {
	wi, wd := 0, -1.0
	for i, w := range want {
		d := math.Abs(float64(got[i]) - w)
		if math.IsNaN(d) {
			return i
		}
		if d > wd {
			wi, wd = i, d
		}
	}
	return wi
}

// firstDiff returns the first index where got differs from want bit for
// bit (as float32), or -1.
func firstDiff(got []float32, want []float64) int {
	return firstDiffF32(got, toF32(want))
}

func firstDiffF32(a, b []float32) int {
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			// All NaNs are equal here: payloads are not part of the contract.
			if a[i] != a[i] && b[i] != b[i] {
				continue
			}
			return i
		}
	}
	return -1
}

func bitsEqual(a, b []float32) bool { return firstDiffF32(a, b) < 0 }

func toF32(v []float64) []float32 {
	o := make([]float32, len(v))
	for i, x := range v {
		o[i] = float32(x)
	}
	return o
}

// roundAll rounds reference values to dt (for exact expectations of ops
// whose output is a rounding of exact values, like Cast).
func roundAll(dt tensor.DType, v []float64) []float64 {
	o := make([]float64, len(v))
	for i, x := range v {
		o[i] = float64(RoundTo(dt, float32(x)))
	}
	return o
}

// RoundTo rounds v to the precision of dt with ties to even, computed
// independently of any backend: F32 is unchanged, F16 has 11 significant
// bits (subnormals below 2^-14, overflow to ±Inf above 65504), BF16 has 8
// significant bits with float32's exponent range.
func RoundTo(dt tensor.DType, v float32) float32 {
	var bits, minExp int
	var maxFinite float64
	switch dt {
	case tensor.F32:
		return v
	case tensor.F16:
		bits, minExp, maxFinite = 11, -14, 65504
	case tensor.BF16:
		bits, minExp, maxFinite = 8, -126, 0x1.fep127
	default:
		panic(fmt.Sprintf("backendtest: unknown dtype %v", dt))
	}
	x := float64(v)
	if math.IsNaN(x) || math.IsInf(x, 0) || x == 0 {
		return v
	}
	_, e := math.Frexp(x) // x = f·2^e, 0.5 <= |f| < 1: leading bit 2^(e-1)
	lead := max(e-1, minExp)
	ulp := math.Ldexp(1, lead-(bits-1))
	r := math.RoundToEven(x/ulp) * ulp
	if math.Abs(r) > maxFinite {
		return float32(math.Copysign(math.Inf(1), x))
	}
	return float32(r)
}

// mustPanic runs f and fails unless it panics with a message naming op.
func (h *harness) mustPanic(op, what string, f func()) {
	h.t.Helper()
	defer func() {
		h.t.Helper()
		r := recover()
		if r == nil {
			h.t.Errorf("%s: %s did not panic", op, what)
			return
		}
		if msg := fmt.Sprint(r); !strings.Contains(msg, op) {
			h.t.Errorf("%s: %s panicked with %q, which does not name the op", op, what, msg)
		}
	}()
	f()
}
