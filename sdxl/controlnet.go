package sdxl

import (
	"context"
	"fmt"
	"math"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/controlnet"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/tensor"
)

// ControlNet is one ControlNet of a Request: the model, its control image
// and the diffusers arguments at its index (controlnet_conditioning_scale,
// control_guidance_start, control_guidance_end). A request with
// ControlNets runs StableDiffusionXLControlNetPipeline (text to image) or
// StableDiffusionXLControlNetImg2ImgPipeline (with an input image) on the
// base model; several are diffusers' MultiControlNetModel: their residuals
// are summed.
type ControlNet struct {
	// Model is the loaded ControlNet (Engine.LoadControlNet, or
	// controlnet.Open on the engine's backend).
	Model *controlnet.ControlNet
	// Image is the control image as decoded (imageio.Load): resized to the
	// output size with Pillow's Lanczos filter when its size differs (a
	// warning says so), it enters the ControlNet in [0, 1], not [-1, 1].
	// Without Width and Height a text-to-image run takes its size (rounded
	// down to multiples of 8), as diffusers does.
	Image *imageio.RGB
	// Scale is controlnet_conditioning_scale, 0 to MaxControlScale; 0
	// means diffusers' 1.
	Scale float64
	// Start and End are control_guidance_start and control_guidance_end:
	// of S steps, the ControlNet acts on step i when i/S >= Start and
	// (i+1)/S <= End (it still runs on the others, its residuals times
	// 0, as in diffusers). End 0 means 1.
	Start, End float64
}

// MaxControlScale bounds ControlNet.Scale (diffusers sets no bound;
// ComfyUI's is 10): larger values only saturate the picture.
const MaxControlScale = 10

// controlDefaults applies the zero-value defaults of the ControlNets.
func (r *Request) controlDefaults() {
	for i := range r.ControlNets {
		c := &r.ControlNets[i]
		if c.Scale == 0 {
			c.Scale = 1
		}
		if c.End == 0 {
			c.End = 1
		}
	}
}

// checkControlValues checks the ControlNet fields that need no model or
// file (CheckRequest), defaults applied: diffusers' check_inputs, plus the
// options its ControlNet pipelines do not have.
func checkControlValues(r *Request, roles Roles) error {
	if len(r.ControlNets) == 0 {
		if r.GuessMode {
			return fieldErr("GuessMode", true, "applies to ControlNets; the request has none")
		}
		return nil
	}
	switch {
	case !roles.Base:
		return fieldErr("ControlNets", nil, "ControlNets steer a base model; none is loaded")
	case roles.Refiner:
		return fieldErr("ControlNets", nil, "diffusers' ControlNet pipelines run the base alone (there is no ControlNet refiner): load no refiner")
	case r.GuidanceRescale != 0:
		return fieldErr("GuidanceRescale", r.GuidanceRescale, "is not an option of diffusers' ControlNet pipelines")
	case roles.Image && r.DenoisingEnd != 0:
		return fieldErr("DenoisingEnd", r.DenoisingEnd, "is not an option of diffusers' ControlNet img2img pipeline")
	case r.inpainting():
		return fieldErr("ControlNets", nil, "inpainting with ControlNets (diffusers' StableDiffusionXLControlNetInpaintPipeline) is not supported: give no mask")
	}
	for i, c := range r.ControlNets {
		switch {
		case math.IsNaN(c.Scale) || c.Scale < 0 || c.Scale > MaxControlScale:
			return fieldErr("ControlNets", nil, "ControlNet %d: scale %g: must be in [0, %d]", i+1, c.Scale, MaxControlScale)
		case !(c.Start >= 0 && c.Start < c.End && c.End <= 1):
			return fieldErr("ControlNets", nil, "ControlNet %d: start %g and end %g: want 0 <= start < end <= 1", i+1, c.Start, c.End)
		}
	}
	return nil
}

