// Package sdxl runs Stable Diffusion XL pipelines the way Hugging Face
// diffusers does: StableDiffusionXLPipeline (text to image, optionally
// stopping at denoising_end), StableDiffusionXLImg2ImgPipeline (image to
// image and the refiner, optionally starting at denoising_start) and their
// combination, the base + refiner "ensemble of experts".
//
// A Pipeline holds a backend and up to two models (base and refiner, see
// LoadModel). Generate takes a Request, whose fields mirror the diffusers
// call arguments, and returns the final latents and the decoded images.
// With the CPU backend and torch's CPU generator it reproduces diffusers'
// float32 results (see the golden tests); the same code runs on CUDA.
package sdxl

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sched"
	"github.com/sdxl-go/sdxl/sched/torchrand"
	"github.com/sdxl-go/sdxl/sdxl/capture"
	"github.com/sdxl-go/sdxl/sdxl/unet"
	"github.com/sdxl-go/sdxl/sdxl/watermark"
	"github.com/sdxl-go/sdxl/tensor"
)

// Pipeline is a backend with a base model, a refiner, or both.
type Pipeline struct {
	Backend tensor.Backend
	Base    *Model
	Refiner *Model
	// DType is the dtype of the UNet's activations. The zero value, F32,
	// follows the UNet's weights: a model loaded in F16 runs in F16 (as
	// diffusers does with torch_dtype=float16) instead of converting its
	// weights at every layer.
	DType tensor.DType
	// Offload, when set, is the host backend the models were loaded on:
	// each component's weights are copied to Backend only while it runs
	// (see onDevice), trading upload time for GPU memory.
	Offload tensor.Backend

	// CUDAGenerator, when set, provides the RNG "cuda" stream. The CUDA
	// backend's device generator (cuda.Backend.NewTorchGenerator) draws it
	// with the GPU's own math and so matches torch.Generator("cuda") bit for
	// bit; without it sched/torchrand's host emulation is used (equal to
	// about 1e-6).
	CUDAGenerator func(seed uint64) sched.Generator

	// newGen, when set, replaces newGenerator (tests record the draws).
	newGen func(kind string, seed uint64) sched.Generator
}

// Weighting selects how prompt strings become conditioning.
type Weighting string

const (
	// WeightingNone is diffusers' own encode_prompt: no syntax, prompts
	// truncated at 77 tokens.
	WeightingNone Weighting = "none"
	// WeightingCompel is Compel's syntax; long prompts are chunked and
	// padded like CompelForSDXL.
	WeightingCompel Weighting = "compel"
	// WeightingA1111 is AUTOMATIC1111's emphasis syntax.
	WeightingA1111 Weighting = "a1111"
)

