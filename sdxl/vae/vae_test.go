package vae

import (
	"context"
	"encoding/json"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/sdxl/capture"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/sdxl/singlefile"
	"github.com/sdxl-go/sdxl/tensor"
)

func TestParamCountSDXL(t *testing.T) {
	v, err := New(config.SDXLVAE())
	if err != nil {
		t.Fatal(err)
	}
	if v.ScaleFactor() != 8 {
		t.Errorf("scale factor %d, want 8", v.ScaleFactor())
	}
	const want = 83653863
	if got := nn.CountParams(v); got != want {
		t.Fatalf("SDXL VAE: %d parameters, want %d", got, want)
	}
	t.Logf("SDXL VAE: %d parameters", int64(want))
}

func TestFullKeys(t *testing.T) {
	data, err := os.ReadFile(golden.Path(t, "full-keys/sdxl-base-vae.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want map[string][]int
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	v, err := New(config.SDXLVAE())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]tensor.Shape{}
	for _, p := range nn.Params(v, "") {
		got[p.Name] = p.Tensor().Shape()
	}
	var bad []string
	for k, s := range want {
		if g, ok := got[k]; !ok || !g.Equal(s) {
			bad = append(bad, k)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			bad = append(bad, k)
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Fatalf("%d keys missing, extra or mis-shaped, e.g. %v", len(bad), bad[:min(5, len(bad))])
	}
	t.Logf("%d keys bound with matching shapes", len(want))
}

func loadTiny(t *testing.T, b tensor.Backend) *VAE {
	v, err := LoadDir(b, golden.Path(t, "tiny/models/sdxl-tiny-base/vae"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestGoldenDecode(t *testing.T) {
	g := golden.Open(t, "tiny/goldens/vae.safetensors")
	b := cpu.New()
	v := loadTiny(t, b)
	get := func(name string) *tensor.Tensor {
		d, s := g.Get(name)
		return b.FromFloat32(tensor.F32, s, d)
	}
	z := v.Unscale(b, get("decode.latents"))
	want, _ := g.Get("decode.latents_unscaled")
	golden.Check(t, "decode.latents_unscaled", b.ToFloat32(z), want, 1e-6)

	rec := capture.MustNew("**")
	img, err := v.Decode(context.Background(), b, rec, get("decode.latents_unscaled"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ = g.Get("decode.sample")
	golden.Check(t, "decode.sample", b.ToFloat32(img), want, 1e-4)
	checkActs(t, g, "decode.act.", rec)
}

func TestGoldenEncode(t *testing.T) {
	g := golden.Open(t, "tiny/goldens/vae.safetensors")
	b := cpu.New()
	v := loadTiny(t, b)
	get := func(name string) *tensor.Tensor {
		d, s := g.Get(name)
		return b.FromFloat32(tensor.F32, s, d)
	}
	rec := capture.MustNew("**")
	mom, err := v.Moments(context.Background(), b, rec, get("encode.image_normalized"))
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, x *tensor.Tensor) {
		want, _ := g.Get(name)
		golden.Check(t, name, b.ToFloat32(x), want, 1e-4)
	}
	check("encode.moments", mom)
	checkActs(t, g, "encode.act.", rec)
	p := NewPosterior(b, mom)
	check("encode.mean", p.Mean)
	check("encode.logvar", p.LogVar)
	check("encode.std", p.Std)
	s, err := p.Sample(b, get("encode.eps"))
	if err != nil {
		t.Fatal(err)
	}
	check("encode.sample", s)
	check("encode.latents_scaled", v.Scale(b, s))
	check("encode.mode_scaled", v.Scale(b, p.Mean))
}

func checkActs(t *testing.T, g *golden.File, prefix string, rec *capture.Recorder) {
	t.Helper()
	var names []string
	for n := range g.Tensors {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		t.Fatalf("no %s* tensors in the golden", prefix)
	}
	for _, n := range names {
		a, ok := rec.Get(strings.TrimPrefix(n, prefix))
		if !ok {
			t.Errorf("%s: not recorded", n)
			continue
		}
		want, ws := g.Get(n)
		if !tensor.Shape(ws).Equal(a.Shape) {
			t.Errorf("%s: shape %v, want %v", n, a.Shape, ws)
			continue
		}
		golden.Check(t, n, a.Data, want, 1e-4)
	}
}

// TestSmallDecode decodes the final latents of a small-model pipeline golden
// (real 4-level VAE topology, fp16 weights widened to float32) and compares
// the post-processed image (clamp(x/2+0.5, 0, 1), NHWC).
func TestSmallDecode(t *testing.T) {
	g := golden.Open(t, "small/e2e_astro_euler.safetensors")
	b := cpu.New()
	v, err := LoadDir(b, golden.Path(t, "small/models/sdxl-small-base/vae"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, s := g.Get("final_latents")
	z := v.Unscale(b, b.FromFloat32(tensor.F32, s, d))
	img, err := v.Decode(context.Background(), b, nil, z)
	if err != nil {
		t.Fatal(err)
	}
	x := b.ToFloat32(img)
	C, H, W := img.Dim(1), img.Dim(2), img.Dim(3)
	nhwc := make([]float32, len(x))
	for c := range C {
		for i := range H * W {
			nhwc[i*C+c] = min(max(x[c*H*W+i]/2+0.5, 0), 1)
		}
	}
	want, _ := g.Get("image")
	golden.Check(t, "small VAE decode image", nhwc, want, 1e-4)
}

// convAttnSource presents the mid-block attention projections of a
// diffusers file as 1x1 convolutions, as original single-file checkpoints
// store them.
type convAttnSource struct{ nn.Source }

func (s convAttnSource) Shape(name string) ([]int, bool) {
	shape, ok := s.Source.Shape(name)
	if ok && isAttnProj(name) {
		return append(shape, 1, 1), true
	}
	return shape, ok
}

func TestLoadConvAttentionWeights(t *testing.T) {
	g := golden.Open(t, "tiny/goldens/vae.safetensors")
	dir := golden.Path(t, "tiny/models/sdxl-tiny-base/vae")
	cfg, err := config.ReadVAEConfig(dir + "/config.json")
	if err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(dir + "/diffusion_pytorch_model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fs, err := config.NewWeightSet(f)
	if err != nil {
		t.Fatal(err)
	}
	src := convAttnSource{fs}
	if s, _ := src.Shape("decoder.mid_block.attentions.0.to_q.weight"); len(s) != 4 {
		t.Fatalf("test source shape %v, want a 1x1 conv", s)
	}
	b := cpu.New()
	v, err := Load(b, cfg, src, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, s := g.Get("decode.latents_unscaled")
	img, err := v.Decode(context.Background(), b, nil, b.FromFloat32(tensor.F32, s, d))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := g.Get("decode.sample")
	golden.Check(t, "decode.sample (1x1-conv attention weights)", b.ToFloat32(img), want, 1e-4)
}

func TestUnsupportedConfig(t *testing.T) {
	c := config.SDXLVAE()
	c.ActFn = "gelu"
	if _, err := New(c); err == nil || !strings.Contains(err.Error(), `act_fn = "gelu"`) {
		t.Errorf("err = %v", err)
	}
}

// TestScaleVariants checks Unscale against the pipelines' formulas for
// per-channel latents statistics and for a shift factor, and that Scale
// inverts it.
func TestScaleVariants(t *testing.T) {
	b := cpu.New()
	x := make([]float32, 2*4*3)
	for i := range x {
		x[i] = float32(i)*0.25 - 2
	}
	in := b.FromFloat32(tensor.F32, tensor.Shape{2, 4, 3, 1}, x)
	c := config.SDXLVAE()
	c.LatentsMean = []float64{0.1, -0.2, 0.3, 0}
	c.LatentsStd = []float64{1.5, 2, 0.5, 1}
	v, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float32, len(x))
	for i := range x {
		ch := (i / 3) % 4
		want[i] = float32(float64(x[i])*c.LatentsStd[ch]/c.ScalingFactor + c.LatentsMean[ch])
	}
	u := v.Unscale(b, in)
	golden.Check(t, "unscale with latents_mean/std", b.ToFloat32(u), want, 1e-6)
	golden.Check(t, "scale(unscale(x)) with latents_mean/std", b.ToFloat32(v.Scale(b, u)), x, 1e-6)

	c = config.SDXLVAE()
	shift := 0.1159
	c.ShiftFactor = &shift
	if v, err = New(c); err != nil {
		t.Fatal(err)
	}
	for i := range x {
		want[i] = float32(float64(x[i])/c.ScalingFactor + shift)
	}
	u = v.Unscale(b, in)
	golden.Check(t, "unscale with shift_factor", b.ToFloat32(u), want, 1e-6)
	golden.Check(t, "scale(unscale(x)) with shift_factor", b.ToFloat32(v.Scale(b, u)), x, 1e-6)
}

// TestSingleFileMatchesFolder loads the small VAE from the original-layout
// single file (mid-block attention as 1x1 convs) through package
// singlefile's view and checks every weight against the folder load.
func TestSingleFileMatchesFolder(t *testing.T) {
	dir := golden.Path(t, "small/models/sdxl-small-base/vae")
	fs, err := config.OpenWeightFiles(golden.Path(t, "small/models/sdxl-small-base.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	cfg, err := config.ReadVAEConfig(dir + "/config.json")
	if err != nil {
		t.Fatal(err)
	}
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	view, err := singlefile.VAE(fs, nn.Params(v, ""), len(cfg.BlockOutChannels))
	if err != nil {
		t.Fatal(err)
	}
	b := cpu.New()
	if err := v.Load(b, view, LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	ref, err := LoadDir(b, dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, want := nn.Params(v, ""), nn.Params(ref, "")
	for i := range want {
		if d := golden.MaxAbs(b.ToFloat32(got[i].Tensor()), b.ToFloat32(want[i].Tensor())); d != 0 {
			t.Fatalf("%s differs by %g", want[i].Name, d)
		}
	}
	t.Logf("%d weights identical", len(want))
}