// planControlNets checks the ControlNets against the base model and their
// images, before any work, and gives a text-to-image run without a size
// the control image's (diffusers' get_default_height_width: each missing
// side is the first control image's, rounded down to a multiple of 8).
// It runs before resolveSize.
func (p *Pipeline) planControlNets(pl *plan) error {
	r := &pl.req
	for i, c := range r.ControlNets {
		if err := c.check(p.Base); err != nil {
			return fieldErr("ControlNets", nil, "ControlNet %d: %v", i+1, err)
		}
	}
	if len(r.ControlNets) == 0 || r.hasImage() {
		return nil // the output size is the input image's
	}
	first := r.ControlNets[0].Image
	w, h := imageio.PreprocessSize(first.W, first.H)
	for i, c := range r.ControlNets[1:] {
		// Without a size each image would keep its own, and residuals of
		// different sizes cannot be summed (diffusers fails there).
		cw, ch := imageio.PreprocessSize(c.Image.W, c.Image.H)
		if (r.Width == 0 && cw != w) || (r.Height == 0 && ch != h) {
			return fieldErr("Width", nil, "ControlNet %d's control image is %dx%d, ControlNet 1's %dx%d: give the width and height to resize both to",
				i+2, c.Image.W, c.Image.H, first.W, first.H)
		}
	}
	if r.Width == 0 {
		r.Width = w
	}
	if r.Height == 0 {
		r.Height = h
	}
	return nil
}

// check validates one ControlNet against the base model.
func (c *ControlNet) check(m *Model) error {
	switch {
	case c.Model == nil:
		return fmt.Errorf("no model")
	case c.Image == nil:
		return fmt.Errorf("no control image")
	case c.Image.W < 8 || c.Image.H < 8:
		return fmt.Errorf("the control image is %dx%d: at least 8x8 pixels", c.Image.W, c.Image.H)
	}
	if want := c.Model.Config().ConditioningChannels; want != 3 {
		return fmt.Errorf("the model takes %d-channel control images; control images are RGB", want)
	}
	if err := c.Model.CheckUNet(m.UNet.Config()); err != nil {
		return fmt.Errorf("%v (base %s)", err, m.Path)
	}
	return nil
}

// controlWarnings says which control images are resized and which
// ControlNets never act.
func controlWarnings(pl *plan) []Warning {
	r := &pl.req
	var out []Warning
	steps := 0
	if len(pl.stages) > 0 {
		steps = controlSteps(pl.stages[0])
	}
	for i, c := range r.ControlNets {
		if c.Image.W != r.Width || c.Image.H != r.Height {
			out = append(out, Warning{Field: "ControlNets", Message: fmt.Sprintf(
				"ControlNet %d: the control image is %dx%d; resized to %dx%d as diffusers does", i+1, c.Image.W, c.Image.H, r.Width, r.Height)})
		}
		active := 0
		for s := range steps {
			active += int(controlKeep(s, steps, c.Start, c.End))
		}
		if active == 0 {
			out = append(out, Warning{Field: "ControlNets", Message: fmt.Sprintf(
				"ControlNet %d: start %g and end %g leave it no step of %d: it has no effect", i+1, c.Start, c.End, steps)})
		}
	}
	return out
}

// controlKeep is diffusers' controlnet_keep[i] for one ControlNet over a
// run of steps timesteps: 0 when the step lies outside [start, end].
func controlKeep(i, steps int, start, end float64) float64 {
	if float64(i)/float64(steps) < start || float64(i+1)/float64(steps) > end {
		return 0
	}
	return 1
}

// controlSteps is the number of timesteps controlnet_keep divides by: the
// whole schedule of a text-to-image run, even when denoising_end cuts it
// (diffusers builds the keep list before the cut), or the strength-cut
// schedule of img2img (its ControlNet pipeline has no denoising_end).
func controlSteps(st *stage) int {
	if st.img2img {
		return len(st.timesteps)
	}
	return len(st.sched.Timesteps())
}

// controlImage is the control image processor's preprocess for one image
// at width x height (VaeImageProcessor with do_normalize=False): resized
// with Lanczos unless already that size, then v/255 in float32, NCHW.
func controlImage(img *imageio.RGB, width, height int) ([]float32, error) {
	if img.W != width || img.H != height {
		r, err := imageio.ResizeLanczos(img, width, height)
		if err != nil {
			return nil, err
		}
		img = r
	}
	plane := width * height
	out := make([]float32, 3*plane)
	for i := range plane {
		for c := range 3 {
			out[c*plane+i] = float32(img.Pix[3*i+c]) / 255
		}
	}
	return out, nil
}

// controlRun is the ControlNet part of one denoising loop.
type controlRun struct {
	nets   []ControlNet
	images []*tensor.Tensor // per net: [rows, 3, H, W]
	guess  bool
	cfg    bool
	steps  int // see controlSteps
}