// Request is one generation. Zero values mean diffusers' defaults where it
// has one.
type Request struct {
	Prompt, Prompt2 string
	// NegativePrompt nil is diffusers' None (zeros for the base, since
	// force_zeros_for_empty_prompt); a pointer to "" encodes "".
	NegativePrompt, NegativePrompt2 *string
	Weighting                       Weighting
	ClipSkip                        int

	// Width and Height in pixels (multiples of 8); 0 means the UNet's
	// sample_size times the VAE scale factor (1024 for SDXL), each on its
	// own as diffusers' `height or default_sample_size * vae_scale_factor`.
	// Ignored for img2img (the image's size is used).
	Width, Height int
	Steps         int // 0 means 50
	// Guidance is guidance_scale. Classifier-free guidance is on only when
	// it is > 1; 0 (the zero value) and 1 both turn it off, and then no
	// negative conditioning is computed at all, as in diffusers. (The CLI
	// defaults to diffusers' 5.)
	Guidance float64
	// GuidanceRescale is guidance_rescale (0 = off).
	GuidanceRescale float64
	// Scheduler is a name of sched.Names or a diffusers class name ("" =
	// the model's own scheduler_config.json); Karras adds use_karras_sigmas.
	Scheduler string
	Karras    bool
	// Seed and RNG ("cpu" or "cuda") select the torch-compatible generator.
	Seed uint64
	RNG  string
	// NumImages is num_images_per_prompt (0 means 1). As in diffusers the
	// batch shares one draw: the initial noise is one [NumImages, 4, h, w]
	// tensor, so image k of a batch is not the image of a one-image run
	// with the same seed (image k is that run with InitNoise set to the
	// batch draw's k-th slice).
	NumImages int
	// InitNoise replaces the first random draw of a text-to-image run (the
	// latents before init_noise_sigma), shape [NumImages, 4, h, w]. It is
	// an error with an input image (img2img draws no initial latents).
	InitNoise []float32

	// Micro-conditioning; nil means diffusers' default.
	OriginalSize, TargetSize                 *[2]int
	CropsTopLeft                             [2]int
	NegativeOriginalSize, NegativeTargetSize *[2]int
	NegativeCropsTopLeft                     [2]int
	AestheticScore, NegativeAestheticScore   *float64

	// HighNoiseFrac splits the steps between base and refiner when both
	// are loaded (denoising_end / denoising_start; 0 means 0.8).
	HighNoiseFrac float64
	// DenoisingEnd is denoising_end for a one-model run (text to image or
	// img2img): the steps below this fraction are skipped. As in diffusers
	// the partly denoised latents are still decoded unless OutputLatents
	// is set. With both models loaded use HighNoiseFrac instead.
	DenoisingEnd float64

	// Image is an img2img input: NCHW [1, 3, H, W] in [-1, 1] (see
	// imageio.PreprocessFile), or, with ImageIsLatents, scaled latents
	// [1, C, h, w] (C the UNet's in_channels) used as they are, as
	// diffusers does with a 4-channel image tensor.
	Image          []float32
	ImageShape     []int
	ImageIsLatents bool
	// Strength of img2img (0 means 0.3, diffusers' default).
	Strength float64

	// Embeds and RefinerEmbeds replace prompt encoding for the base (or
	// the only model) and the refiner: diffusers' prompt_embeds=,
	// pooled_prompt_embeds=, negative_... arguments.
	Embeds, RefinerEmbeds *PromptEmbeds

	// OutputLatents skips the VAE decode.
	OutputLatents bool
	// Watermark applies SDXL's invisible watermark to images >= 256 wide
	// (narrower ones are left alone, as in diffusers). Images at least 256
	// wide but under 256*256 pixels make Generate fail, as invisible-
	// watermark does in diffusers: check ImageSize first.
	Watermark bool

	// Dump lists module-path patterns (sdxl/capture syntax) whose UNet
	// activations are recorded at every step.
	Dump []string
	// KeepStepLatents records the latents after every scheduler step.
	KeepStepLatents bool
	// Progress is called after every denoising step; returning an error
	// stops the run.
	Progress func(Progress) error
}

// Progress describes one finished denoising step.
type Progress struct {
	Stage     string // "base" or "refiner"
	Step      int    // 1-based within the stage
	Steps     int    // steps of the stage
	Timestep  float64
	Latents   []float32
	LatentDim [4]int
}

// Activation is one recorded tensor of a dump.
type Activation struct {
	Name  string // "<stage>.step<k>.<module path>"
	Shape []int
	Data  []float32
}

// Result is the outcome of Generate.
type Result struct {
	// Latents are the final latents [N, 4, h, w] (before VAE scaling).
	Latents     []float32
	LatentShape [4]int
	// BaseLatents are the base's output in an ensemble run.
	BaseLatents []float32
	// Images are the decoded (and watermarked) images, NCHW in [-1, 1]
	// (nil with OutputLatents).
	Images     []float32
	ImageShape [4]int
	// StepLatents holds the latents after every step (KeepStepLatents).
	StepLatents [][]float32
	// Dumps holds the recorded activations (Dump).
	Dumps []Activation
	// Timesteps are the timesteps run, per stage in order.
	Timesteps []float64
	// Scheduler is the scheduler class used by the first stage.
	Scheduler string
}

// ErrCanceled is returned (wrapped) when the context ends a run.
var ErrCanceled = errors.New("generation canceled")

func (r *Request) defaults() {
	if r.Steps == 0 {
		r.Steps = 50
	}
	if r.NumImages == 0 {
		r.NumImages = 1
	}
	if r.Weighting == "" {
		r.Weighting = WeightingNone
	}
	if r.RNG == "" {
		r.RNG = "cpu"
	}
	if r.HighNoiseFrac == 0 {
		r.HighNoiseFrac = 0.8
	}
	if r.Strength == 0 {
		r.Strength = 0.3
	}
}

