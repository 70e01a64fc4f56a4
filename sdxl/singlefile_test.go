package sdxl

import (
	"context"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/nn"
)

// TestSingleFileMatchesFolder loads the small base from its original-layout
// single file and from its diffusers folder: every parameter of every
// component must be bit-identical (the file is the folder's fp16 weights,
// converted by diffusers' script), and the astro_euler scenario must match
// its golden through the single file.
func TestSingleFileMatchesFolder(t *testing.T) {
	b := cpu.New()
	cfgDir := golden.Path(t, "small/models/sdxl-small-base")
	single, err := LoadModel(b, golden.Path(t, "small/models/sdxl-small-base.safetensors"), LoadOptions{ConfigDir: cfgDir})
	if err != nil {
		t.Fatal(err)
	}
	folder, _ := loadSmall(t, b, false)
	for _, c := range []struct {
		name string
		a, b any
	}{
		{"text_encoder", folder.Text.TextEncoder, single.Text.TextEncoder},
		{"text_encoder_2", folder.Text.TextEncoder2, single.Text.TextEncoder2},
		{"unet", folder.UNet, single.UNet},
		{"vae", folder.VAE, single.VAE},
	} {
		pa, pb := nn.Params(c.a, ""), nn.Params(c.b, "")
		if len(pa) != len(pb) {
			t.Fatalf("%s: %d vs %d parameters", c.name, len(pa), len(pb))
		}
		n := 0
		for i := range pa {
			x, y := b.ToFloat32(pa[i].Tensor()), b.ToFloat32(pb[i].Tensor())
			if d := golden.MaxAbs(x, y); d != 0 {
				t.Errorf("%s: %s differs by %g", c.name, pa[i].Name, d)
			}
			n += len(x)
		}
		t.Logf("%s: %d parameters (%d values) identical", c.name, len(pa), n)
	}
	sc := golden.SmallScenarios(t)["astro_euler"]
	p := &Pipeline{Backend: b, Base: single}
	res, err := p.Generate(context.Background(), requestFor(t, sc))
	if err != nil {
		t.Fatal(err)
	}
	f := golden.Open(t, "small/e2e_astro_euler.safetensors")
	want, _ := f.Get("final_latents")
	golden.Check(t, "single-file astro_euler final_latents", res.Latents, want, 1e-3)
}
