package torchrand

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/internal/golden"
)

// rngCase is one stream of small/rng.safetensors, parsed from its name:
// <device>.seed<S>[.second_draw].<shape>[.float16].
type rngCase struct {
	name   string
	device string
	seed   uint64
	second bool
	numel  int
	half   bool
}

func parseRNGName(name string) (rngCase, error) {
	c := rngCase{name: name}
	parts := strings.Split(name, ".")
	if len(parts) < 3 || !strings.HasPrefix(parts[1], "seed") {
		return c, fmt.Errorf("unexpected rng tensor name %q", name)
	}
	c.device = parts[0]
	s, err := strconv.ParseUint(strings.TrimPrefix(parts[1], "seed"), 10, 64)
	if err != nil {
		return c, fmt.Errorf("rng tensor %q: seed: %v", name, err)
	}
	c.seed = s
	rest := parts[2:]
	if rest[0] == "second_draw" {
		c.second = true
		rest = rest[1:]
	}
	if len(rest) == 2 && rest[1] == "float16" {
		c.half = true
		rest = rest[:1]
	}
	if len(rest) != 1 {
		return c, fmt.Errorf("unexpected rng tensor name %q", name)
	}
	c.numel = 1
	for _, d := range strings.Split(rest[0], "x") {
		v, err := strconv.Atoi(d)
		if err != nil {
			return c, fmt.Errorf("rng tensor %q: shape: %v", name, err)
		}
		c.numel *= v
	}
	return c, nil
}

// ulpDiff is the distance between two float32 values in units in the last
// place (0 for identical bit patterns).
func ulpDiff(a, b float32) int64 {
	ia := int64(int32(math.Float32bits(a)))
	ib := int64(int32(math.Float32bits(b)))
	if ia < 0 {
		ia = math.MinInt32 - ia
	}
	if ib < 0 {
		ib = math.MinInt32 - ib
	}
	d := ia - ib
	if d < 0 {
		d = -d
	}
	return d
}

type streamStats struct {
	maxULP   int64
	mismatch int
}

func compareStream(got, want []float32) streamStats {
	var st streamStats
	for i := range want {
		if d := ulpDiff(got[i], want[i]); d > 0 {
			st.mismatch++
			if d > st.maxULP {
				st.maxULP = d
			}
		}
	}
	return st
}

func rngCases(t *testing.T, f *golden.File, device string) []rngCase {
	var cases []rngCase
	for name := range f.Tensors {
		if !strings.HasPrefix(name, device+".") {
			continue
		}
		c, err := parseRNGName(name)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, c)
	}
	sort.Slice(cases, func(i, j int) bool { return cases[i].name < cases[j].name })
	if len(cases) == 0 {
		t.Fatalf("no %s streams in rng.safetensors", device)
	}
	return cases
}

// TestCPUStreamsGolden checks every cpu.* stream of small/rng.safetensors
// bit for bit: float32 below and above the 16-element vectorisation
// threshold, the float16 variant and second draws on the same generator.
func TestCPUStreamsGolden(t *testing.T) {
	f := golden.Open(t, "small/rng.safetensors")
	for _, c := range rngCases(t, f, "cpu") {
		want, _ := f.Get(c.name)
		if len(want) != c.numel {
			t.Fatalf("%s: %d values, name says %d", c.name, len(want), c.numel)
		}
		g := NewCPU(c.seed)
		var got []float32
		switch {
		case c.second:
			// torch.randn(shape) twice on one generator; the golden is the
			// second tensor.
			g.Randn(c.numel)
			got = g.Randn(c.numel)
		case c.half:
			got = g.RandnHalf(c.numel)
		default:
			got = g.Randn(c.numel)
		}
		st := compareStream(got, want)
		if st.mismatch != 0 {
			t.Errorf("%s: %d of %d values differ, max %d ulp", c.name, st.mismatch, c.numel, st.maxULP)
			continue
		}
		t.Logf("%s: %d values bit-exact", c.name, c.numel)
	}
}