func (r *Request) validate() error {
	if r.Width%8 != 0 || r.Height%8 != 0 || r.Width <= 0 || r.Height <= 0 {
		return fmt.Errorf("size %dx%d: width and height must be positive multiples of 8", r.Width, r.Height)
	}
	if math.IsNaN(r.Guidance) || math.IsInf(r.Guidance, 0) {
		return fmt.Errorf("guidance %g: must be a finite number", r.Guidance)
	}
	if r.Steps < 1 {
		return fmt.Errorf("steps %d: must be at least 1", r.Steps)
	}
	if r.NumImages < 1 {
		return fmt.Errorf("number of images %d: must be at least 1", r.NumImages)
	}
	if !(r.Strength > 0 && r.Strength <= 1) {
		return fmt.Errorf("strength %g: must be in (0, 1]", r.Strength)
	}
	if !validFrac(r.HighNoiseFrac) {
		return fmt.Errorf("high-noise fraction %g: must be in (0, 1)", r.HighNoiseFrac)
	}
	if r.DenoisingEnd != 0 && !validFrac(r.DenoisingEnd) {
		return fmt.Errorf("denoising end %g: must be in (0, 1)", r.DenoisingEnd)
	}
	if !(r.GuidanceRescale >= 0 && r.GuidanceRescale <= 1) {
		return fmt.Errorf("guidance rescale %g: must be in [0, 1]", r.GuidanceRescale)
	}
	if r.ClipSkip < 0 {
		return fmt.Errorf("clip skip %d: must be >= 0", r.ClipSkip)
	}
	switch r.Weighting {
	case WeightingNone, WeightingCompel, WeightingA1111:
	default:
		return fmt.Errorf("prompt weighting %q: want none, compel or a1111", r.Weighting)
	}
	switch r.RNG {
	case "cpu", "cuda":
	default:
		return fmt.Errorf("rng %q: want cpu or cuda", r.RNG)
	}
	return nil
}

// newGenerator returns the torch-compatible generator of the request.
func newGenerator(kind string, seed uint64) sched.Generator {
	if kind == "cuda" {
		return torchrand.NewCUDA(seed)
	}
	return torchrand.NewCPU(seed)
}

// stage is one pipeline call inside a Generate.
type stage struct {
	name  string
	model *Model
	// img2img: start from image (pixels or latents) instead of noise.
	img2img        bool
	image          []float32
	imageShape     []int
	imageIsLatents bool
	denoisingStart float64
	denoisingEnd   float64
	latentOutput   bool
}

// first is the model that runs first: the base, or the refiner alone.
func (p *Pipeline) first() *Model {
	if p.Base != nil {
		return p.Base
	}
	return p.Refiner
}

// resolveSize fills req.Width and req.Height as Generate uses them: from
// an img2img input's shape, else each missing one from the UNet's
// sample_size times the VAE scale factor (diffusers' `height or
// default_sample_size * vae_scale_factor`).
func (p *Pipeline) resolveSize(req *Request) error {
	m := p.first()
	if req.Image != nil {
		if len(req.ImageShape) != 4 || req.ImageShape[0] != 1 {
			return fmt.Errorf("image shape %v: want [1, C, H, W]", req.ImageShape)
		}
		f := 1
		if req.ImageIsLatents {
			f = m.VAE.ScaleFactor()
		}
		req.Width, req.Height = req.ImageShape[3]*f, req.ImageShape[2]*f
		return nil
	}
	if req.Width != 0 && req.Height != 0 {
		return nil
	}
	ss := m.UNet.Config().SampleSize
	if ss == nil {
		// diffusers fails here too (None * vae_scale_factor).
		return fmt.Errorf("%s: the UNet config has no sample_size, so there is no default image size: give the width and height", m.Path)
	}
	f := m.VAE.ScaleFactor()
	if req.Width == 0 {
		req.Width = ss.W * f
	}
	if req.Height == 0 {
		req.Height = ss.H * f
	}
	return nil
}

// ImageSize returns the width and height in pixels that Generate would
// produce for req (its defaults applied), without running anything.
func (p *Pipeline) ImageSize(req Request) (width, height int, err error) {
	if p.Base == nil && p.Refiner == nil {
		return 0, 0, errors.New("no model loaded")
	}
	if err := p.resolveSize(&req); err != nil {
		return 0, 0, err
	}
	return req.Width, req.Height, nil
}

