package sdxl

import (
	"context"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/tensor"
)

// TestOffload runs astro_euler with the model kept on a separate host
// backend: the result must match the golden and every weight must be back
// on the host afterwards.
func TestOffload(t *testing.T) {
	host, dev := cpu.New(), cpu.New()
	m, err := LoadModel(host, golden.Path(t, "small/models/sdxl-small-base"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := &Pipeline{Backend: dev, Offload: host, Base: m}
	res, err := p.Generate(context.Background(), requestFor(t, golden.SmallScenarios(t)["astro_euler"]))
	if err != nil {
		t.Fatal(err)
	}
	f := golden.Open(t, "small/e2e_astro_euler.safetensors")
	want, _ := f.Get("final_latents")
	golden.Check(t, "offloaded astro_euler final_latents", res.Latents, want, 1e-3)
	for _, mod := range []any{m.Text.TextEncoder, m.Text.TextEncoder2, m.UNet, m.VAE} {
		for _, prm := range nn.Params(mod, "") {
			if b := prm.Tensor().Backend(); b != tensor.Backend(host) {
				t.Fatalf("%s left on %v", prm.Name, b)
			}
		}
	}
}
