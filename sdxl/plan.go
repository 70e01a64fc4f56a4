package sdxl

import (
	"fmt"
	"slices"

	"github.com/sdxl-go/sdxl/sched"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/sdxl/lora"
	"github.com/sdxl-go/sdxl/sdxl/vae"
)

// plan is a validated request: defaults applied, sizes resolved, the
// stages chosen with their schedulers and timesteps, and what the run
// will warn about. Check and Generate share it, so every request is
// validated in one place before any work.
type plan struct {
	req       Request
	stages    []*stage
	warnings  []Warning
	watermark bool
	// loras are the LoRAs each model of the run gets (nil: none);
	// loraBytes the merged weights they add (memory estimate).
	loras     map[*Model][]lora.Use
	loraBytes int64
}

// stage is one diffusers pipeline call inside a Generate.
type stage struct {
	name  Stage
	model *Model
	// img2img: start from image (pixels or latents) instead of noise.
	img2img        bool
	image          []float32
	imageShape     []int
	imageIsLatents bool
	denoisingStart float64
	denoisingEnd   float64
	latentOutput   bool
	// embeds replaces prompt encoding when the request gives them.
	embeds *PromptEmbeds
	// sched is ready to run timesteps (SetTimesteps and the img2img or
	// denoising_end cut done).
	sched     sched.Scheduler
	timesteps []float64
	// noiseT is the timestep img2img noises the image to: the first after
	// the strength cut, before any denoising_end cut.
	noiseT float64
	// inp is the inpainting state (nil unless the request has a mask).
	inp *inpaint
	// tiling is the VAE tiling of the stage's encode and of the decode
	// after it (nil: untiled).
	tiling *vae.Tiling
}

// first is the model that runs first: the base, or the refiner alone.
func (p *Pipeline) first() *Model {
	if p.Base != nil {
		return p.Base
	}
	return p.Refiner
}

// plan validates req and prepares its run.
func (p *Pipeline) plan(req Request) (*plan, error) {
	roles := Roles{Base: p.Base != nil, Refiner: p.Refiner != nil, Image: req.hasImage()}
	if err := checkRequest(&req, roles); err != nil {
		return nil, err
	}
	pl := &plan{req: req}
	if err := p.planLoRATags(pl); err != nil {
		return nil, err
	}
	if pl.req.inpainting() {
		if err := p.resolveInpaintImage(pl); err != nil {
			return nil, err
		}
	}
	if err := p.resolveImage(pl); err != nil {
		return nil, err
	}
	if err := p.planControlNets(pl); err != nil {
		return nil, err
	}
	if err := p.resolveSize(&pl.req); err != nil {
		return nil, err
	}
	r := &pl.req
	if r.Image != nil {
		if err := p.checkImage(r); err != nil {
			return nil, err
		}
	}
	pl.stages = p.stagesFor(r)
	if err := checkDumpPatterns(r, pl.stages[0].model); err != nil {
		return nil, err
	}
	for _, st := range pl.stages {
		if err := p.prepareStage(r, st); err != nil {
			return nil, err
		}
	}
	inp, err := p.planInpaint(pl, pl.stages[0].model)
	if err != nil {
		return nil, err
	}
	pl.stages[0].inp = inp
	if err := p.checkInitNoise(r); err != nil {
		return nil, err
	}
	if err := p.planLoRAs(pl); err != nil {
		return nil, err
	}
	pl.watermark = r.Watermark && !r.OutputLatents
	pl.warnings = append(pl.warnings, p.warnings(pl)...)
	return pl, nil
}

// resolveImage turns InitImage into the Image tensor as diffusers' image
// processor does: resized to multiples of 8 when needed (with a warning),
// then scaled to [-1, 1].
func (p *Pipeline) resolveImage(pl *plan) error {
	r := &pl.req
	if r.InitImage == nil {
		return nil
	}
	m := r.InitImage
	pre, err := imageio.Preprocess(m)
	if err != nil {
		return fieldErr("InitImage", nil, "%v", err)
	}
	if pre.W != m.W || pre.H != m.H {
		pl.warnings = append(pl.warnings, Warning{Field: "InitImage", Message: fmt.Sprintf(
			"the input image is %dx%d; resized to %dx%d (multiples of 8) as diffusers does", m.W, m.H, pre.W, pre.H)})
	}
	r.Image, r.ImageShape = pre.Normalized()
	r.InitImage = nil
	return nil
}

