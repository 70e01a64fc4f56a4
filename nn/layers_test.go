package nn

import (
	"math"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/tensor"
)

func TestTimesteps(t *testing.T) {
	// dim 5: half 2, frequencies 1 and exp(-ln(1e4)/2) = 0.01, odd column 0.
	got := Timesteps([]float32{1, 250}, 5, true, 0)
	f := float32(math.Exp(float64(float32(-math.Log(10000)) / 2)))
	want := []float32{
		float32(math.Cos(1)), float32(math.Cos(float64(f))), float32(math.Sin(1)), float32(math.Sin(float64(f))), 0,
		float32(math.Cos(250)), float32(math.Cos(float64(250 * f))), float32(math.Sin(250)), float32(math.Sin(float64(250 * f))), 0,
	}
	golden.Check(t, "Timesteps flip", got, want, 1e-7)
	got = Timesteps([]float32{3}, 4, false, 1) // freq_shift 1: exponent / (half - 1)
	f = float32(math.Exp(float64(float32(-math.Log(10000)))))
	want = []float32{float32(math.Sin(3)), float32(math.Sin(float64(3 * f))), float32(math.Cos(3)), float32(math.Cos(float64(3 * f)))}
	golden.Check(t, "Timesteps shift", got, want, 1e-7)
}

func names(m any) string {
	var s []string
	for _, p := range Params(m, "") {
		s = append(s, p.Name+p.Tensor().Shape().String())
	}
	return strings.Join(s, " ")
}

func TestLayerNames(t *testing.T) {
	blk := NewBasicTransformerBlock("x", 8, 2, 4, 6, false, 1e-5)
	want := "norm1.weight[8] norm1.bias[8] attn1.to_q.weight[8 8] attn1.to_k.weight[8 8] attn1.to_v.weight[8 8] " +
		"attn1.to_out.0.weight[8 8] attn1.to_out.0.bias[8] norm2.weight[8] norm2.bias[8] attn2.to_q.weight[8 8] " +
		"attn2.to_k.weight[8 6] attn2.to_v.weight[8 6] attn2.to_out.0.weight[8 8] attn2.to_out.0.bias[8] " +
		"norm3.weight[8] norm3.bias[8] ff.net.0.proj.weight[64 8] ff.net.0.proj.bias[64] ff.net.2.weight[8 32] ff.net.2.bias[8]"
	if got := names(blk); got != want {
		t.Errorf("BasicTransformerBlock:\n got %s\nwant %s", got, want)
	}
	tr := NewTransformer2D("t", Transformer2DConfig{Channels: 8, Heads: 2, HeadDim: 4, Layers: 1, CrossDim: 6, Groups: 2, NormEps: 1e-5})
	if got := names(tr); !strings.HasPrefix(got, "norm.weight[8] norm.bias[8] proj_in.weight[8 8 1 1] proj_in.bias[8] transformer_blocks.0.") ||
		!strings.HasSuffix(got, "proj_out.weight[8 8 1 1] proj_out.bias[8]") {
		t.Errorf("Transformer2D (conv projection): %s", got)
	}
	r := NewResnetBlock2D("r", ResnetConfig{In: 4, Out: 8, TembChannels: 16, Groups: 2, Eps: 1e-5})
	want = "norm1.weight[4] norm1.bias[4] conv1.weight[8 4 3 3] conv1.bias[8] time_emb_proj.weight[8 16] time_emb_proj.bias[8] " +
		"norm2.weight[8] norm2.bias[8] conv2.weight[8 8 3 3] conv2.bias[8] conv_shortcut.weight[8 4 1 1] conv_shortcut.bias[8]"
	if got := names(r); got != want {
		t.Errorf("ResnetBlock2D:\n got %s\nwant %s", got, want)
	}
}

// TestTransformer2DConvEqualsLinear: with 1x1-conv projections holding the
// same numbers as the linear ones, both Transformer2D variants compute the
// same function.
func TestTransformer2DConvEqualsLinear(t *testing.T) {
	b := cpu.New()
	cfg := Transformer2DConfig{Channels: 8, Heads: 2, HeadDim: 4, Layers: 2, CrossDim: 6, Groups: 2, NormEps: 1e-5, LinearProjection: true}
	lin := NewTransformer2D("t", cfg)
	InitRandom(b, lin, tensor.F32, 7)
	cfg.LinearProjection = false
	conv := NewTransformer2D("t", cfg)
	lp, cp := Params(lin, ""), Params(conv, "")
	for i := range lp {
		w := lp[i].Tensor()
		*cp[i].Ptr = b.FromFloat32(tensor.F32, cp[i].Tensor().Shape(), b.ToFloat32(w))
	}
	x := b.FromFloat32(tensor.F32, tensor.Shape{2, 8, 3, 5}, seq(2*8*3*5))
	ctx := b.FromFloat32(tensor.F32, tensor.Shape{2, 7, 6}, seq(2*7*6))
	a := b.ToFloat32(lin.Forward(b, nil, x, ctx))
	c := b.ToFloat32(conv.Forward(b, nil, x, ctx))
	golden.Check(t, "conv vs linear projection", c, a, 1e-6)
}

func seq(n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(math.Sin(float64(i) * 0.37))
	}
	return s
}

// TestResnetScaleAndDownsamplePad checks output_scale_factor and the
// asymmetric padding of Downsample2D(padding=0) against direct
// computations.
func TestResnetScaleAndDownsamplePad(t *testing.T) {
	b := cpu.New()
	r := NewResnetBlock2D("r", ResnetConfig{In: 4, Out: 4, Groups: 2, Eps: 1e-6})
	InitRandom(b, r, tensor.F32, 3)
	x := b.FromFloat32(tensor.F32, tensor.Shape{1, 4, 5, 5}, seq(100))
	base := b.ToFloat32(r.Forward(b, nil, x, nil))
	r.OutputScale = 2
	half := b.ToFloat32(r.Forward(b, nil, x, nil))
	for i := range base {
		base[i] /= 2
	}
	golden.Check(t, "output_scale_factor 2", half, base, 1e-7)

	d := NewDownsample2D("d", 1, 1, 0)
	one := make([]float32, 9)
	for i := range one {
		one[i] = 1
	}
	d.Conv.Weight = b.FromFloat32(tensor.F32, tensor.Shape{1, 1, 3, 3}, one)
	d.Conv.Bias = b.FromFloat32(tensor.F32, tensor.Shape{1}, []float32{0})
	in := b.FromFloat32(tensor.F32, tensor.Shape{1, 1, 4, 4}, []float32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	out := d.Forward(b, nil, in)
	// windows at rows/cols {0,2}: the last ones reach the zero padding.
	golden.Check(t, "Downsample2D padding 0", b.ToFloat32(out), []float32{9, 6, 6, 4}, 0)
}