// TestCUDAStreamsGolden checks every cuda.* stream of small/rng.safetensors
// (drawn by torch on an H200). The Philox counters, the grid-stride layout
// and the offset bookkeeping across draws are exact, so every value must be
// the GPU's up to the error of its hardware __sincosf: at most about
// 2^-21.4 absolute on sin and cos, times the Box-Muller radius (below 6).
// Float16 draws round those values to half precision, so an error can flip
// the last half-precision bit. A wrong counter, offset or layout gives
// unrelated values, orders of magnitude outside these bounds.
func TestCUDAStreamsGolden(t *testing.T) {
	f := golden.Open(t, "small/rng.safetensors")
	var total, exact int
	var worstULP int64
	var worstRel, worstAbs32 float64
	for _, c := range rngCases(t, f, "cuda") {
		want, _ := f.Get(c.name)
		g := NewCUDA(c.seed)
		var got []float32
		switch {
		case c.second:
			g.Randn(c.numel)
			got = g.Randn(c.numel)
		case c.half:
			got = g.RandnHalf(c.numel)
		default:
			got = g.Randn(c.numel)
		}
		for i := range want {
			d := math.Abs(float64(got[i]) - float64(want[i]))
			limit := 2.5e-6 // 6 * 2^-21.4 plus rounding
			if c.half {
				limit += math.Abs(float64(want[i])) * 0x1p-10 // plus one half-precision ulp
			} else if d > worstAbs32 {
				worstAbs32 = d
			}
			if d > limit {
				t.Errorf("%s[%d] = %v, torch gave %v (|diff| %.3g > %.3g)", c.name, i, got[i], want[i], d, limit)
				break
			}
		}
		st := compareStream(got, want)
		rel := golden.RelErr(got, want)
		total += c.numel
		exact += c.numel - st.mismatch
		worstULP = max(worstULP, st.maxULP)
		worstRel = max(worstRel, rel)
		t.Logf("%s: %d of %d values differ, rel err %.3g", c.name, st.mismatch, c.numel, rel)
	}
	t.Logf("cuda streams: %d of %d values bit-exact; float32 max |diff| %.3g; worst rel err %.3g (float16 streams included)",
		exact, total, worstAbs32, worstRel)
	if worstRel > 2e-5 {
		t.Errorf("worst relative error %.3g > 2e-5", worstRel)
	}
}

// TestPipelineInitNoise: every small/ pipeline scenario's first draw,
// torch.randn((1, 4, H/8, W/8), generator=torch.Generator("cpu").manual_seed(seed)),
// is reproduced bit for bit.
func TestPipelineInitNoise(t *testing.T) {
	data, err := os.ReadFile(golden.Path(t, "small/index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var index struct {
		Scenarios map[string]struct {
			Seed          uint64 `json:"seed"`
			Width, Height int
			Source        string `json:"source"`
		} `json:"scenarios"`
	}
	if err := json.Unmarshal(data, &index); err != nil {
		t.Fatalf("small/index.json: %v", err)
	}
	n := 0
	for name, sc := range index.Scenarios {
		rel := "small/e2e_" + name + ".safetensors"
		if golden.Find(rel) == "" {
			continue
		}
		f := golden.Open(t, rel)
		if !f.Has("init_noise") {
			continue
		}
		want, shape := f.Get("init_noise")
		if len(shape) != 4 || shape[1] != 4 || shape[2] != sc.Height/8 || shape[3] != sc.Width/8 {
			t.Errorf("%s: init_noise shape %v for %dx%d", name, shape, sc.Width, sc.Height)
		}
		got := NewCPU(sc.Seed).Randn(len(want))
		if st := compareStream(got, want); st.mismatch != 0 {
			t.Errorf("%s (seed %d): %d of %d values differ", name, sc.Seed, st.mismatch, len(want))
			continue
		}
		n++
		t.Logf("%s: seed %d, %d values bit-exact", name, sc.Seed, len(want))
	}
	if n == 0 {
		t.Fatal("no scenario with init_noise found")
	}
}