// checkImage validates an img2img input against the model that encodes it.
func (p *Pipeline) checkImage(req *Request) error {
	m := p.first()
	s := req.ImageShape
	n := 1
	for _, d := range s {
		if d <= 0 {
			return fmt.Errorf("image shape %v: every dimension must be positive", s)
		}
		n *= d
	}
	if len(req.Image) != n {
		return fmt.Errorf("image has %d values, its shape %v needs %d", len(req.Image), s, n)
	}
	if req.ImageIsLatents {
		if c := m.UNet.InChannels(); s[1] != c {
			return fmt.Errorf("image latents shape %v: the UNet takes %d latent channels", s, c)
		}
		return nil
	}
	if c := m.VAE.Config().InChannels; s[1] != c {
		return fmt.Errorf("image shape %v: the VAE encodes %d-channel images (give latents with ImageIsLatents)", s, c)
	}
	return nil
}

// checkWeighting fails before any work when a stage's model cannot encode
// the request's prompts (rather than after the base stage of an ensemble).
func checkWeighting(req *Request, m *Model, given *PromptEmbeds) error {
	if given != nil || req.Weighting == WeightingNone {
		return nil
	}
	if req.ClipSkip != 0 {
		// diffusers ignores clip_skip when it is handed prompt_embeds (which
		// is how weighted prompts reach it): refuse rather than ignore.
		return fmt.Errorf("clip skip works only with prompt weighting none (diffusers applies clip_skip only to its own prompt encoding)")
	}
	if req.Prompt2 != "" || req.NegativePrompt2 != nil {
		return fmt.Errorf("a second prompt (prompt_2 / negative_prompt_2) works only with prompt weighting none")
	}
	if req.Weighting == WeightingA1111 && m.IsRefiner() {
		return fmt.Errorf("prompt weighting a1111 needs the base's two text encoders; the refiner (%s) supports none and compel", m.Path)
	}
	return nil
}

// stageEmbeds returns the precomputed conditioning a stage uses, if any.
func (p *Pipeline) stageEmbeds(req *Request, st stage) *PromptEmbeds {
	if st.name == "refiner" && p.Base != nil {
		return req.RefinerEmbeds
	}
	return req.Embeds
}

// Generate runs the request.
func (p *Pipeline) Generate(ctx context.Context, req Request) (*Result, error) {
	req.defaults()
	if p.Base == nil && p.Refiner == nil {
		return nil, errors.New("no model loaded")
	}
	if req.Image == nil && p.Base == nil {
		return nil, errors.New("text-to-image needs a base model: the refiner alone only refines an existing image (give --image)")
	}
	if err := p.resolveSize(&req); err != nil {
		return nil, err
	}
	if err := req.validate(); err != nil {
		return nil, err
	}
	if req.Image != nil {
		if err := p.checkImage(&req); err != nil {
			return nil, err
		}
		if req.InitNoise != nil {
			return nil, errors.New("initial noise applies to text-to-image only: img2img starts from the image, not from noise")
		}
	}
	if validFrac(req.DenoisingEnd) && p.Base != nil && p.Refiner != nil {
		return nil, fmt.Errorf("denoising end %g is for a one-model run; with base and refiner the split is the high-noise fraction", req.DenoisingEnd)
	}

	var stages []stage
	switch {
	case req.Image == nil && p.Refiner == nil:
		stages = []stage{{name: "base", model: p.Base, denoisingEnd: req.DenoisingEnd, latentOutput: req.OutputLatents}}
	case req.Image == nil:
		stages = []stage{
			{name: "base", model: p.Base, denoisingEnd: req.HighNoiseFrac, latentOutput: true},
			{name: "refiner", model: p.Refiner, img2img: true, imageIsLatents: true, denoisingStart: req.HighNoiseFrac, latentOutput: req.OutputLatents},
		}
	case p.Base == nil:
		stages = []stage{{name: "refiner", model: p.Refiner, img2img: true, image: req.Image, imageShape: req.ImageShape, imageIsLatents: req.ImageIsLatents, denoisingEnd: req.DenoisingEnd, latentOutput: req.OutputLatents}}
	case p.Refiner == nil:
		stages = []stage{{name: "base", model: p.Base, img2img: true, image: req.Image, imageShape: req.ImageShape, imageIsLatents: req.ImageIsLatents, denoisingEnd: req.DenoisingEnd, latentOutput: req.OutputLatents}}
	default:
		stages = []stage{
			{name: "base", model: p.Base, img2img: true, image: req.Image, imageShape: req.ImageShape, imageIsLatents: req.ImageIsLatents, denoisingEnd: req.HighNoiseFrac, latentOutput: true},
			{name: "refiner", model: p.Refiner, img2img: true, imageIsLatents: true, denoisingStart: req.HighNoiseFrac, latentOutput: req.OutputLatents},
		}
	}
	for _, st := range stages {
		if err := checkWeighting(&req, st.model, p.stageEmbeds(&req, st)); err != nil {
			return nil, err
		}
	}

	newGen := p.newGen
	if newGen == nil {
		newGen = newGenerator
		if p.CUDAGenerator != nil {
			newGen = func(kind string, seed uint64) sched.Generator {
				if kind == "cuda" {
					return p.CUDAGenerator(seed)
				}
				return newGenerator(kind, seed)
			}
		}
	}
	gen := newGen(req.RNG, req.Seed)
	res := &Result{}
	var latents []float32
	var shape [4]int
	for i, st := range stages {
		if i > 0 {
			st.image = latents
			st.imageShape = shape[:]
			res.BaseLatents = latents
		}
		var err error
		latents, shape, err = p.runStage(ctx, &req, st, gen, res)
		if err != nil {
			return nil, err
		}
	}
	res.Latents, res.LatentShape = latents, shape
	if stages[len(stages)-1].latentOutput {
		return res, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCanceled, err)
	}
	last := stages[len(stages)-1].model
	var img []float32
	var ishape [4]int
	err := p.onDevice(func() (err error) {
		img, ishape, err = p.decode(last, latents, shape)
		return err
	}, last.VAE)
	if err != nil {
		return nil, err
	}
	if req.Watermark {
		if err := watermark.Apply(img, ishape[:]); err != nil {
			return nil, fmt.Errorf("%v (turn the watermark off for images this small)", err)
		}
	}
	res.Images, res.ImageShape = img, ishape
	return res, nil
}

