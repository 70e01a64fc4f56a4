package lora_test

import (
	"context"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/lora"
)

// freshBase loads a small base of its own (not the shared one).
func freshBase(t *testing.T) *sdxl.Model {
	t.Helper()
	m, err := sdxl.LoadModel(cpu.New(), golden.Path(t, "small/models/sdxl-small-base"), sdxl.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// run applies uses to m (through ap) and generates the golden request.
func run(t *testing.T, m *sdxl.Model, ap *lora.Applier, uses []lora.Use) *sdxl.Result {
	t.Helper()
	if err := ap.Set(context.Background(), uses); err != nil {
		t.Fatal(err)
	}
	sc := scenarios(t)["lora_none"]
	res, err := (&sdxl.Pipeline{Backend: cpu.New(), Base: m}).Generate(context.Background(), sc.request())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func sameBits(t *testing.T, what string, a, b []float32) {
	t.Helper()
	if !golden.SameBits(a, b) {
		t.Fatalf("%s differs from the fresh run's (max abs %g)", what, golden.MaxAbs(a, b))
	}
}

// TestSwitching: one model switched A → B → none gives, bit for bit, the
// weights and images of fresh models with B and with nothing applied.
func TestSwitching(t *testing.T) {
	kohya := loadGolden(t, goldenFiles["kohya"])
	diff := loadGolden(t, goldenFiles["diffusers"])
	sgm := loadGolden(t, goldenFiles["kohya_sgm"])
	A := []lora.Use{lora.Scaled(kohya, 0.6)}
	B := []lora.Use{lora.Scaled(diff, 1), {File: sgm, UNetScale: -0.3, TextScale: 0.2}}

	m := freshBase(t)
	ap, err := lora.NewApplier(targetOf(m))
	if err != nil {
		t.Fatal(err)
	}
	run(t, m, ap, A)
	gotB := run(t, m, ap, B)
	gotNone := run(t, m, ap, nil)
	if ap.Touched() != 0 || len(ap.Active()) != 0 {
		t.Errorf("after Set(nil): %d weights touched, %d LoRAs active", ap.Touched(), len(ap.Active()))
	}

	fresh := freshBase(t)
	fap, err := lora.NewApplier(targetOf(fresh))
	if err != nil {
		t.Fatal(err)
	}
	wantNone := run(t, fresh, fap, nil)
	sameBits(t, "none: final latents", gotNone.Latents, wantNone.Latents)
	sameBits(t, "none: image", gotNone.Images, wantNone.Images)
	wantB := run(t, fresh, fap, B)
	sameBits(t, "B: final latents", gotB.Latents, wantB.Latents)
	sameBits(t, "B: image", gotB.Images, wantB.Images)

	// The weights themselves, with B on both models.
	if err := ap.Set(context.Background(), B); err != nil {
		t.Fatal(err)
	}
	b := m.UNet.ConvIn.Weight.Backend()
	got, want := targetOf(m).Params(), targetOf(fresh).Params()
	for i := range got {
		sameBits(t, got[i].Name, b.ToFloat32(got[i].Tensor()), b.ToFloat32(want[i].Tensor()))
	}
	t.Logf("A → B → none → B: final latents and images bit-identical to fresh runs; %d weights with B bit-identical", len(got))
}
