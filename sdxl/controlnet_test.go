package sdxl

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sdxl/controlnet"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
)

const smallControlNet = "controlnet/models/sdxl-small-controlnet"

// controlNetEngine is an engine over the small base with the small golden
// ControlNet loaded through it.
func controlNetEngine(t *testing.T) (*Engine, *controlnet.ControlNet) {
	t.Helper()
	b := cpu.New()
	base, _ := loadSmall(t, b, false)
	e, err := New(Options{Backend: b}, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	cn, err := e.LoadControlNet(golden.Path(t, smallControlNet))
	if err != nil {
		t.Fatal(err)
	}
	return e, cn
}

// controlNetRequest is the request of a golden ControlNet scenario.
func controlNetRequest(t *testing.T, sc golden.ControlNetScenario, cn *controlnet.ControlNet) Request {
	t.Helper()
	img, err := imageio.Load(golden.Path(t, "controlnet/"+sc.ControlPNG))
	if err != nil {
		t.Fatal(err)
	}
	req := Request{
		Prompt: sc.Prompt, Width: sc.Width, Height: sc.Height, Steps: sc.Steps, Guidance: sc.Guidance,
		Scheduler: sc.Scheduler, Seed: sc.Seed, KeepStepLatents: true,
		ControlNets: []ControlNet{{Model: cn, Image: img, Scale: sc.Scale, Start: sc.Start, End: sc.End}},
	}
	if sc.Negative != "" { // the goldens' script passed "" as None
		neg := sc.Negative
		req.NegativePrompt = &neg
	}
	if sc.Kind == "img2img" {
		if req.InitImage, err = imageio.Load(golden.Path(t, "controlnet/"+sc.InitImagePNG)); err != nil {
			t.Fatal(err)
		}
		req.Strength = sc.Strength
		req.Width, req.Height = 0, 0
	}
	return req
}

// TestControlNetGoldens runs the three diffusers ControlNet scenarios
// (txt2img at scale 1, scale 0.5 in the window (0.2, 0.8) with DPM++ 2M,
// img2img) through the engine: every step's latents and the final ones
// within 1e-5, the picture within 1 level, and the residuals of the first
// active step (recorded before scaling) within 1e-5.
func TestControlNetGoldens(t *testing.T) {
	e, cn := controlNetEngine(t)
	for _, name := range []string{"cn_lines_euler", "cn_lines_s0p5_window_dpmpp", "cn_img2img_lines"} {
		sc, ok := golden.ControlNetScenarios(t)[name]
		if !ok {
			t.Fatalf("scenario %s missing from index.json", name)
		}
		t.Run(name, func(t *testing.T) {
			req := controlNetRequest(t, sc, cn)
			req.Dump = []string{"controlnet.controlnet_down_blocks.*", "controlnet.controlnet_mid_block"}
			res, err := e.Generate(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			f := golden.Open(t, "controlnet/"+sc.File)
			steps, sshape := f.Get("step_latents")
			if len(res.StepLatents) != sshape[0] {
				t.Fatalf("%d steps, golden has %d", len(res.StepLatents), sshape[0])
			}
			per := len(steps) / sshape[0]
			for i, got := range res.StepLatents {
				if err := golden.RelErr(got, steps[i*per:(i+1)*per]); err > 1e-5 {
					t.Errorf("step %d latents: relative error %.3g", i, err)
				}
			}
			want, _ := f.Get("final_latents")
			golden.Check(t, "final_latents", res.Latents, want, 1e-5)
			checkImageLevels(t, res, f, 1)
			checkResiduals(t, res, f, sc)
		})
	}
}

// checkImageLevels compares the decoded picture with image_uint8.
func checkImageLevels(t *testing.T, res *Result, f *golden.File, limit float64) {
	t.Helper()
	imgs, err := imageio.FromNCHW(res.Images, res.ImageShape[:])
	if err != nil {
		t.Fatal(err)
	}
	u8, _ := f.Get("image_uint8")
	h, w := res.ImageShape[2], res.ImageShape[3]
	maxd := 0.0
	for y := range h {
		for x := range w {
			c := imgs[0].NRGBAAt(x, y)
			for k, v := range []uint8{c.R, c.G, c.B} {
				maxd = math.Max(maxd, math.Abs(float64(v)-float64(u8[(y*w+x)*3+k])))
			}
		}
	}
	if maxd > limit {
		t.Errorf("image differs from image_uint8 by up to %v levels (limit %v)", maxd, limit)
	}
	t.Logf("image max abs diff %v levels", maxd)
}

// checkResiduals compares the dumped zero-convolution outputs of the
// golden's recorded step, times that step's conditioning scale, with
// cn_out.*.
func checkResiduals(t *testing.T, res *Result, f *golden.File, sc golden.ControlNetScenario) {
	t.Helper()
	step := sc.Checks.CNStep
	scale := float32(sc.Checks.CondScale[step])
	dumps := map[string][]float32{}
	for _, a := range res.Dumps {
		dumps[a.Name] = a.Data
	}
	check := func(module, want string) {
		got, ok := dumps[fmt.Sprintf("base.step%d.controlnet.%s", step, module)]
		if !ok {
			t.Fatalf("no dump of controlnet.%s at step %d", module, step)
		}
		scaled := make([]float32, len(got))
		for i, v := range got {
			scaled[i] = v * scale
		}
		w, _ := f.Get(want)
		if e := golden.RelErr(scaled, w); e > 1e-5 {
			t.Errorf("%s: relative error %.3g", want, e)
		}
	}
	for k := range 9 {
		check(fmt.Sprintf("controlnet_down_blocks.%d", k), fmt.Sprintf("cn_out.down_block_res_samples.%d", k))
	}
	check("controlnet_mid_block", "cn_out.mid_block_res_sample")
	// The ControlNet runs at every step, even where its keep is 0.
	for i := range len(res.StepLatents) {
		if _, ok := dumps[fmt.Sprintf("base.step%d.controlnet.controlnet_mid_block", i)]; !ok {
			t.Errorf("the ControlNet did not run at step %d", i)
		}
	}
}

func TestControlKeep(t *testing.T) {
	for _, c := range []struct {
		steps      int
		start, end float64
		want       string
	}{
		{8, 0.2, 0.8, "00111100"}, // index.json: steps 2..5
		{9, 0.2, 0.8, "001111100"},
		{8, 0, 1, "11111111"},
		{6, 0, 1, "111111"},
		{4, 0.5, 0.6, "0000"},
	} {
		var got strings.Builder
		for i := range c.steps {
			fmt.Fprint(&got, controlKeep(i, c.steps, c.start, c.end))
		}
		if got.String() != c.want {
			t.Errorf("%d steps (%g, %g): keep %s, want %s", c.steps, c.start, c.end, got.String(), c.want)
		}
	}
}
