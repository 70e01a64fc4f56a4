package sdxl

import (
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
)

// TestSingleFileInpaint writes the small 9-channel inpainting model as an
// original-layout single file and loads it back, with its own folder as
// the config and with the 4-channel base's (the file's conv_in decides the
// input channels, as diffusers infers the inpainting model from the
// checkpoint): every parameter must equal the folder model's.
func TestSingleFileInpaint(t *testing.T) {
	b := cpu.New()
	dir := golden.Path(t, "inpaint/models/sdxl-small-inpaint")
	folder, err := LoadModel(b, dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := folder.UNet.InChannels(); c != 9 {
		t.Fatalf("folder UNet has %d input channels, want 9", c)
	}
	path := writeSingleFile(t, b, folder)
	for _, cfg := range []string{dir, golden.Path(t, "small/models/sdxl-small-base")} {
		single, err := LoadModel(b, path, LoadOptions{ConfigDir: cfg})
		if err != nil {
			t.Fatal(err)
		}
		if c := single.UNet.InChannels(); c != 9 || single.IsRefiner() {
			t.Fatalf("config %s: single file loaded with %d UNet input channels (refiner %v)", cfg, c, single.IsRefiner())
		}
		checkSameParams(t, b, folder, single)
	}
}
