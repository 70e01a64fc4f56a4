package backendtest

import (
	"fmt"
	"math"

	"github.com/sdxl-go/sdxl/tensor"
)

// dims is shorthand for a shape literal.
type dims = tensor.Shape

func init() {
	suite = []testCase{
		{"FromFloat32", testFromFloat32},
		{"Zeros", testZeros},
		{"Cast", testCast},
		{"Reshape", testReshape},
		{"MatMul", testMatMul},
		{"Linear", testLinear},
		{"Conv2D", testConv2D},
		{"GroupNorm", testGroupNorm},
		{"GroupNormSiLU", testGroupNormSiLU},
		{"LayerNorm", testLayerNorm},
		{"Attention", testAttention},
		{"Softmax", testSoftmax},
		{"Activations", testActivations},
		{"GEGLU", testGEGLU},
		{"AddMul", testAddMul},
		{"Scale", testScale},
		{"Concat", testConcat},
		{"Slice", testSlice},
		{"Permute", testPermute},
		{"Upsample", testUpsample},
		{"Embedding", testEmbedding},
		{"Mean", testMean},
		{"ShapeErrors", testShapeErrors},
	}
}

// forCases runs f on cases [0, n) for each dtype under test;
// reduced-precision dtypes only see the cases whose index is below nReduced.
func (h *harness) forCases(n, nReduced int, f func(dt tensor.DType, i int)) {
	for _, dt := range h.dtypes() {
		for i := range n {
			if dt != tensor.F32 && i >= nReduced {
				break
			}
			f(dt, i)
		}
	}
}

func testFromFloat32(h *harness) {
	specials := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 0.1, 1.0 / 3,
		float32(math.Inf(1)), float32(math.Inf(-1)),
		math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 1e-40, 1e-10, 6e-8, 3e-8, 2.9e-8,
		65504, 65519, 65520, 70000, -65520, 1e-5, 6.1e-5, 1 + 1.0/2048, 1 + 3.0/2048, 1 + 1.0/256, 1 + 3.0/256,
		1 + 1.0/512, 256.5, 257.5, 3.3895314e38, 3.4e38, 2049, 2051, 4097}
	for _, dt := range h.dtypes() {
		for _, shape := range []dims{{1}, {3, 7}, {2, 3, 5, 7}} {
			d := make([]float32, shape.Numel())
			for i := range d {
				if i < len(specials) && shape.Numel() > 20 {
					d[i] = specials[i]
				} else {
					d[i] = float32(h.rng.NormFloat64() * math.Pow(10, float64(h.rng.IntN(9)-4)))
				}
			}
			t := h.b.FromFloat32(dt, shape, d)
			if !t.Shape().Equal(shape) || t.DType() != dt {
				h.t.Errorf("FromFloat32 %v %v: got %v %v", dt, shape, t.Shape(), t.DType())
				continue
			}
			got := h.b.ToFloat32(t)
			for i := range d {
				if w := RoundTo(dt, d[i]); math.Float32bits(got[i]) != math.Float32bits(w) {
					h.t.Errorf("FromFloat32 %v: %v (bits %08x) stored as %v, want %v", dt, d[i], math.Float32bits(d[i]), got[i], w)
					break
				}
			}
			// Neither the source slice nor ToFloat32's result may alias the
			// tensor's storage.
			want0 := got[0]
			got[0], d[0] = 42, 43
			if again := h.b.ToFloat32(t); math.Float32bits(again[0]) != math.Float32bits(want0) {
				h.t.Errorf("FromFloat32 %v: tensor changed to %v after writing to host slices", dt, again[0])
			}
			t.Free()
		}
		// NaN survives rounding as a NaN.
		t := h.b.FromFloat32(dt, dims{1}, []float32{float32(math.NaN())})
		if v := h.b.ToFloat32(t)[0]; v == v {
			h.t.Errorf("FromFloat32 %v: NaN stored as %v", dt, v)
		}
	}
}

