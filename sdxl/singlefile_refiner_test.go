package sdxl

import (
	"path/filepath"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/nn"
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
	down, up := folder.UNet.BlockTypes()
	layout := singlefile.LayoutFromBlockTypes(down, up, folder.UNet.LayersPerBlock()[0])
	var out []safetensors.Tensor
	add := func(name string, shape []int, data []float32) {
		out = append(out, safetensors.Tensor{Name: name, Shape: shape, Data: data})
	}
	for _, p := range nn.Params(folder.UNet, "") {
		add(singlefile.UNetPrefix+layout.UNetName(p.Name), p.Tensor().Shape(), b.ToFloat32(p.Tensor()))
	}
	levels := len(folder.VAE.Config().BlockOutChannels)
	for _, p := range nn.Params(folder.VAE, "") {
		name, conv := singlefile.VAEName(p.Name, levels)
		shape := append([]int(nil), p.Tensor().Shape()...)
		if conv {
			shape = append(shape, 1, 1)
		}
		add(singlefile.VAEPrefix+name, shape, b.ToFloat32(p.Tensor()))
	}
	prefix := singlefile.OpenCLIPPrefix(singlefile.Refiner)
	fused := map[string][][]float32{}
	fusedShape := map[string][]int{}
	for _, p := range nn.Params(folder.Text.TextEncoder2, "") {
		name, part, tr := singlefile.OpenCLIPName(p.Name)
		data, shape := b.ToFloat32(p.Tensor()), p.Tensor().Shape()
		switch {
		case part >= 0:
			if fused[name] == nil {
				fused[name] = make([][]float32, 3)
			}
			fused[name][part] = data
			fusedShape[name] = append([]int{3 * shape[0]}, shape[1:]...)
		case tr:
			rows, cols := shape[0], shape[1]
			tt := make([]float32, len(data))
			for i := 0; i < rows; i++ {
				for j := 0; j < cols; j++ {
					tt[j*rows+i] = data[i*cols+j]
				}
			}
			add(prefix+name, []int{cols, rows}, tt)
		default:
			add(prefix+name, shape, data)
		}
	}
	for name, parts := range fused {
		add(prefix+name, fusedShape[name], append(append(append([]float32(nil), parts[0]...), parts[1]...), parts[2]...))
	}
	add(prefix+"logit_scale", []int{}, []float32{4.6})
	add("denoiser.sigmas", []int{3}, []float32{1, 2, 3})
	path := filepath.Join(t.TempDir(), "refiner.safetensors")
	if err := safetensors.WriteFile(path, out, nil); err != nil {
		t.Fatal(err)
	}

	single, err := LoadModel(b, path, LoadOptions{ConfigDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !single.IsRefiner() || !single.RequiresAestheticsScore {
		t.Fatalf("single file not detected as a refiner (refiner %v, aesthetics %v)", single.IsRefiner(), single.RequiresAestheticsScore)
	}
	for _, c := range []struct {
		name string
		a, b any
	}{{"text_encoder_2", folder.Text.TextEncoder2, single.Text.TextEncoder2}, {"unet", folder.UNet, single.UNet}, {"vae", folder.VAE, single.VAE}} {
		pa, pb := nn.Params(c.a, ""), nn.Params(c.b, "")
		if len(pa) != len(pb) {
			t.Fatalf("%s: %d vs %d parameters", c.name, len(pa), len(pb))
		}
		for i := range pa {
			if d := golden.MaxAbs(b.ToFloat32(pa[i].Tensor()), b.ToFloat32(pb[i].Tensor())); d != 0 {
				t.Errorf("%s: %s differs by %g", c.name, pa[i].Name, d)
			}
		}
		t.Logf("%s: %d parameters identical", c.name, len(pa))
	}
}