// decode runs the VAE decoder in float32 (SDXL's VAE overflows in fp16).
func (p *Pipeline) decode(m *Model, latents []float32, shape [4]int) ([]float32, [4]int, error) {
	b := p.Backend
	z := b.FromFloat32(tensor.F32, tensor.Shape(shape[:]), latents)
	defer z.Free()
	u := m.VAE.Unscale(b, z)
	defer u.Free()
	img, err := m.VAE.Decode(b, nil, u)
	if err != nil {
		return nil, [4]int{}, err
	}
	defer img.Free()
	s := img.Shape()
	return b.ToFloat32(img), [4]int{s[0], s[1], s[2], s[3]}, nil
}

// encodeImage is the img2img pipeline's prepare_latents up to the noise:
// VAE-encode pixels (sampling the posterior with the generator) and scale,
// or take latents as they are; then repeat for the batch.
func (p *Pipeline) encodeImage(m *Model, st stage, gen sched.Generator, n int) ([]float32, [4]int, error) {
	b := p.Backend
	var lat []float32
	var shape [4]int
	if st.imageIsLatents {
		lat = st.image
		copy(shape[:], st.imageShape)
	} else {
		x := b.FromFloat32(tensor.F32, tensor.Shape(st.imageShape), st.image)
		defer x.Free()
		post, err := m.VAE.Encode(b, nil, x)
		if err != nil {
			return nil, shape, err
		}
		defer post.Free()
		ms := post.Mean.Shape()
		noise := b.FromFloat32(tensor.F32, ms, gen.Randn(ms.Numel()))
		defer noise.Free()
		sample, err := post.Sample(b, noise)
		if err != nil {
			return nil, shape, err
		}
		defer sample.Free()
		scaled := m.VAE.Scale(b, sample)
		defer scaled.Free()
		lat = b.ToFloat32(scaled)
		copy(shape[:], ms)
	}
	if shape[0] == n {
		return lat, shape, nil
	}
	if shape[0] != 1 {
		return nil, shape, fmt.Errorf("image batch %d cannot make %d images", shape[0], n)
	}
	out := make([]float32, 0, n*len(lat))
	for i := 0; i < n; i++ {
		out = append(out, lat...)
	}
	shape[0] = n
	return out, shape, nil
}