func testZeros(h *harness) {
	for _, dt := range h.dtypes() {
		for _, shape := range []dims{{1}, {7, 33}, {2, 3, 5, 7, 2}} {
			h.poison(dt, shape.Numel())
			z := h.b.Zeros(dt, shape...)
			if !z.Shape().Equal(shape) || z.DType() != dt {
				h.t.Errorf("Zeros: got %v %v, want %v %v", z.Shape(), z.DType(), shape, dt)
				continue
			}
			for i, v := range h.b.ToFloat32(z) {
				if math.Float32bits(v) != 0 {
					h.t.Errorf("Zeros %v %v: element %d = %v", dt, shape, i, v)
					break
				}
			}
			z.Free()
		}
	}
}

func testCast(h *harness) {
	for _, from := range h.dtypes() {
		for _, to := range h.dtypes() {
			x := h.rand(from, -70000, 70000, 3, 17)
			y := h.rand(from, -1e-3, 1e-3, 2, 5)
			for _, in := range []input{x, y} {
				h.check(fmt.Sprintf("Cast %v->%v %v", from, to, in.t.Shape()), to, in.t.Shape(), roundAll(to, in.v), true,
					func() *tensor.Tensor { return h.b.Cast(in.t, to) }, in)
			}
		}
	}
}

func testReshape(h *harness) {
	for _, dt := range h.dtypes() {
		x := h.rand(dt, -1, 1, 2, 3, 4)
		r := x.t.Reshape(4, -1)
		if !r.Shape().Equal(dims{4, 6}) {
			h.t.Errorf("Reshape: shape %v, want [4 6]", r.Shape())
		}
		if i := firstDiff(h.b.ToFloat32(r), x.v); i >= 0 {
			h.t.Errorf("Reshape %v: element %d differs", dt, i)
		}
		// Ops read a reshaped view with its new shape.
		rv := input{r, x.v}
		_, want := refPermute(x.v, dims{4, 6}, []int{1, 0})
		h.check(fmt.Sprintf("Permute of Reshape %v", dt), dt, dims{6, 4}, want, true,
			func() *tensor.Tensor { return h.b.Permute(r, 1, 0) }, rv)
	}
}

type mmCase struct {
	a, b   dims
	ta, tb bool
}

func testMatMul(h *harness) {
	cases := []mmCase{
		{dims{3, 7}, dims{7, 5}, false, false},
		{dims{2, 17, 33}, dims{9, 33}, false, true},
		{dims{7, 17}, dims{7, 3}, true, false},
		{dims{2, 3, 7, 5}, dims{2, 3, 4, 7}, true, true},
		{dims{1, 1}, dims{1, 1}, false, false},
		{dims{17, 33}, dims{33, 1}, false, false},
		{dims{1, 33}, dims{33, 17}, false, false},
		{dims{7, 17}, dims{3, 17}, false, true},
		{dims{17, 7}, dims{3, 17}, true, true},
		{dims{2, 3, 5, 7}, dims{2, 3, 7, 4}, false, false},
		{dims{2, 1, 5, 7}, dims{3, 7, 4}, false, false},
		{dims{5, 7}, dims{3, 7, 4}, false, false},
		{dims{2, 1, 3, 4, 5}, dims{1, 2, 1, 5, 6}, false, false},
		{dims{2, 3, 7, 5}, dims{1, 4, 7}, true, true},
		{dims{2, 33, 17}, dims{9, 17}, false, true},
		// Larger than usual cache blocks and register tiles, in every
		// transpose combination.
		{dims{130, 300}, dims{70, 300}, false, true},
		{dims{2, 65, 257}, dims{257, 129}, false, false},
		{dims{300, 67}, dims{300, 45}, true, false},
		{dims{45, 513}, dims{33, 45}, true, true},
		{dims{1, 1100}, dims{1100, 19}, false, false},
		{dims{2, 4, 64, 64}, dims{2, 4, 64, 77}, false, false},
	}
	h.forCases(len(cases), 4, func(dt tensor.DType, i int) {
		c := cases[i]
		a := h.rand(dt, -1, 1, c.a...)
		b := h.rand(dt, -1, 1, c.b...)
		os, want := refMatMul(a.v, c.a, b.v, c.b, c.ta, c.tb)
		h.check(fmt.Sprintf("%v %v x %v tA=%v tB=%v", dt, c.a, c.b, c.ta, c.tb), dt, os, want, false,
			func() *tensor.Tensor { return h.b.MatMul(a.t, b.t, c.ta, c.tb) }, a, b)
	})
}

