package sdxl

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/sdxl/controlnet"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/tensor"
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
	maxd := golden.MaxLevelDiff(imgs[0], u8)
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

// TestMultiControlNetSumRule: the same ControlNet twice at scales a and b
// gives the final latents of one at a + b (float32 rounding apart), and
// two that split the steps between them (windows (0, 0.5) and (0.5, 1))
// give exactly those of one acting on every step.
func TestMultiControlNetSumRule(t *testing.T) {
	e, cn := controlNetEngine(t)
	sc := golden.ControlNetScenarios(t)["cn_lines_euler"]
	run := func(units ...ControlNet) *Result {
		t.Helper()
		req := controlNetRequest(t, sc, cn)
		req.OutputLatents, req.KeepStepLatents = true, false
		img := req.ControlNets[0].Image
		req.ControlNets = nil
		for _, u := range units {
			u.Model, u.Image = cn, img
			req.ControlNets = append(req.ControlNets, u)
		}
		req.Dump = []string{"controlnet.**.controlnet_mid_block"}
		res, err := e.Generate(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	one := run(ControlNet{Scale: 0.8})
	two := run(ControlNet{Scale: 0.3}, ControlNet{Scale: 0.5})
	golden.Check(t, "two ControlNets at 0.3 + 0.5 vs one at 0.8", two.Latents, one.Latents, 1e-5)
	split := run(ControlNet{Scale: 0.8, End: 0.5}, ControlNet{Scale: 0.8, Start: 0.5})
	if d := golden.MaxAbs(split.Latents, one.Latents); d != 0 {
		t.Errorf("windows (0, 0.5) + (0.5, 1) differ from one ControlNet on every step by %g", d)
	}
	var names []string
	for _, a := range split.Dumps {
		if strings.HasPrefix(a.Name, "base.step0.") {
			names = append(names, a.Name)
		}
	}
	if want := []string{"base.step0.controlnet.nets.0.controlnet_mid_block", "base.step0.controlnet.nets.1.controlnet_mid_block"}; !slices.Equal(names, want) {
		t.Errorf("dumps %v, want %v", names, want)
	}
}

// TestGuessModeHalf: in guess mode with guidance the ControlNet sees only
// the text-conditioned half (latents, embeddings, time ids) and the
// unconditional half of every residual is zero.
func TestGuessModeHalf(t *testing.T) {
	e, cn := controlNetEngine(t)
	b := e.Backend()
	f := golden.Open(t, "controlnet/e2e_cn_lines_euler.safetensors")
	in := goldenControlInput(b, f)
	img, _ := f.Get("control_image")
	cond := b.FromFloat32(tensor.F32, tensor.Shape{1, 3, 64, 64}, img)
	cr := &controlRun{nets: []ControlNet{{Model: cn, Scale: 0.7, End: 1}}, images: []*tensor.Tensor{cond}, guess: true, cfg: true, steps: 8}
	got, err := cr.residuals(context.Background(), b, nil, controlStep{i: 3, t: in.Timesteps[0], x: in.Sample, context: in.EncoderHiddenStates, pooled: in.TextEmbeds, timeIDs: in.TimeIDs})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Free()
	half := func(x *tensor.Tensor) *tensor.Tensor { return b.Slice(x, 0, 1, 2) }
	want, err := cn.Forward(context.Background(), b, controlnet.Input{Sample: half(in.Sample), Timesteps: in.Timesteps, EncoderHiddenStates: half(in.EncoderHiddenStates),
		TextEmbeds: half(in.TextEmbeds), TimeIDs: in.TimeIDs[len(in.TimeIDs)/2:], Cond: cond, Scale: 0.7, GuessMode: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Free()
	for k, r := range append(got.Down, got.Mid) {
		w := append(want.Down, want.Mid)[k]
		g := b.ToFloat32(r)
		n := len(g) / 2
		if !slices.Equal(g[n:], b.ToFloat32(w)) || slices.ContainsFunc(g[:n], func(v float32) bool { return v != 0 }) {
			t.Fatalf("residual %d: not [0; guess-mode residual of the conditional half]", k)
		}
	}
}

// goldenControlInput is the recorded ControlNet input of a golden file.
func goldenControlInput(b tensor.Backend, f *golden.File) controlnet.Input {
	get := func(name string) *tensor.Tensor {
		d, s := f.Get(name)
		return b.FromFloat32(tensor.F32, s, d)
	}
	ts, _ := f.Get("cn_in.timestep")
	ids, _ := f.Get("cn_in.time_ids")
	return controlnet.Input{Sample: get("cn_in.sample"), Timesteps: ts, EncoderHiddenStates: get("cn_in.encoder_hidden_states"),
		TextEmbeds: get("cn_in.text_embeds"), TimeIDs: ids}
}

// TestControlNetCheck: ControlNet mistakes are FieldErrors found before any
// work; the size comes from the control image when none is given; control
// images of another size are resized with a warning.
func TestControlNetCheck(t *testing.T) {
	e, cn := controlNetEngine(t)
	img, err := imageio.Load(golden.Path(t, "controlnet/control_lines.png"))
	if err != nil {
		t.Fatal(err)
	}
	unit := func(edit func(*ControlNet)) []ControlNet {
		u := ControlNet{Model: cn, Image: img}
		if edit != nil {
			edit(&u)
		}
		return []ControlNet{u}
	}
	full, err := controlnet.New(mustControlNetConfig(t, config.SDXLBaseUNet()))
	if err != nil {
		t.Fatal(err)
	}
	pixels := &imageio.RGB{W: 64, H: 64, Pix: make([]uint8, 64*64*3)}
	for _, c := range []struct {
		name  string
		req   Request
		field string
		want  string
	}{
		{"scale", Request{ControlNets: unit(func(u *ControlNet) { u.Scale = 11 })}, "ControlNets", "scale 11: must be in [0, 10]"},
		{"negative scale", Request{ControlNets: unit(func(u *ControlNet) { u.Scale = -1 })}, "ControlNets", "scale"},
		{"window", Request{ControlNets: unit(func(u *ControlNet) { u.Start, u.End = 0.6, 0.5 })}, "ControlNets", "start 0.6 and end 0.5"},
		{"end", Request{ControlNets: unit(func(u *ControlNet) { u.End = 1.5 })}, "ControlNets", "end 1.5"},
		{"no model", Request{ControlNets: unit(func(u *ControlNet) { u.Model = nil })}, "ControlNets", "ControlNet 1: no model"},
		{"no image", Request{ControlNets: unit(func(u *ControlNet) { u.Image = nil })}, "ControlNets", "no control image"},
		{"tiny image", Request{ControlNets: unit(func(u *ControlNet) { u.Image = &imageio.RGB{W: 4, H: 4, Pix: make([]uint8, 48)} })}, "ControlNets", "at least 8x8"},
		{"other model", Request{ControlNets: unit(func(u *ControlNet) { u.Model = full })}, "ControlNets", "cross_attention_dim is 2048, the UNet's 48"},
		{"rescale", Request{GuidanceRescale: 0.5, ControlNets: unit(nil)}, "GuidanceRescale", "ControlNet pipelines"},
		{"denoising end", Request{InitImage: pixels, DenoisingEnd: 0.5, ControlNets: unit(nil)}, "DenoisingEnd", "img2img"},
		{"guess alone", Request{GuessMode: true}, "GuessMode", "has none"},
		{"inpainting", Request{InitImage: pixels, MaskImage: pixels, ControlNets: unit(nil)}, "ControlNets", "inpainting with ControlNets"},
		{"sizes", Request{ControlNets: append(unit(nil), ControlNet{Model: cn, Image: pixels2(72, 64)})}, "Width", "ControlNet 2's control image is 72x64"},
	} {
		_, err := e.Check(c.req)
		if !isField(err, c.field) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming %s with %q", c.name, err, c.field, c.want)
		}
	}
	ref := smallEngine(t, true)
	if _, err := ref.Check(Request{ControlNets: unit(nil)}); !isField(err, "ControlNets") {
		t.Errorf("with a refiner: %v", err)
	}

	// Size from the control image (rounded down to multiples of 8), which is
	// then resized to it; an explicit size resizes it too.
	req := Request{Steps: 2, ControlNets: []ControlNet{{Model: cn, Image: pixels2(70, 50)}}}
	pl, err := e.p.plan(req)
	if err != nil {
		t.Fatal(err)
	}
	if pl.req.Width != 64 || pl.req.Height != 48 || len(pl.warnings) != 1 || !strings.Contains(pl.warnings[0].Message, "70x50; resized to 64x48") {
		t.Errorf("size %dx%d, warnings %v", pl.req.Width, pl.req.Height, pl.warnings)
	}
	req.Width = 80
	if pl, err = e.p.plan(req); err != nil || pl.req.Width != 80 || pl.req.Height != 48 {
		t.Errorf("width 80: %dx%d, %v", pl.req.Width, pl.req.Height, err)
	}
	// img2img: strength 0.8 by default (10 steps run 8); a window left
	// empty by the step count is a warning.
	req = Request{Steps: 10, InitImage: pixels, ControlNets: unit(func(u *ControlNet) { u.Start, u.End = 0.5, 0.55 })}
	if pl, err = e.p.plan(req); err != nil || len(pl.stages[0].timesteps) != 8 {
		t.Fatalf("img2img: %v", err)
	}
	if len(pl.warnings) != 1 || !strings.Contains(pl.warnings[0].Message, "leave it no step of 8") {
		t.Errorf("warnings %v", pl.warnings)
	}
}

func pixels2(w, h int) *imageio.RGB {
	px := &imageio.RGB{W: w, H: h, Pix: make([]uint8, w*h*3)}
	for i := range px.Pix {
		px.Pix[i] = uint8(i * 13 % 256)
	}
	return px
}

func mustControlNetConfig(t *testing.T, u *config.UNetConfig) *config.ControlNetConfig {
	t.Helper()
	c, err := config.ControlNetFromUNet(u, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
