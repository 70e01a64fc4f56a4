package sdxl

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/sdxl/singlefile"
	"github.com/sdxl-go/sdxl/tensor"
)

// writeSingleFile writes a folder model as an original-layout single file,
// the way diffusers' convert_diffusers_to_original_sdxl.py lays it out: the
// UNet under model.diffusion_model., the VAE with 1x1-conv attention, CLIP
// ViT-L (base) as conditioner.embedders.0.transformer.text_model.*, OpenCLIP
// (embedder 1 in the base, 0 in the refiner) with fused q/k/v and a
// transposed projection; extra tensors are appended as they are.
func writeSingleFile(t *testing.T, b tensor.Backend, m *Model, extra ...safetensors.Tensor) string {
	t.Helper()
	down, up := m.UNet.BlockTypes()
	layout := singlefile.LayoutFromBlockTypes(down, up, m.UNet.LayersPerBlock()[0])
	var out []safetensors.Tensor
	add := func(name string, shape []int, data []float32) {
		out = append(out, safetensors.Tensor{Name: name, Shape: shape, Data: data})
	}
	for _, p := range nn.Params(m.UNet, "") {
		add(singlefile.UNetPrefix+layout.UNetName(p.Name), p.Tensor().Shape(), b.ToFloat32(p.Tensor()))
	}
	levels := len(m.VAE.Config().BlockOutChannels)
	for _, p := range nn.Params(m.VAE, "") {
		name, conv := singlefile.VAEName(p.Name, levels)
		shape := append([]int(nil), p.Tensor().Shape()...)
		if conv {
			shape = append(shape, 1, 1)
		}
		add(singlefile.VAEPrefix+name, shape, b.ToFloat32(p.Tensor()))
	}
	kind := singlefile.Base
	if m.IsRefiner() {
		kind = singlefile.Refiner
	} else {
		for _, p := range nn.Params(m.Text.TextEncoder, "") {
			name := "text_model." + strings.TrimPrefix(p.Name, "text_model.")
			add(singlefile.CLIPPrefix+name, p.Tensor().Shape(), b.ToFloat32(p.Tensor()))
		}
	}
	prefix := singlefile.OpenCLIPPrefix(kind)
	fused := map[string][][]float32{}
	fusedShape := map[string][]int{}
	for _, p := range nn.Params(m.Text.TextEncoder2, "") {
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
	out = append(out, extra...)
	path := filepath.Join(t.TempDir(), "model.safetensors")
	if err := safetensors.WriteFile(path, out, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkSameParams fails unless every parameter of the components of a and
// b is identical.
func checkSameParams(t *testing.T, b tensor.Backend, a, c *Model) {
	t.Helper()
	type pair struct {
		name string
		x, y any
	}
	pairs := []pair{{"text_encoder_2", a.Text.TextEncoder2, c.Text.TextEncoder2}, {"unet", a.UNet, c.UNet}, {"vae", a.VAE, c.VAE}}
	if a.Text.TextEncoder != nil || c.Text.TextEncoder != nil {
		pairs = append(pairs, pair{"text_encoder", a.Text.TextEncoder, c.Text.TextEncoder})
	}
	for _, p := range pairs {
		pa, pb := nn.Params(p.x, ""), nn.Params(p.y, "")
		if len(pa) != len(pb) {
			t.Fatalf("%s: %d vs %d parameters", p.name, len(pa), len(pb))
		}
		for i := range pa {
			if pa[i].Name != pb[i].Name || !pa[i].Tensor().Shape().Equal(pb[i].Tensor().Shape()) {
				t.Fatalf("%s: parameter %d is %s %v vs %s %v", p.name, i, pa[i].Name, pa[i].Tensor().Shape(), pb[i].Name, pb[i].Tensor().Shape())
			}
			if d := golden.MaxAbs(b.ToFloat32(pa[i].Tensor()), b.ToFloat32(pb[i].Tensor())); d != 0 {
				t.Errorf("%s: %s differs by %g", p.name, pa[i].Name, d)
			}
		}
		t.Logf("%s: %d parameters identical", p.name, len(pa))
	}
}