func testLinear(h *harness) {
	cases := []struct {
		x, w dims
		bias bool
	}{
		{dims{2, 7, 17}, dims{9, 17}, true},
		{dims{3, 17}, dims{33, 17}, false},
		{dims{1, 1}, dims{1, 1}, true},
		{dims{2, 77, 65}, dims{130, 65}, true},
		{dims{3, 600}, dims{40, 600}, true},
	}
	h.forCases(len(cases), 2, func(dt tensor.DType, i int) {
		c := cases[i]
		x := h.rand(dt, -1, 1, c.x...)
		w := h.rand(dt, -1, 1, c.w...)
		os, want := refMatMul(x.v, c.x, w.v, c.w, false, true)
		ins := []input{x, w}
		var bt *tensor.Tensor
		if c.bias {
			b := h.rand(dt, -1, 1, c.w[0])
			bt = b.t
			ins = append(ins, b)
			_, want = refBinary(want, os, b.v, b.t.Shape(), func(p, q float64) float64 { return p + q })
		}
		h.check(fmt.Sprintf("%v x%v w%v bias=%v", dt, c.x, c.w, c.bias), dt, os, want, false,
			func() *tensor.Tensor { return tensor.Linear(h.b, x.t, w.t, bt) }, ins...)
	})
}

func testConv2D(h *harness) {
	cases := []struct {
		x, w        dims
		stride, pad int
		bias        bool
	}{
		{dims{2, 3, 7, 9}, dims{5, 3, 3, 3}, 1, 1, true},
		{dims{1, 4, 8, 8}, dims{6, 4, 3, 3}, 2, 1, true},
		{dims{1, 1, 1, 1}, dims{1, 1, 1, 1}, 1, 0, false},
		{dims{2, 3, 17, 5}, dims{4, 3, 1, 1}, 1, 0, true},
		{dims{1, 2, 7, 7}, dims{3, 2, 5, 5}, 2, 2, false},
		{dims{1, 3, 9, 6}, dims{2, 3, 3, 1}, 1, 0, true},
		{dims{1, 2, 5, 5}, dims{1, 2, 3, 3}, 3, 0, false},
		{dims{1, 2, 9, 9}, dims{3, 2, 3, 3}, 2, 0, true},
		{dims{1, 33, 17, 19}, dims{17, 33, 3, 3}, 1, 1, true},
		{dims{2, 7, 3, 3}, dims{5, 7, 3, 3}, 1, 2, true},
		{dims{1, 3, 2, 2}, dims{2, 3, 1, 1}, 2, 0, false},
		{dims{1, 3, 34, 40}, dims{4, 3, 3, 3}, 2, 1, true},
		{dims{1, 2, 3, 40}, dims{3, 2, 3, 3}, 1, 1, false},
		{dims{1, 2, 5, 37}, dims{3, 2, 1, 3}, 1, 0, true},
	}
	h.forCases(len(cases), 2, func(dt tensor.DType, i int) {
		c := cases[i]
		x := h.rand(dt, -1, 1, c.x...)
		w := h.rand(dt, -1, 1, c.w...)
		ins := []input{x, w}
		var bv []float64
		var bt *tensor.Tensor
		if c.bias {
			b := h.rand(dt, -1, 1, c.w[0])
			bv, bt = b.v, b.t
			ins = append(ins, b)
		}
		os, want := refConv2D(x.v, c.x, w.v, c.w, bv, c.stride, c.pad)
		h.check(fmt.Sprintf("%v x%v w%v s%d p%d bias=%v", dt, c.x, c.w, c.stride, c.pad, c.bias), dt, os, want, false,
			func() *tensor.Tensor { return h.b.Conv2D(x.t, w.t, bt, c.stride, c.pad) }, ins...)
	})
}

type gnCase struct {
	x       dims
	groups  int
	w, b    bool
	offset  float64
	epsilon float32
}

