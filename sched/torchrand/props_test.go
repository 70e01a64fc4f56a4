package torchrand

import (
	"math"
	"slices"
	"testing"
)

// TestMT19937KnownAnswer: the C++ standard requires the 10000th output of a
// default-constructed std::mt19937 (seed 5489) to be 4123659995.
func TestMT19937KnownAnswer(t *testing.T) {
	g := NewCPU(5489)
	var v uint32
	for i := 0; i < 10000; i++ {
		v = g.Random()
	}
	if v != 4123659995 {
		t.Fatalf("10000th output = %d, want 4123659995", v)
	}
	// torch seeds from the low 32 bits only.
	if a, b := NewCPU(5489).Random(), NewCPU(5489+1<<32).Random(); a != b {
		t.Fatalf("seed 5489 and 5489+2^32 differ: %d vs %d", a, b)
	}
}

// TestPhiloxKnownAnswer uses the Random123 known-answer vectors for
// Philox4x32-10.
func TestPhiloxKnownAnswer(t *testing.T) {
	cases := []struct {
		ctr  [4]uint32
		key  [2]uint32
		want [4]uint32
	}{
		{[4]uint32{0, 0, 0, 0}, [2]uint32{0, 0}, [4]uint32{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
		{[4]uint32{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, [2]uint32{0xffffffff, 0xffffffff},
			[4]uint32{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
		{[4]uint32{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, [2]uint32{0xa4093822, 0x299f31d0},
			[4]uint32{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
	}
	for _, c := range cases {
		if got := philox4x32_10(c.ctr, c.key); got != c.want {
			t.Errorf("philox(%08x, %08x) = %08x, want %08x", c.ctr, c.key, got, c.want)
		}
	}
}

// TestPhiloxSkipahead: skipping n values then drawing equals drawing n+4
// values one block at a time, for every alignment of n.
func TestPhiloxSkipahead(t *testing.T) {
	var ref philoxState
	ref.init(77, 3, 0)
	var words []uint32
	for i := 0; i < 8; i++ {
		w := ref.uint4()
		words = append(words, w[:]...)
	}
	for n := 0; n < 16; n++ {
		var s philoxState
		s.init(77, 3, uint64(n))
		got := s.uint4()
		if !slices.Equal(got[:], words[n:n+4]) {
			t.Errorf("offset %d: %08x, want %08x", n, got, words[n:n+4])
		}
	}
}

// checkNormals asserts that values look like a sample of N(0, 1): finite,
// bounded by the largest radius the uniform grid allows, mean and variance
// plausible.
func checkNormals(t *testing.T, name string, v []float32, bound float64) {
	t.Helper()
	var sum, sq float64
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.Abs(float64(x)) > bound {
			t.Fatalf("%s[%d] = %v outside (-%v, %v)", name, i, x, bound, bound)
		}
		sum += float64(x)
		sq += float64(x) * float64(x)
	}
	n := float64(len(v))
	mean, variance := sum/n, sq/n-(sum/n)*(sum/n)
	if math.Abs(mean) > 5/math.Sqrt(n) || math.Abs(variance-1) > 10/math.Sqrt(n) {
		t.Fatalf("%s: mean %.4f variance %.4f of %d draws", name, mean, variance, len(v))
	}
}

// FuzzGenerators: the same seed gives the same stream, different seeds give
// different streams, and the values are plausible normals, on both
// generators and at sizes on both sides of the vectorisation threshold.
func FuzzGenerators(f *testing.F) {
	for _, s := range []uint64{0, 1, 42, 123, 95832, 1 << 32, math.MaxUint64} {
		f.Add(s, uint16(4096))
		f.Add(s, uint16(7))
	}
	f.Fuzz(func(t *testing.T, seed uint64, n16 uint16) {
		n := int(n16)%5000 + 1
		a, b := NewCPU(seed).Randn(n), NewCPU(seed).Randn(n)
		if !slices.Equal(a, b) {
			t.Fatalf("cpu seed %d: two generators disagree", seed)
		}
		other := seed + 1
		if uint32(other) == uint32(seed) { // cannot happen, but keep the intent explicit
			other += 2
		}
		if c := NewCPU(other).Randn(n); n >= 4 && slices.Equal(a, c) {
			t.Fatalf("cpu seeds %d and %d give the same %d values", seed, other, n)
		}
		g := NewCUDA(seed)
		x1, x2 := g.Randn(n), g.Randn(n)
		if y := NewCUDA(seed).Randn(n); !slices.Equal(x1, y) {
			t.Fatalf("cuda seed %d: two generators disagree", seed)
		}
		if n >= 4 && slices.Equal(x1, x2) {
			t.Fatalf("cuda seed %d: second draw repeats the first", seed)
		}
		if g.Offset() == 0 {
			t.Fatalf("cuda offset did not advance")
		}
		if n >= 2000 {
			checkNormals(t, "cpu", a, 6)
			checkNormals(t, "cuda", x1, 7)
			checkNormals(t, "cpu half", NewCPU(seed).RandnHalf(n), 6)
		}
	})
}

// TestCPUStreamContinues: a second draw continues the engine where the first
// stopped (it is not a replay), and manual_seed restarts it.
func TestCPUStreamContinues(t *testing.T) {
	g := NewCPU(9)
	first := g.Randn(64)
	second := g.Randn(64)
	if slices.Equal(first, second) {
		t.Fatal("second draw repeats the first")
	}
	g.ManualSeed(9)
	if again := g.Randn(64); !slices.Equal(first, again) {
		t.Fatal("ManualSeed did not restart the stream")
	}
	// Scalar draws keep the sine half of a Box-Muller pair for the next
	// scalar draw, and manual_seed drops it.
	g.ManualSeed(9)
	a := g.Randn(1)
	b := g.Randn(1)
	g.ManualSeed(9)
	ab := g.Randn(2)
	if a[0] != ab[0] || b[0] != ab[1] {
		t.Fatalf("cached normal not used: %v %v vs %v", a, b, ab)
	}
}