// runStage is one diffusers pipeline __call__ (txt2img or img2img) up to
// the latents.
func (p *Pipeline) runStage(ctx context.Context, req *Request, st stage, gen sched.Generator, res *Result) ([]float32, [4]int, error) {
	m := st.model
	b := p.Backend
	n := req.NumImages
	cfg := req.Guidance > 1
	var shape [4]int

	given := p.stageEmbeds(req, st)
	var emb *embeds
	var err error
	if given != nil {
		emb, err = given.embeds(m, n, cfg)
	} else {
		err = p.onDevice(func() (err error) {
			emb, err = p.encodePrompts(m, req, cfg)
			return err
		}, m.Text.TextEncoder, m.Text.TextEncoder2)
	}
	if err != nil {
		return nil, shape, err
	}

	s, err := p.newScheduler(m, req)
	if err != nil {
		return nil, shape, err
	}
	if err := s.SetTimesteps(req.Steps); err != nil {
		return nil, shape, err
	}
	ts := s.Timesteps()
	if res.Scheduler == "" {
		res.Scheduler = s.ClassName()
	}

	// Latent-space draws are made in the latents' dtype, which diffusers
	// takes from prompt_embeds: float16 in a half-precision pipeline (the
	// CPU generator then makes different numbers, not just rounded ones).
	// The VAE posterior sample stays float32 (the VAE always runs in it).
	dt := p.activationDType(m)
	randn := gen.Randn
	if dt == tensor.F16 {
		randn = gen.RandnHalf
	}
	var latents []float32
	if !st.img2img {
		h, w := req.Height/m.VAE.ScaleFactor(), req.Width/m.VAE.ScaleFactor()
		shape = [4]int{n, m.UNet.InChannels(), h, w}
		size := n * shape[1] * h * w
		if req.InitNoise != nil {
			if len(req.InitNoise) != size {
				return nil, shape, fmt.Errorf("init noise has %d values, the latents %v need %d", len(req.InitNoise), shape, size)
			}
			latents = append([]float32(nil), req.InitNoise...)
		} else {
			latents = randn(size)
		}
		sigma := float32(s.InitNoiseSigma())
		for i := range latents {
			latents[i] *= sigma
		}
		ts = sched.DenoisingEnd(s, ts, st.denoisingEnd)
		s.SetBeginIndex(0)
	} else {
		if ts, err = sched.Img2ImgTimesteps(s, req.Steps, req.Strength, st.denoisingStart); err != nil {
			return nil, shape, err
		}
		if len(ts) == 0 {
			return nil, shape, fmt.Errorf("strength %g with %d steps leaves no denoising step (raise the strength or the steps)", req.Strength, req.Steps)
		}
		var init []float32
		var ishape [4]int
		err := p.onDevice(func() (err error) {
			init, ishape, err = p.encodeImage(m, st, gen, n)
			return err
		}, m.VAE)
		if err != nil {
			return nil, shape, err
		}
		shape = ishape
		if validFrac(st.denoisingStart) {
			latents = init
		} else {
			noise := randn(len(init))
			if latents, err = s.AddNoise(init, noise, ts[0]); err != nil {
				return nil, shape, err
			}
		}
		ts = sched.DenoisingEnd(s, ts, st.denoisingEnd)
	}
	res.Timesteps = append(res.Timesteps, ts...)

	// Conditioning tensors for the whole loop: [neg; pos] rows.
	height, width := shape[2]*m.VAE.ScaleFactor(), shape[3]*m.VAE.ScaleFactor()
	timeIDs := p.timeIDs(m, req, st, height, width, n, cfg)
	ctxT, pooledT := emb.upload(b, dt, cfg)
	defer ctxT.Free()
	defer pooledT.Free()

	noise := sched.GeneratorNoise{Gen: gen, ModelHalf: dt == tensor.F16}
	rows := n
	if cfg {
		rows = 2 * n
	}
	per := len(latents) / n
	denoise := func() error {
		for i, t := range ts {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("%w: %v", ErrCanceled, err)
			}
			in := latents
			if cfg {
				in = make([]float32, 0, 2*len(latents))
				in = append(append(in, latents...), latents...)
			}
			scaled, err := s.ScaleModelInput(in, t)
			if err != nil {
				return err
			}
			x := b.FromFloat32(dt, tensor.Shape{rows, shape[1], shape[2], shape[3]}, scaled)
			var rec *capture.Recorder
			var nnRec nn.Recorder
			if len(req.Dump) > 0 {
				if rec, err = capture.New(req.Dump...); err != nil {
					x.Free()
					return err
				}
				nnRec = rec
			}
			out, err := m.UNet.Forward(b, unet.Input{
				Sample:              x,
				Timesteps:           []float32{float32(t)},
				EncoderHiddenStates: ctxT,
				TextEmbeds:          pooledT,
				TimeIDs:             timeIDs,
			}, nnRec)
			x.Free()
			if err != nil {
				return err
			}
			pred := b.ToFloat32(out)
			out.Free()
			if err := b.Err(); err != nil {
				return err
			}
			if rec != nil {
				for _, path := range rec.Paths() {
					a, _ := rec.Get(path)
					res.Dumps = append(res.Dumps, Activation{Name: fmt.Sprintf("%s.step%d.%s", st.name, i, path), Shape: a.Shape, Data: a.Data})
				}
			}
			if cfg {
				pred = classifierFreeGuidance(pred[:n*per], pred[n*per:], req.Guidance, req.GuidanceRescale, n)
			}
			if latents, err = s.Step(pred, t, latents, noise); err != nil {
				return err
			}
			if req.KeepStepLatents {
				res.StepLatents = append(res.StepLatents, latents)
			}
			if req.Progress != nil {
				if err := req.Progress(Progress{Stage: st.name, Step: i + 1, Steps: len(ts), Timestep: t, Latents: latents, LatentDim: shape}); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := p.onDevice(denoise, m.UNet); err != nil {
		return nil, shape, err
	}
	return latents, shape, nil
}

func (p *Pipeline) newScheduler(m *Model, req *Request) (sched.Scheduler, error) {
	var opts []sched.Option
	if req.Karras {
		opts = append(opts, sched.Karras())
	}
	if req.Scheduler == "" {
		if len(opts) == 0 {
			return sched.FromConfig(m.Scheduler)
		}
		cls, _ := m.Scheduler["_class_name"].(string)
		return sched.New(cls, m.Scheduler, opts...)
	}
	return sched.New(req.Scheduler, m.Scheduler, opts...)
}

// timeIDs builds the add_time_ids rows the way each diffusers pipeline
// stacks them; without guidance both give pos x n. With guidance the
// img2img pipeline repeats each block ([neg x n; pos x n], matching the
// [uncond; text] halves of the batch) but the txt2img pipeline repeats the
// pair ([neg; pos] x n): with n > 1 and negative micro-conditioning that
// differs from the positive one, its unconditional and text halves both
// get neg, pos, neg, pos, ... — a quirk reproduced on purpose.
func (p *Pipeline) timeIDs(m *Model, req *Request, st stage, height, width, n int, cfg bool) []float32 {
	tp := unet.TimeIDParams{
		OriginalSize:           [2]int{height, width},
		CropsTopLeft:           req.CropsTopLeft,
		TargetSize:             [2]int{height, width},
		NegativeOriginalSize:   req.NegativeOriginalSize,
		NegativeCropsTopLeft:   req.NegativeCropsTopLeft,
		NegativeTargetSize:     req.NegativeTargetSize,
		AestheticScore:         unet.DefaultAestheticScore,
		NegativeAestheticScore: unet.DefaultNegativeAestheticScore,
	}
	if req.OriginalSize != nil {
		tp.OriginalSize = *req.OriginalSize
	}
	if req.TargetSize != nil {
		tp.TargetSize = *req.TargetSize
	}
	if req.AestheticScore != nil {
		tp.AestheticScore = *req.AestheticScore
	}
	if req.NegativeAestheticScore != nil {
		tp.NegativeAestheticScore = *req.NegativeAestheticScore
	}
	var pos, neg []float32
	if st.img2img {
		pos, neg = unet.Img2ImgTimeIDs(tp, m.RequiresAestheticsScore)
	} else {
		pos, neg = unet.BaseTimeIDs(tp)
	}
	var out []float32
	switch {
	case !cfg:
		for i := 0; i < n; i++ {
			out = append(out, pos...)
		}
	case st.img2img:
		for i := 0; i < n; i++ {
			out = append(out, neg...)
		}
		for i := 0; i < n; i++ {
			out = append(out, pos...)
		}
	default:
		for i := 0; i < n; i++ {
			out = append(append(out, neg...), pos...)
		}
	}
	return out
}

// activationDType is the dtype the UNet computes in for model m (see
// Pipeline.DType).
func (p *Pipeline) activationDType(m *Model) tensor.DType {
	if p.DType != tensor.F32 || m.UNet.ConvIn == nil || m.UNet.ConvIn.Weight == nil {
		return p.DType
	}
	return m.UNet.ConvIn.Weight.DType()
}