var gnCases = []gnCase{
	{dims{2, 6, 5, 7}, 3, true, true, 3, 1e-5},
	{dims{1, 4, 3}, 2, true, false, 0, 1e-6},
	{dims{2, 8, 3, 2, 2}, 4, false, true, -2, 1e-5},
	{dims{1, 32, 4, 4}, 32, true, true, 0.5, 1e-5},
	{dims{3, 5, 1, 1}, 1, false, false, 1, 1e-5},
	{dims{1, 64, 17, 9}, 32, true, true, 10, 1e-6},
}

func (h *harness) groupNorm(name string, silu bool) {
	h.forCases(len(gnCases), 2, func(dt tensor.DType, i int) {
		c := gnCases[i]
		x := h.rand(dt, c.offset-2, c.offset+2, c.x...)
		ins := []input{x}
		var wv, bv []float64
		var wt, bt *tensor.Tensor
		if c.w {
			w := h.rand(dt, 0.5, 1.5, c.x[1])
			wv, wt = w.v, w.t
			ins = append(ins, w)
		}
		if c.b {
			b := h.rand(dt, -1, 1, c.x[1])
			bv, bt = b.v, b.t
			ins = append(ins, b)
		}
		want := refGroupNorm(x.v, c.x, c.groups, wv, bv, float64(c.epsilon))
		op := func() *tensor.Tensor { return h.b.GroupNorm(x.t, c.groups, wt, bt, c.epsilon) }
		if silu {
			want = refMap(want, func(v float64) float64 { return v * sigmoid(v) })
			op = func() *tensor.Tensor { return tensor.GroupNormSiLU(h.b, x.t, c.groups, wt, bt, c.epsilon) }
		}
		h.check(fmt.Sprintf("%s %v x%v groups=%d w=%v b=%v", name, dt, c.x, c.groups, c.w, c.b), dt, c.x, want, false, op, ins...)
	})
}

func testGroupNorm(h *harness)     { h.groupNorm("GroupNorm", false) }
func testGroupNormSiLU(h *harness) { h.groupNorm("GroupNormSiLU", true) }

func testLayerNorm(h *harness) {
	cases := []struct {
		x    dims
		w, b bool
	}{
		{dims{7, 33}, true, true},
		{dims{2, 3, 17}, false, false},
		{dims{1, 1}, true, true},
		{dims{2, 77, 64}, true, false},
		{dims{2, 1, 3, 4, 65}, false, true},
	}
	h.forCases(len(cases), 2, func(dt tensor.DType, i int) {
		c := cases[i]
		D := c.x[len(c.x)-1]
		x := h.rand(dt, 1, 5, c.x...)
		ins := []input{x}
		var wv, bv []float64
		var wt, bt *tensor.Tensor
		if c.w {
			w := h.rand(dt, 0.5, 1.5, D)
			wv, wt = w.v, w.t
			ins = append(ins, w)
		}
		if c.b {
			b := h.rand(dt, -1, 1, D)
			bv, bt = b.v, b.t
			ins = append(ins, b)
		}
		want := refLayerNorm(x.v, D, wv, bv, 1e-5)
		h.check(fmt.Sprintf("%v x%v w=%v b=%v", dt, c.x, c.w, c.b), dt, c.x, want, false,
			func() *tensor.Tensor { return h.b.LayerNorm(x.t, wt, bt, 1e-5) }, ins...)
	})
}

