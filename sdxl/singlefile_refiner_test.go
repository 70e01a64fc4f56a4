package sdxl

import (
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/sdxl/singlefile"
)

// TestSingleFileRefiner writes the small refiner folder as an original-layout
// single file (four-level UNet under model.diffusion_model., VAE with 1x1-conv
// attention, OpenCLIP as conditioner.embedders.0 with fused q/k/v and a
// transposed projection, plus buffers a real file may carry) and loads it
// back: the loader must detect a refiner and every parameter must equal the
// folder model's.
func TestSingleFileRefiner(t *testing.T) {
	b := cpu.New()
	dir := golden.Path(t, "small/models/sdxl-small-refiner")
	folder, err := LoadModel(b, dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path := writeSingleFile(t, b, folder,
		safetensors.Tensor{Name: singlefile.OpenCLIPPrefix(singlefile.Refiner) + "logit_scale", Shape: []int{}, Data: []float32{4.6}},
		safetensors.Tensor{Name: "denoiser.sigmas", Shape: []int{3}, Data: []float32{1, 2, 3}})
	single, err := LoadModel(b, path, LoadOptions{ConfigDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !single.IsRefiner() || !single.RequiresAestheticsScore {
		t.Fatalf("single file not detected as a refiner (refiner %v, aesthetics %v)", single.IsRefiner(), single.RequiresAestheticsScore)
	}
	checkSameParams(t, b, folder, single)
}