// resolveSize fills r.Width and r.Height as Generate uses them: from an
// img2img input's shape (a different explicit size is an error), else each
// missing one from the UNet's sample_size times the VAE scale factor
// (diffusers' `height or default_sample_size * vae_scale_factor`).
func (p *Pipeline) resolveSize(r *Request) error {
	m := p.first()
	if r.Image != nil {
		if len(r.ImageShape) != 4 || r.ImageShape[0] != 1 {
			return fieldErr("Image", nil, "shape %v: want [1, C, H, W]", r.ImageShape)
		}
		f := 1
		if r.ImageIsLatents {
			f = m.VAE.ScaleFactor()
		}
		w, h := r.ImageShape[3]*f, r.ImageShape[2]*f
		if (r.Width != 0 && r.Width != w) || (r.Height != 0 && r.Height != h) {
			return fieldErr("Width", nil, "%dx%d differs from the input image's size %dx%d (img2img keeps the image's size)", r.Width, r.Height, w, h)
		}
		r.Width, r.Height = w, h
		return nil
	}
	if r.Width != 0 && r.Height != 0 {
		return nil
	}
	ss := m.UNet.Config().SampleSize
	if ss == nil {
		// diffusers fails here too (None * vae_scale_factor).
		return fieldErr("Width", nil, "%s: the UNet config has no sample_size, so there is no default image size: give the width and height", m.Path)
	}
	f := m.VAE.ScaleFactor()
	if r.Width == 0 {
		r.Width = ss.W * f
	}
	if r.Height == 0 {
		r.Height = ss.H * f
	}
	return nil
}

// checkImage validates an img2img input against the model that encodes it.
func (p *Pipeline) checkImage(r *Request) error {
	m := p.first()
	s := r.ImageShape
	n := 1
	for _, d := range s {
		if d <= 0 {
			return fieldErr("Image", nil, "shape %v: every dimension must be positive", s)
		}
		n *= d
	}
	if len(r.Image) != n {
		return fieldErr("Image", nil, "the image has %d values, its shape %v needs %d", len(r.Image), s, n)
	}
	if r.ImageIsLatents {
		if c := m.UNet.InChannels(); s[1] != c {
			return fieldErr("Image", nil, "latents shape %v: the UNet takes %d latent channels", s, c)
		}
		return nil
	}
	if c := m.VAE.Config().InChannels; s[1] != c {
		return fieldErr("Image", nil, "shape %v: the VAE encodes %d-channel images (give latents with ImageIsLatents)", s, c)
	}
	return nil
}

// stagesFor chooses which model runs which part (see Request).
func (p *Pipeline) stagesFor(r *Request) []*stage {
	refine := func() *stage {
		return &stage{name: StageRefiner, model: p.Refiner, img2img: true, imageIsLatents: true,
			denoisingStart: r.HighNoiseFrac, latentOutput: r.OutputLatents, embeds: r.RefinerEmbeds}
	}
	img := func(name Stage, m *Model, end float64, latentOut bool) *stage {
		return &stage{name: name, model: m, img2img: true, image: r.Image, imageShape: r.ImageShape,
			imageIsLatents: r.ImageIsLatents, denoisingEnd: end, latentOutput: latentOut, embeds: r.Embeds}
	}
	switch {
	case r.inpainting() && p.Base != nil:
		return []*stage{img(StageBase, p.Base, r.DenoisingEnd, r.OutputLatents)}
	case r.Image == nil && p.Refiner == nil:
		return []*stage{{name: StageBase, model: p.Base, denoisingEnd: r.DenoisingEnd, latentOutput: r.OutputLatents, embeds: r.Embeds}}
	case r.Image == nil:
		return []*stage{{name: StageBase, model: p.Base, denoisingEnd: r.HighNoiseFrac, latentOutput: true, embeds: r.Embeds}, refine()}
	case p.Base == nil:
		return []*stage{img(StageRefiner, p.Refiner, r.DenoisingEnd, r.OutputLatents)}
	case p.Refiner == nil:
		return []*stage{img(StageBase, p.Base, r.DenoisingEnd, r.OutputLatents)}
	}
	return []*stage{img(StageBase, p.Base, r.HighNoiseFrac, true), refine()}
}