func testAttention(h *harness) {
	cases := []struct {
		q, k, v, mask dims
	}{
		{dims{2, 3, 17, 8}, dims{2, 3, 33, 8}, dims{2, 3, 33, 5}, nil},
		{dims{1, 2, 7, 16}, dims{1, 2, 77, 16}, dims{1, 2, 77, 16}, dims{1, 1, 1, 77}},
		{dims{1, 1, 1, 1}, dims{1, 1, 1, 1}, dims{1, 1, 1, 1}, nil},
		{dims{2, 3, 17, 8}, dims{2, 3, 33, 8}, dims{2, 3, 33, 8}, dims{17, 33}},
		{dims{2, 3, 17, 8}, dims{2, 3, 33, 8}, dims{2, 3, 33, 8}, dims{2, 3, 17, 33}},
		{dims{2, 1, 5, 4}, dims{2, 1, 9, 4}, dims{2, 1, 9, 3}, dims{2, 1, 1, 9}},
		{dims{1, 2, 300, 16}, dims{1, 2, 300, 16}, dims{1, 2, 300, 16}, nil},
		{dims{2, 3, 17, 8}, dims{2, 3, 33, 8}, dims{2, 3, 33, 8}, dims{2, 1, 17, 1}},
		{dims{1, 1, 3, 8}, dims{1, 1, 5000, 8}, dims{1, 1, 5000, 8}, dims{3, 5000}},
	}
	h.forCases(len(cases), 2, func(dt tensor.DType, i int) {
		c := cases[i]
		q := h.rand(dt, -2, 2, c.q...)
		k := h.rand(dt, -2, 2, c.k...)
		v := h.rand(dt, -1, 1, c.v...)
		ins := []input{q, k, v}
		var mv []float64
		var mt *tensor.Tensor
		if c.mask != nil {
			// Additive masks as diffusers builds them: 0 where attended and a
			// large negative where masked, plus a few small biases.
			// A mask broadcast along the keys shifts whole rows, where a large
			// negative only costs float32 precision: use small biases there.
			keyBroadcast := c.mask[len(c.mask)-1] == 1
			md := make([]float32, c.mask.Numel())
			for j := range md {
				r := h.rng.IntN(4)
				if keyBroadcast {
					r = 1
				}
				switch r {
				case 0:
					md[j] = -10000
				case 1:
					md[j] = float32(h.rng.Float64() - 0.5)
				}
			}
			md[0] = 0 // keep at least one attended key per broadcast row
			m := h.from(dt, c.mask, md)
			mv, mt = m.v, m.t
			ins = append(ins, m)
		}
		scale := 1 / math.Sqrt(float64(c.q[3]))
		os, want := refAttention(q.v, c.q, k.v, c.k, v.v, c.v, mv, c.mask, float64(float32(scale)))
		h.check(fmt.Sprintf("%v q%v k%v v%v mask%v", dt, c.q, c.k, c.v, c.mask), dt, os, want, false,
			func() *tensor.Tensor { return h.b.Attention(q.t, k.t, v.t, mt, float32(scale)) }, ins...)
	})
}

func testSoftmax(h *harness) {
	cases := []dims{{3, 17}, {2, 3, 1}, {1, 4097}, {2, 3, 4, 5, 6}, {77, 77}}
	h.forCases(len(cases), 2, func(dt tensor.DType, i int) {
		x := h.rand(dt, -10, 10, cases[i]...)
		want := refSoftmax(x.v, cases[i][len(cases[i])-1])
		h.check(fmt.Sprintf("%v %v", dt, cases[i]), dt, cases[i], want, false,
			func() *tensor.Tensor { return h.b.Softmax(x.t) }, x)
	})
}

func testActivations(h *harness) {
	acts := []struct {
		name string
		op   func(*tensor.Tensor) *tensor.Tensor
		ref  func(float64) float64
	}{
		{"SiLU", h.b.SiLU, func(x float64) float64 { return x * sigmoid(x) }},
		{"GELU", h.b.GELU, geluRef},
		{"QuickGELU", h.b.QuickGELU, func(x float64) float64 { return x * sigmoid(1.702*x) }},
	}
	cases := []dims{{3, 17}, {2, 3, 5, 7, 4}, {1}, {70000}}
	for _, a := range acts {
		h.forCases(len(cases), 2, func(dt tensor.DType, i int) {
			x := h.rand(dt, -8, 8, cases[i]...)
			want := refMap(x.v, a.ref)
			h.check(fmt.Sprintf("%s %v %v", a.name, dt, cases[i]), dt, cases[i], want, false,
				func() *tensor.Tensor { return a.op(x.t) }, x)
		})
	}
}

