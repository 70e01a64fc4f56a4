package unet

import (
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/sdxl/singlefile"
)

// TestSingleFileMatchesFolder loads the small base UNet from its
// original-layout single file (through package singlefile's view) and
// checks every weight equals the diffusers-folder load exactly.
func TestSingleFileMatchesFolder(t *testing.T) {
	dir := golden.Path(t, "small/models/sdxl-small-base/unet")
	fs, err := config.OpenWeightFiles(golden.Path(t, "small/models/sdxl-small-base.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	cfg, err := config.ReadUNetConfig(dir + "/config.json")
	if err != nil {
		t.Fatal(err)
	}
	u, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	down, up := u.BlockTypes()
	view, err := singlefile.UNet(fs, nn.Params(u, ""), singlefile.LayoutFromBlockTypes(down, up, u.LayersPerBlock()[0]))
	if err != nil {
		t.Fatal(err)
	}
	b := cpu.New()
	if err := u.Load(b, view, LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	ref, err := LoadDir(b, dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, want := nn.Params(u, ""), nn.Params(ref, "")
	for i := range want {
		g, w := b.ToFloat32(got[i].Tensor()), b.ToFloat32(want[i].Tensor())
		if d := golden.MaxAbs(g, w); d != 0 {
			t.Fatalf("%s differs by %g", want[i].Name, d)
		}
	}
	t.Logf("%d weights identical", len(want))
}