// newControlRun prepares the control images of r for a stage making n
// images of width x height. It returns nil without ControlNets.
func (p *Pipeline) newControlRun(r *Request, st *stage, width, height int, cfg bool, dt tensor.DType) (*controlRun, error) {
	if len(r.ControlNets) == 0 {
		return nil, nil
	}
	cr := &controlRun{nets: r.ControlNets, guess: r.GuessMode, cfg: cfg, steps: controlSteps(st)}
	// guess_mode = guess_mode or global_pool_conditions (of the first).
	cr.guess = cr.guess || cr.nets[0].Model.Config().GlobalPoolConditions
	rows := r.NumImages
	if cfg && !cr.guess {
		rows *= 2 // cat([image] * 2)
	}
	for i, c := range cr.nets {
		img, err := controlImage(c.Image, width, height)
		if err != nil {
			cr.Free()
			return nil, fmt.Errorf("ControlNet %d: %w", i+1, err)
		}
		cr.images = append(cr.images, p.Backend.FromFloat32(dt, tensor.Shape{rows, 3, height, width}, repeat(img, rows)))
	}
	return cr, nil
}

// Free releases the control images.
func (cr *controlRun) Free() {
	if cr != nil {
		tensor.FreeAll(cr.images...)
	}
}

// modules lists the ControlNet models (for onDevice).
func (cr *controlRun) modules() []any {
	var out []any
	if cr != nil {
		for _, c := range cr.nets {
			out = append(out, c.Model)
		}
	}
	return out
}

// controlStep is one step's ControlNet inputs: the UNet's.
type controlStep struct {
	i                  int
	t                  float32
	x, context, pooled *tensor.Tensor
	timeIDs            []float32
}

// residuals runs every ControlNet for step s and returns their summed
// residuals for the UNet's Input (nil without ControlNets). In guess mode
// with guidance they run on the text-conditioned half only and the
// unconditional half gets zeros, as in diffusers. rec (nil for none)
// records their modules under "controlnet." (one) or "controlnet.nets.k."
// (several), diffusers' module names in the pipeline.
func (cr *controlRun) residuals(ctx context.Context, b tensor.Backend, rec nn.Recorder, s controlStep) (*controlnet.Output, error) {
	if cr == nil {
		return nil, nil
	}
	sc := tensor.NewScope(b)
	defer sc.Release()
	half := cr.guess && cr.cfg
	if half {
		rows := s.x.Dim(0)
		// The step's inputs stay the caller's (the UNet reads them next).
		s.x, s.context, s.pooled = sc.Slice(sc.Borrow(s.x), 0, rows/2, rows), sc.Slice(sc.Borrow(s.context), 0, rows/2, rows), sc.Slice(sc.Borrow(s.pooled), 0, rows/2, rows)
		s.timeIDs = s.timeIDs[len(s.timeIDs)/2:] // add_time_ids.chunk(2)[1]
	}
	var sum *controlnet.Output
	for k, c := range cr.nets {
		prefix := "controlnet."
		if len(cr.nets) > 1 {
			prefix = fmt.Sprintf("controlnet.nets.%d.", k)
		}
		out, err := c.Model.Forward(ctx, sc, controlnet.Input{
			Sample: s.x, Timesteps: []float32{s.t}, EncoderHiddenStates: s.context, TextEmbeds: s.pooled, TimeIDs: s.timeIDs,
			Cond: cr.images[k], Scale: c.Scale * controlKeep(s.i, cr.steps, c.Start, c.End), GuessMode: cr.guess,
		}, nn.Prefixed(rec, prefix))
		if err != nil {
			return nil, err
		}
		if sum == nil {
			sum = out
		} else {
			sum.Merge(sc, out)
		}
	}
	if half {
		sum.PadZeros(sc)
	}
	for _, t := range append(sum.Down, sum.Mid) {
		sc.Keep(t)
	}
	return sum, nil
}

// LoadControlNet loads the ControlNet at path (a diffusers folder or a
// single .safetensors file, see controlnet.Open) for the engine's base
// model, on the backend the engine keeps its weights on, in its weight
// dtype. It fails before reading weights when the ControlNet does not fit
// the base (another model family, the refiner's layout).
func (e *Engine) LoadControlNet(path string) (*controlnet.ControlNet, error) {
	m := e.p.Base
	if m == nil {
		return nil, fmt.Errorf("ControlNet %s: the engine has no base model to steer", path)
	}
	b := e.p.Backend
	if e.p.Offload != nil {
		b = e.p.Offload
	}
	return controlnet.Open(b, path, m.UNet.Config(), controlnet.LoadOptions{DType: m.UNet.ConvIn.Weight.DType()})
}