func testGEGLU(h *harness) {
	cases := []dims{{3, 34}, {2, 5, 16}, {1, 2}, {2, 77, 130}}
	h.forCases(len(cases), 2, func(dt tensor.DType, i int) {
		x := h.rand(dt, -4, 4, cases[i]...)
		os := cases[i].Clone()
		os[len(os)-1] /= 2
		want := refGEGLU(x.v, cases[i][len(cases[i])-1])
		h.check(fmt.Sprintf("%v %v", dt, cases[i]), dt, os, want, false,
			func() *tensor.Tensor { return h.b.GEGLU(x.t) }, x)
	})
}

func testAddMul(h *harness) {
	cases := [][2]dims{
		{{3, 7}, {3, 7}},
		{{2, 5, 7}, {7}},
		{{2, 3, 4, 5}, {3, 1, 1}},
		{{2, 1, 5}, {3, 1}},
		{{1}, {4, 3}},
		{{2, 3, 1, 5}, {1, 1, 4, 1}},
		{{5}, {2, 3, 5}},
		{{2, 1, 3, 1, 5}, {2, 4, 1, 7, 1}},
		{{2, 320, 9, 9}, {2, 320, 1, 1}},
		{{1, 1}, {1}},
		{{33, 17}, {33, 1}},
	}
	for _, op := range []struct {
		name string
		f    func(a, b *tensor.Tensor) *tensor.Tensor
		ref  func(x, y float64) float64
	}{
		{"Add", h.b.Add, func(x, y float64) float64 { return x + y }},
		{"Mul", h.b.Mul, func(x, y float64) float64 { return x * y }},
	} {
		h.forCases(len(cases), 3, func(dt tensor.DType, i int) {
			c := cases[i]
			a := h.rand(dt, -2, 2, c[0]...)
			b := h.rand(dt, -2, 2, c[1]...)
			os, want := refBinary(a.v, c[0], b.v, c[1], op.ref)
			// A single float32 operation is correctly rounded: F32 results
			// must be exact.
			exact := dt == tensor.F32
			if exact {
				want = roundAll(tensor.F32, want)
			}
			h.check(fmt.Sprintf("%s %v %v %v", op.name, dt, c[0], c[1]), dt, os, want, exact,
				func() *tensor.Tensor { return op.f(a.t, b.t) }, a, b)
		})
	}
}

func testScale(h *harness) {
	cases := []dims{{3, 17}, {2, 3, 4, 5, 6}, {1}}
	h.forCases(len(cases), 2, func(dt tensor.DType, i int) {
		x := h.rand(dt, -3, 3, cases[i]...)
		const s = 0.3701
		want := refMap(x.v, func(v float64) float64 { return float64(float32(v) * float32(s)) })
		h.check(fmt.Sprintf("%v %v", dt, cases[i]), dt, cases[i], want, dt == tensor.F32,
			func() *tensor.Tensor { return h.b.Scale(x.t, s) }, x)
	})
}

func testConcat(h *harness) {
	cases := []struct {
		axis   int
		shapes []dims
	}{
		{0, []dims{{2, 3}, {5, 3}}},
		{1, []dims{{2, 3, 4}, {2, 1, 4}, {2, 7, 4}}},
		{-1, []dims{{2, 3, 4, 5}, {2, 3, 4, 2}}},
		{3, []dims{{2, 3, 4, 5, 1}, {2, 3, 4, 17, 1}}},
		{0, []dims{{7}}},
		{1, []dims{{2, 320, 4, 4}, {2, 640, 4, 4}}},
	}
	h.forCases(len(cases), len(cases), func(dt tensor.DType, i int) {
		c := cases[i]
		var ins []input
		var ts []*tensor.Tensor
		var vals [][]float64
		for _, s := range c.shapes {
			in := h.rand(dt, -1, 1, s...)
			ins = append(ins, in)
			ts = append(ts, in.t)
			vals = append(vals, in.v)
		}
		ax := c.axis
		if ax < 0 {
			ax += len(c.shapes[0])
		}
		os, want := refConcat(ax, vals, c.shapes)
		h.check(fmt.Sprintf("%v axis %d %v", dt, c.axis, c.shapes), dt, os, want, true,
			func() *tensor.Tensor { return h.b.Concat(c.axis, ts...) }, ins...)
	})
}

