package lora_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/lora"
	"github.com/sdxl-go/sdxl/tensor"
)

// goldenFiles are the three spellings of LoRA "a" in golden/lora.
var goldenFiles = map[string]string{
	"diffusers": "lora/lora_a.diffusers.safetensors",
	"kohya":     "lora/lora_a.kohya.safetensors",
	"kohya_sgm": "lora/lora_a.kohya_sgm.safetensors",
}

var smallBase struct {
	once sync.Once
	m    *sdxl.Model
	err  error
}

// loadBase loads the small base once per test binary on the CPU backend.
// Tests that change its weights must leave them as they found them.
func loadBase(t *testing.T) *sdxl.Model {
	t.Helper()
	p := golden.Path(t, "small/models/sdxl-small-base")
	smallBase.once.Do(func() { smallBase.m, smallBase.err = sdxl.LoadModel(cpu.New(), p, sdxl.LoadOptions{}) })
	if smallBase.err != nil {
		t.Fatal(smallBase.err)
	}
	return smallBase.m
}

func targetOf(m *sdxl.Model) lora.Target {
	return lora.Target{UNet: m.UNet, TextEncoder: m.Text.TextEncoder, TextEncoder2: m.Text.TextEncoder2}
}

func loadGolden(t *testing.T, rel string) *lora.File {
	t.Helper()
	f, err := lora.Load(golden.Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// weightByGoldenName finds a weight of the target by its diffusers name in
// fused_weights.safetensors ("unet.…", "text_encoder.text_model.…").
func weightByGoldenName(t *testing.T, tg lora.Target, name string) *tensor.Tensor {
	t.Helper()
	ours := strings.Replace(name, ".text_model.", ".", 1)
	for _, p := range tg.Params() {
		if p.Name == ours {
			return p.Tensor()
		}
	}
	t.Fatalf("no parameter %s", ours)
	return nil
}

// TestFusedWeights: the 13 weights of fused_weights.safetensors after
// merging each spelling of LoRA a at scales 0.6 and 1.0, within 1e-6 of
// diffusers' fuse_lora, and the model restored exactly afterwards.
func TestFusedWeights(t *testing.T) {
	m := loadBase(t)
	tg := targetOf(m)
	fw := golden.Open(t, "lora/fused_weights.safetensors")
	var names []string
	for n := range fw.Tensors {
		if s, ok := strings.CutPrefix(n, "base."); ok {
			names = append(names, s)
		}
	}
	if len(names) != 13 {
		t.Fatalf("%d base weights in fused_weights.safetensors, want 13", len(names))
	}
	ap, err := lora.NewApplier(tg)
	if err != nil {
		t.Fatal(err)
	}
	b := m.UNet.ConvIn.Weight.Backend()
	for format, rel := range goldenFiles {
		f := loadGolden(t, rel)
		for _, sc := range []struct {
			prefix string
			s      float64
		}{{"a_s0p6.", 0.6}, {"a_s1p0.", 1.0}} {
			if err := ap.Set(context.Background(), []lora.Use{lora.Scaled(f, sc.s)}); err != nil {
				t.Fatal(err)
			}
			if ap.Touched() != 285 {
				t.Errorf("%s: %d weights changed, diffusers changes 285", format, ap.Touched())
			}
			worst := 0.0
			for _, n := range names {
				want, _ := fw.Get(sc.prefix + n)
				got := b.ToFloat32(weightByGoldenName(t, tg, n))
				e := golden.MaxAbs(got, want)
				worst = max(worst, e)
				if e > 1e-6 {
					t.Errorf("%s scale %v: %s differs from diffusers' fused weight by %.3g", format, sc.s, n, e)
				}
			}
			t.Logf("%s (%s) scale %v: max abs diff %.3g over the 13 weights", format, f.Format(), sc.s, worst)
		}
	}
	ap.Clear()
	for _, n := range names {
		want, _ := fw.Get("base." + n)
		if e := golden.MaxAbs(b.ToFloat32(weightByGoldenName(t, tg, n)), want); e != 0 {
			t.Errorf("after Clear %s differs from the base by %.3g", n, e)
		}
	}
}
