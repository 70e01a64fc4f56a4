package vae

import (
	"encoding/json"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/capture"
	"github.com/sdxl-go/sdxl/tensor"
)

func TestParamCountSDXL(t *testing.T) {
	v, err := New(SDXLConfig())
	if err != nil {
		t.Fatal(err)
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
	v, err := New(SDXLConfig())
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
	img, err := v.Decode(b, rec, get("decode.latents_unscaled"))
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
	mom, err := v.Moments(b, rec, get("encode.image_normalized"))
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