func testSlice(h *harness) {
	cases := []struct {
		x                dims
		axis, start, end int
	}{
		{dims{5, 3}, 0, 1, 4},
		{dims{2, 7, 4}, 1, 0, 7},
		{dims{2, 3, 4, 17}, -1, 8, 17},
		{dims{2, 3, 4, 5, 6}, 2, 3, 4},
		{dims{2, 77, 2048}, 2, 0, 768},
		{dims{4, 3}, 0, 2, 2},
	}
	h.forCases(len(cases), len(cases), func(dt tensor.DType, i int) {
		c := cases[i]
		x := h.rand(dt, -1, 1, c.x...)
		ax := c.axis
		if ax < 0 {
			ax += len(c.x)
		}
		os, want := refSlice(x.v, c.x, ax, c.start, c.end)
		h.check(fmt.Sprintf("%v %v axis %d [%d,%d)", dt, c.x, c.axis, c.start, c.end), dt, os, want, true,
			func() *tensor.Tensor { return h.b.Slice(x.t, c.axis, c.start, c.end) }, x)
	})
}

func testPermute(h *harness) {
	cases := []struct {
		x    dims
		perm []int
	}{
		{dims{2, 3, 4, 5}, []int{0, 2, 1, 3}},
		{dims{2, 3, 4, 5}, []int{0, 2, 3, 1}},
		{dims{2, 3, 4, 5}, []int{3, 2, 1, 0}},
		{dims{2, 3, 4, 5}, []int{0, 1, 2, 3}},
		{dims{7, 33}, []int{1, 0}},
		{dims{2, 1, 3, 1, 5}, []int{4, 3, 2, 1, 0}},
		{dims{40, 50}, []int{1, 0}},
		{dims{2, 77, 5, 64}, []int{0, 2, 1, 3}},
		{dims{2, 3, 65, 33}, []int{0, 1, 3, 2}},
		{dims{3, 1, 1}, []int{2, 0, 1}},
		{dims{2, 4, 3, 5, 6}, []int{1, 3, 0, 4, 2}},
	}
	h.forCases(len(cases), len(cases), func(dt tensor.DType, i int) {
		c := cases[i]
		x := h.rand(dt, -1, 1, c.x...)
		os, want := refPermute(x.v, c.x, c.perm)
		h.check(fmt.Sprintf("%v %v perm %v", dt, c.x, c.perm), dt, os, want, true,
			func() *tensor.Tensor { return h.b.Permute(x.t, c.perm...) }, x)
	})
}

func testUpsample(h *harness) {
	cases := []struct {
		x    dims
		h, w int
	}{
		{dims{1, 2, 3, 4}, 6, 8},
		{dims{1, 2, 3, 4}, 5, 7},
		{dims{1, 2, 3, 4}, 3, 4},
		{dims{2, 3, 5, 5}, 9, 9},
		{dims{1, 1, 5, 5}, 2, 3},
		{dims{1, 1, 2, 3}, 82, 5}, // torch's float32 scale differs from floor(i*in/out) at 41
		{dims{1, 2, 3, 2}, 5, 82},
		{dims{2, 4, 17, 33}, 34, 65},
	}
	h.forCases(len(cases), len(cases), func(dt tensor.DType, i int) {
		c := cases[i]
		x := h.rand(dt, -1, 1, c.x...)
		os, want := refUpsample(x.v, c.x, c.h, c.w)
		h.check(fmt.Sprintf("%v %v -> %dx%d", dt, c.x, c.h, c.w), dt, os, want, true,
			func() *tensor.Tensor { return h.b.Upsample(x.t, c.h, c.w) }, x)
	})
}

func testEmbedding(h *harness) {
	for _, dt := range h.dtypes() {
		table := h.rand(dt, -1, 1, 11, 7)
		for _, ids := range [][]int32{{0, 10, 3, 3, 5}, {4}, {10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0}} {
			want := make([]float64, 0, len(ids)*7)
			for _, id := range ids {
				want = append(want, table.v[int(id)*7:int(id+1)*7]...)
			}
			h.check(fmt.Sprintf("%v ids %v", dt, ids), dt, dims{len(ids), 7}, want, true,
				func() *tensor.Tensor { return h.b.Embedding(table.t, ids) }, table)
		}
	}
}

