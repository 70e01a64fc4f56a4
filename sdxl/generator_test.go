package sdxl

import (
	"context"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sched"
	"github.com/sdxl-go/sdxl/sched/torchrand"
	"github.com/sdxl-go/sdxl/tensor"
)

// TestCUDAGeneratorHook: with RNG "cuda" the pipeline draws from
// CUDAGenerator when one is set (the GPU backend's device generator); here a
// CPU generator stands in, so the run must equal the RNG "cpu" run.
func TestCUDAGeneratorHook(t *testing.T) {
	b := cpu.New()
	base, _ := loadSmall(t, b, false)
	used := 0
	p := &Pipeline{Backend: b, Base: base, CUDAGenerator: func(seed uint64) sched.Generator {
		used++
		return torchrand.NewCPU(seed)
	}}
	req := requestFor(t, golden.SmallScenarios(t)["lion_euler_a"])
	req.RNG = "cuda"
	res, err := p.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if used != 1 {
		t.Fatalf("CUDAGenerator called %d times", used)
	}
	f := golden.Open(t, "small/e2e_lion_euler_a.safetensors")
	want, _ := f.Get("final_latents")
	golden.Check(t, "rng cuda through the hook", res.Latents, want, 1e-3)
	req.RNG = "cpu"
	if _, err := p.Generate(context.Background(), req); err != nil || used != 1 {
		t.Fatalf("rng cpu used the CUDA hook (%d calls), %v", used, err)
	}
}

// TestDTypeFollowsWeights: a model loaded in F16 runs its UNet in F16 when
// the pipeline's DType is left at its zero value.
func TestDTypeFollowsWeights(t *testing.T) {
	b := cpu.New()
	m, err := LoadModel(b, golden.Path(t, "small/models/sdxl-small-base"), LoadOptions{DType: tensor.F16})
	if err != nil {
		t.Fatal(err)
	}
	p := &Pipeline{Backend: b, Base: m}
	if dt := p.activationDType(m); dt != tensor.F16 {
		t.Fatalf("activation dtype %v, want F16", dt)
	}
	explicit := &Pipeline{Backend: b, Base: m, Precision: PrecisionF16}
	req := requestFor(t, golden.SmallScenarios(t)["astro_euler"])
	req.KeepStepLatents = false
	r1, err := p.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := explicit.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if d := golden.MaxAbs(r1.Latents, r2.Latents); d != 0 {
		t.Fatalf("implicit and explicit F16 runs differ by %g", d)
	}
}