// prepareStage checks that the stage's model can encode the prompts and
// sets up its scheduler and timesteps.
func (p *Pipeline) prepareStage(r *Request, st *stage) error {
	if st.embeds == nil && st.model.textReleased {
		return fmt.Errorf("%s: its text encoders were released after an earlier run (ReleaseTextEncoders): give prompt embeddings or open the model again", st.model.Path)
	}
	if st.embeds == nil {
		c, err := r.Weighting.Conditioner()
		if err != nil {
			return err
		}
		if err := c.Check(st.model, r.prompts(r.Guidance > 1)); err != nil {
			return err
		}
	}
	if st.tiling = r.tiling(); st.tiling != nil {
		if _, _, err := st.model.VAE.TileSizes(*st.tiling); err != nil {
			return fieldErr("VAETileSize", r.VAETileSize, "%v", err)
		}
	}
	s, err := newScheduler(st.model, r)
	if err != nil {
		return err
	}
	if err := s.SetTimesteps(r.Steps); err != nil {
		return fieldErr("Steps", r.Steps, "%v", err)
	}
	ts := s.Timesteps()
	if !st.img2img {
		ts = sched.DenoisingEnd(s, ts, st.denoisingEnd)
		s.SetBeginIndex(0)
	} else {
		if ts, err = sched.Img2ImgTimesteps(s, r.Steps, r.Strength, st.denoisingStart); err != nil {
			return err
		}
		if len(ts) == 0 && validFrac(st.denoisingStart) {
			return fieldErr("HighNoiseFrac", r.HighNoiseFrac, "with %d steps leaves the refiner no step (lower it or raise the steps)", r.Steps)
		}
		if len(ts) == 0 {
			return fieldErr("Strength", r.Strength, "with %d steps leaves no denoising step (raise the strength or the steps)", r.Steps)
		}
		st.noiseT = ts[0]
		ts = sched.DenoisingEnd(s, ts, st.denoisingEnd)
	}
	st.sched, st.timesteps = s, ts
	return nil
}

func newScheduler(m *Model, r *Request) (sched.Scheduler, error) {
	var opts []sched.Option
	if r.Karras {
		opts = append(opts, sched.Karras())
	}
	name := r.Scheduler
	if name == "" {
		if len(opts) == 0 {
			s, err := sched.FromConfig(m.Scheduler)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", m.Path, err)
			}
			return s, nil
		}
		name, _ = m.Scheduler["_class_name"].(string)
	}
	s, err := sched.New(name, m.Scheduler, opts...)
	if err != nil && r.Karras {
		return nil, fieldErr("Karras", true, "%v", err)
	}
	if err != nil {
		return nil, fieldErr("Scheduler", name, "%v", err)
	}
	return s, nil
}

// checkInitNoise checks given initial noise against the latents' shape.
func (p *Pipeline) checkInitNoise(r *Request) error {
	if r.InitNoise == nil {
		return nil
	}
	m := p.first()
	f := m.VAE.ScaleFactor()
	want := []int{r.NumImages, m.UNet.InChannels(), r.Height / f, r.Width / f}
	if r.InitNoiseShape != nil && !slices.Equal(r.InitNoiseShape, want) {
		return fieldErr("InitNoise", nil, "has shape %v; %d image(s) of %dx%d need %v", r.InitNoiseShape, r.NumImages, r.Width, r.Height, want)
	}
	if n := want[0] * want[1] * want[2] * want[3]; len(r.InitNoise) != n {
		return fieldErr("InitNoise", nil, "has %d values; %d image(s) of %dx%d need latents %v (%d values)", len(r.InitNoise), r.NumImages, r.Width, r.Height, want, n)
	}
	return nil
}