func testMean(h *harness) {
	cases := []struct {
		x    dims
		axis int
	}{
		{dims{3, 4, 5}, 0},
		{dims{3, 4, 5}, 1},
		{dims{3, 4, 5}, 2},
		{dims{3, 4, 5}, -1},
		{dims{2, 33, 17}, 1},
		{dims{7}, 0},
		{dims{2, 1, 3, 4, 5}, 3},
	}
	h.forCases(len(cases), 2, func(dt tensor.DType, i int) {
		c := cases[i]
		x := h.rand(dt, -1, 3, c.x...)
		ax := c.axis
		if ax < 0 {
			ax += len(c.x)
		}
		os, want := refMean(x.v, c.x, ax)
		h.check(fmt.Sprintf("%v %v axis %d", dt, c.x, c.axis), dt, os, want, false,
			func() *tensor.Tensor { return h.b.Mean(x.t, c.axis) }, x)
	})
}

func testShapeErrors(h *harness) {
	b := h.b
	z := func(shape ...int) *tensor.Tensor { return b.Zeros(tensor.F32, shape...) }
	h.mustPanic("MatMul", "inner size mismatch", func() { b.MatMul(z(2, 3), z(4, 5), false, false) })
	h.mustPanic("MatMul", "rank 1", func() { b.MatMul(z(3), z(3, 2), false, false) })
	h.mustPanic("MatMul", "batch mismatch", func() { b.MatMul(z(2, 2, 3), z(3, 3, 2), false, false) })
	h.mustPanic("Conv2D", "channel mismatch", func() { b.Conv2D(z(1, 3, 5, 5), z(2, 4, 3, 3), nil, 1, 1) })
	h.mustPanic("Conv2D", "kernel larger than input", func() { b.Conv2D(z(1, 3, 2, 2), z(2, 3, 5, 5), nil, 1, 0) })
	h.mustPanic("Conv2D", "bias mismatch", func() { b.Conv2D(z(1, 3, 5, 5), z(2, 3, 3, 3), z(3), 1, 1) })
	h.mustPanic("GroupNorm", "groups do not divide channels", func() { b.GroupNorm(z(1, 6, 2, 2), 4, nil, nil, 1e-5) })
	h.mustPanic("GroupNorm", "weight mismatch", func() { b.GroupNorm(z(1, 6, 2, 2), 3, z(5), nil, 1e-5) })
	h.mustPanic("LayerNorm", "weight mismatch", func() { b.LayerNorm(z(2, 6), z(5), nil, 1e-5) })
	h.mustPanic("Attention", "head size mismatch", func() { b.Attention(z(1, 2, 3, 4), z(1, 2, 5, 8), z(1, 2, 5, 4), nil, 1) })
	h.mustPanic("Attention", "mask mismatch", func() { b.Attention(z(1, 2, 3, 4), z(1, 2, 5, 4), z(1, 2, 5, 4), z(3, 4), 1) })
	h.mustPanic("GEGLU", "odd last dimension", func() { b.GEGLU(z(2, 5)) })
	h.mustPanic("Add", "no broadcast", func() { b.Add(z(2, 3), z(4, 3)) })
	h.mustPanic("Mul", "no broadcast", func() { b.Mul(z(2, 3), z(2)) })
	h.mustPanic("Concat", "mismatch outside axis", func() { b.Concat(0, z(2, 3), z(2, 4)) })
	h.mustPanic("Concat", "axis out of range", func() { b.Concat(2, z(2, 3), z(2, 3)) })
	h.mustPanic("Slice", "out of bounds", func() { b.Slice(z(2, 3), 1, 2, 4) })
	h.mustPanic("Permute", "not a permutation", func() { b.Permute(z(2, 3, 4), 0, 0, 1) })
	h.mustPanic("Upsample", "rank 3", func() { b.Upsample(z(2, 3, 4), 4, 4) })
	h.mustPanic("Embedding", "id out of range", func() { b.Embedding(z(4, 3), []int32{1, 4}) })
	h.mustPanic("Mean", "axis out of range", func() { b.Mean(z(2, 3), 2) })
}
