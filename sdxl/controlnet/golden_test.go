package controlnet

import (
	"context"
	"fmt"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/tensor"
)

const smallDir = "controlnet/models/sdxl-small-controlnet"

var goldenScenarios = []string{"cn_lines_euler", "cn_lines_s0p5_window_dpmpp", "cn_img2img_lines"}

// goldenInput rebuilds the recorded ControlNet call of a golden file:
// cn_in.* and controlnet_cond = cat([control_image] * 2).
func goldenInput(b tensor.Backend, f *golden.File) Input {
	get := func(name string) *tensor.Tensor {
		d, s := f.Get(name)
		return b.FromFloat32(tensor.F32, s, d)
	}
	img, s := f.Get("control_image")
	two := append(append([]float32(nil), img...), img...)
	ts, _ := f.Get("cn_in.timestep")
	ids, _ := f.Get("cn_in.time_ids")
	scale, _ := f.Get("cn_in.conditioning_scale")
	return Input{
		Sample:              get("cn_in.sample"),
		Timesteps:           ts,
		EncoderHiddenStates: get("cn_in.encoder_hidden_states"),
		TextEmbeds:          get("cn_in.text_embeds"),
		TimeIDs:             ids,
		Cond:                b.FromFloat32(tensor.F32, tensor.Shape{2, s[1], s[2], s[3]}, two),
		Scale:               float64(scale[0]),
	}
}

// TestGoldenResiduals feeds the recorded inputs of each scenario's first
// active step and checks all ten residuals (already scaled) within 1e-5.
func TestGoldenResiduals(t *testing.T) {
	b := cpu.New()
	c, err := LoadDir(b, golden.Path(t, smallDir), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range goldenScenarios {
		t.Run(name, func(t *testing.T) {
			f := golden.Open(t, "controlnet/e2e_"+name+".safetensors")
			out, err := c.Forward(context.Background(), b, goldenInput(b, f), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Free()
			if len(out.Down) != 9 {
				t.Fatalf("%d down residuals, want 9", len(out.Down))
			}
			for k, d := range out.Down {
				name := fmt.Sprintf("cn_out.down_block_res_samples.%d", k)
				want, shape := f.Get(name)
				if !d.Shape().Equal(shape) {
					t.Fatalf("%s: shape %v, want %v", name, d.Shape(), shape)
				}
				golden.Check(t, name, b.ToFloat32(d), want, 1e-5)
			}
			want, _ := f.Get("cn_out.mid_block_res_sample")
			golden.Check(t, "cn_out.mid_block_res_sample", b.ToFloat32(out.Mid), want, 1e-5)
		})
	}
}
