package unet

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/tensor"
)

// eulerSigmas returns the EulerDiscreteScheduler sigmas of SDXL's
// scheduler config (scaled_linear betas 0.00085..0.012, 1000 steps,
// leading spacing, steps_offset 1) for the given step count, plus the
// timesteps. Computed like diffusers: float32 betas and cumulative
// product, sigmas in float64 rounded to float32.
func eulerSigmas(steps int) (ts []float32, sigmas []float32) {
	const n = 1000
	lo, hi := math.Sqrt(0.00085), math.Sqrt(0.012)
	ac := make([]float32, n)
	prod := float32(1)
	for i := range n {
		s := float32(lo + (hi-lo)*float64(i)/float64(n-1))
		prod *= 1 - s*s
		ac[i] = prod
	}
	ratio := n / steps
	for i := steps - 1; i >= 0; i-- {
		t := i*ratio + 1
		ts = append(ts, float32(t))
		a := float64(ac[t])
		sigmas = append(sigmas, float32(math.Sqrt((1-a)/a)))
	}
	return ts, append(sigmas, 0)
}

// TestSmallBaseFirstStep loads the small SDXL base UNet (real block
// topology, fp16 weights) and checks the first Euler step of the
// astro_euler pipeline golden: x1 = x0 + (sigma1 - sigma0) * eps_cfg.
func TestSmallBaseFirstStep(t *testing.T) {
	g := golden.Open(t, "small/e2e_astro_euler.safetensors")
	b := cpu.New()
	u, err := LoadDir(b, golden.Path(t, "small/models/sdxl-small-base/unet"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	noise, ns := g.Get("init_noise")
	ts, sig := eulerSigmas(6)
	initSigma := float32(math.Sqrt(float64(sig[0])*float64(sig[0]) + 1))
	x0 := make([]float32, len(noise))
	in := make([]float32, 2*len(noise))
	scale := float32(math.Sqrt(float64(sig[0])*float64(sig[0]) + 1))
	for i, v := range noise {
		x0[i] = v * initSigma
		in[i] = x0[i] / scale
		in[len(noise)+i] = in[i]
	}
	cat := func(a, c string) *tensor.Tensor {
		d1, s := g.Get(a)
		d2, _ := g.Get(c)
		s = append([]int{2}, s[1:]...)
		return b.FromFloat32(tensor.F32, s, append(append([]float32(nil), d1...), d2...))
	}
	sample := b.FromFloat32(tensor.F32, tensor.Shape{2, ns[1], ns[2], ns[3]}, in)
	pos, neg := BaseTimeIDs(TimeIDParams{OriginalSize: [2]int{64, 64}, TargetSize: [2]int{64, 64}})
	out, err := u.Forward(context.Background(), b, Input{
		Sample:              sample,
		Timesteps:           ts[:1],
		EncoderHiddenStates: cat("negative_prompt_embeds", "prompt_embeds"),
		TextEmbeds:          cat("negative_pooled_prompt_embeds", "pooled_prompt_embeds"),
		TimeIDs:             append(neg, pos...),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	eps := b.ToFloat32(out)
	n := len(noise)
	x1 := make([]float32, n)
	for i := range x1 {
		e := eps[i] + 5*(eps[n+i]-eps[i])
		x1[i] = x0[i] + e*(sig[1]-sig[0])
	}
	steps, _ := g.Get("step_latents")
	golden.Check(t, "small base: latents after step 1 (t=831)", x1, steps[:n], 1e-4)
}

// TestOddLatentSize runs the tiny base UNet on a latent whose sides are
// not divisible by the down-sampling factor: the up path must upsample to
// each skip's exact size.
func TestOddLatentSize(t *testing.T) {
	b := cpu.New()
	u, err := LoadDir(b, golden.Path(t, "tiny/models/sdxl-tiny-base/unet"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const h, w = 9, 13
	x := make([]float32, 4*h*w)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)))
	}
	ctx := make([]float32, 77*u.CrossAttentionDim())
	for i := range ctx {
		ctx[i] = float32(math.Cos(float64(i)))
	}
	pooled := make([]float32, u.ProjectionClassEmbeddingsInputDim()-6*u.AdditionTimeEmbedDim())
	ids, _ := BaseTimeIDs(TimeIDParams{OriginalSize: [2]int{72, 104}, TargetSize: [2]int{72, 104}})
	out, err := u.Forward(context.Background(), b, Input{
		Sample:              b.FromFloat32(tensor.F32, tensor.Shape{1, 4, h, w}, x),
		Timesteps:           []float32{500},
		EncoderHiddenStates: b.FromFloat32(tensor.F32, tensor.Shape{1, 77, u.CrossAttentionDim()}, ctx),
		TextEmbeds:          b.FromFloat32(tensor.F32, tensor.Shape{1, len(pooled)}, pooled),
		TimeIDs:             ids,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (tensor.Shape{1, 4, h, w}); !out.Shape().Equal(want) {
		t.Fatalf("output %v, want %v", out.Shape(), want)
	}
	for i, v := range b.ToFloat32(out) {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("output[%d] = %v", i, v)
		}
	}
}

// TestSmallRefinerRuns loads the small refiner UNet (4 levels, fp16 file)
// and runs one forward with refiner time ids; no golden holds the
// refiner's text context, so this checks loading, shapes and finiteness.
func TestSmallRefinerRuns(t *testing.T) {
	b := cpu.New()
	u, err := LoadDir(b, golden.Path(t, "small/models/sdxl-small-refiner/unet"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pos, neg := Img2ImgTimeIDs(TimeIDParams{OriginalSize: [2]int{64, 64}, TargetSize: [2]int{64, 64},
		AestheticScore: DefaultAestheticScore, NegativeAestheticScore: DefaultNegativeAestheticScore}, true)
	pooled := u.ProjectionClassEmbeddingsInputDim() - len(pos)*u.AdditionTimeEmbedDim()
	mk := func(shape ...int) *tensor.Tensor {
		n := tensor.Shape(shape).Numel()
		d := make([]float32, n)
		for i := range d {
			d[i] = float32(math.Sin(float64(i)*0.1)) * 0.5
		}
		return b.FromFloat32(tensor.F32, shape, d)
	}
	out, err := u.Forward(context.Background(), b, Input{
		Sample:              mk(2, 4, 8, 8),
		Timesteps:           []float32{101, 1},
		EncoderHiddenStates: mk(2, 77, u.CrossAttentionDim()),
		TextEmbeds:          mk(2, pooled),
		TimeIDs:             append(neg, pos...),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Shape().Equal(tensor.Shape{2, 4, 8, 8}) {
		t.Fatalf("output %v", out.Shape())
	}
	for i, v := range b.ToFloat32(out) {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("output[%d] = %v", i, v)
		}
	}
}

// TestTinyFP16Variant loads the fp16 variant of the tiny base UNet into
// float32 and compares with the fp32 golden; the weights are rounded to
// fp16, so the tolerance is fp16's, and the measured error is logged.
func TestTinyFP16Variant(t *testing.T) {
	g := golden.Open(t, "tiny/goldens/unet_base.safetensors")
	dir := golden.Path(t, "tiny/models/sdxl-tiny-base/unet")
	ws, err := config.OpenWeightsIn(dir, "diffusion_pytorch_model", "fp16")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if dt, _ := ws.DType("conv_in.weight"); dt != safetensors.F16 {
		t.Fatalf("fp16 variant holds %s", dt)
	}
	cfg, err := config.ReadUNetConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	b := cpu.New()
	var calls int
	u, err := Load(b, cfg, ws, LoadOptions{Progress: func(done, total int) { calls++ }})
	if err != nil {
		t.Fatal(err)
	}
	if calls != len(ws.Names()) {
		t.Errorf("progress called %d times for %d tensors", calls, len(ws.Names()))
	}
	get := func(name string) *tensor.Tensor {
		d, s := g.Get(name)
		return b.FromFloat32(tensor.F32, s, d)
	}
	ids, _ := g.Get("in.time_ids")
	ts, _ := g.Get("in.timestep")
	out, err := u.Forward(context.Background(), b, Input{Sample: get("in.sample"), Timesteps: ts, EncoderHiddenStates: get("in.encoder_hidden_states"),
		TextEmbeds: get("in.text_embeds"), TimeIDs: ids}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := g.Get("out.sample")
	golden.Check(t, "out.sample with fp16 weights", b.ToFloat32(out), want, 1e-2)
}

func TestForwardInputErrors(t *testing.T) {
	b := cpu.New()
	u, err := LoadDir(b, golden.Path(t, "tiny/models/sdxl-tiny-base/unet"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	good := func() Input {
		pos, _ := BaseTimeIDs(TimeIDParams{OriginalSize: [2]int{64, 64}, TargetSize: [2]int{64, 64}})
		return Input{
			Sample:              b.Zeros(tensor.F32, 2, 4, 8, 8),
			Timesteps:           []float32{10},
			EncoderHiddenStates: b.Zeros(tensor.F32, 2, 77, u.CrossAttentionDim()),
			TextEmbeds:          b.Zeros(tensor.F32, 2, u.ProjectionClassEmbeddingsInputDim()-6*u.AdditionTimeEmbedDim()),
			TimeIDs:             append(pos, pos...),
		}
	}
	if _, err := u.Forward(context.Background(), b, good(), nil); err != nil {
		t.Fatalf("valid input: %v", err)
	}
	for _, c := range []struct {
		name string
		edit func(*Input)
		want string
	}{
		{"channels", func(in *Input) { in.Sample = b.Zeros(tensor.F32, 2, 3, 8, 8) }, "sample must be [B, 4, h, w]"},
		{"timesteps", func(in *Input) { in.Timesteps = []float32{1, 2, 3} }, "3 timesteps for a batch of 2"},
		{"context", func(in *Input) { in.EncoderHiddenStates = b.Zeros(tensor.F32, 2, 77, 7) }, "encoder_hidden_states must be"},
		{"no context", func(in *Input) { in.EncoderHiddenStates = nil }, "encoder_hidden_states must be"},
		{"refiner ids", func(in *Input) { in.TimeIDs = in.TimeIDs[:10] }, "5 time ids"},
		{"text embeds", func(in *Input) { in.TextEmbeds = nil }, "text_embeds must be"},
	} {
		in := good()
		c.edit(&in)
		_, err := u.Forward(context.Background(), b, in, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
}

// TestAdditionalResiduals: zero residuals leave the output unchanged, a
// mid residual changes it, and malformed residuals are refused before any
// work.
func TestAdditionalResiduals(t *testing.T) {
	b := cpu.New()
	u, err := LoadDir(b, golden.Path(t, "tiny/models/sdxl-tiny-base/unet"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pos, _ := BaseTimeIDs(TimeIDParams{OriginalSize: [2]int{64, 64}, TargetSize: [2]int{64, 64}})
	sample := make([]float32, 2*4*8*8)
	for i := range sample {
		sample[i] = float32(i%7) / 7
	}
	in := Input{
		Sample:              b.FromFloat32(tensor.F32, tensor.Shape{2, 4, 8, 8}, sample),
		Timesteps:           []float32{10},
		EncoderHiddenStates: b.Zeros(tensor.F32, 2, 77, u.CrossAttentionDim()),
		TextEmbeds:          b.Zeros(tensor.F32, 2, u.ProjectionClassEmbeddingsInputDim()-6*u.AdditionTimeEmbedDim()),
		TimeIDs:             append(pos, pos...),
	}
	run := func(in Input) []float32 {
		t.Helper()
		out, err := u.Forward(context.Background(), b, in, nil)
		if err != nil {
			t.Fatal(err)
		}
		return b.ToFloat32(out)
	}
	plain := run(in)
	// The skips' shapes, from a recording of the down path.
	var zeros []*tensor.Tensor
	h, w := 8, 8
	chans := u.Config().SkipChannels()
	for k, c := range chans {
		if k > 0 && k%(u.LayersPerBlock()[0]+1) == 0 && k < len(chans)-1 {
			h, w = (h+1)/2, (w+1)/2
		}
		zeros = append(zeros, b.Zeros(tensor.F32, 2, c, h, w))
	}
	withZeros := in
	withZeros.DownResiduals, withZeros.MidResidual = zeros, b.Zeros(tensor.F32, 2, chans[len(chans)-1], h, w)
	if got := run(withZeros); golden.MaxAbs(got, plain) != 0 {
		t.Errorf("zero residuals changed the output by %g", golden.MaxAbs(got, plain))
	}
	shifted := withZeros
	shifted.MidResidual = b.FromFloat32(tensor.F32, tensor.Shape{2, chans[len(chans)-1], 1, 1}, make([]float32, 2*chans[len(chans)-1]))
	shifted.DownResiduals = append([]*tensor.Tensor(nil), zeros...)
	shifted.DownResiduals[0] = b.FromFloat32(tensor.F32, zeros[0].Shape(), filled(zeros[0].Numel(), 0.5))
	if got := run(shifted); golden.MaxAbs(got, plain) == 0 {
		t.Error("a residual on the first skip changed nothing")
	}
	for _, c := range []struct {
		name string
		edit func(*Input)
		want string
	}{
		{"mid only", func(in *Input) { in.DownResiduals = nil }, "go together"},
		{"count", func(in *Input) { in.DownResiduals = in.DownResiduals[1:] }, "residuals for"},
		{"width", func(in *Input) { in.MidResidual = b.Zeros(tensor.F32, 2, 3, h, w) }, "additional residual"},
		{"size", func(in *Input) {
			in.DownResiduals = append([]*tensor.Tensor(nil), in.DownResiduals...)
			in.DownResiduals[2] = b.Zeros(tensor.F32, 2, chans[2], 3, 3)
		}, "its skip connection"},
	} {
		bad := withZeros
		c.edit(&bad)
		if _, err := u.Forward(context.Background(), b, bad, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
}

func filled(n int, v float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = v
	}
	return out
}
