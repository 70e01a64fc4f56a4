package sdxl

import (
	"context"
	"fmt"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sched"
	"github.com/sdxl-go/sdxl/sdxl/capture"
	"github.com/sdxl-go/sdxl/sdxl/clip"
	"github.com/sdxl-go/sdxl/sdxl/unet"
	"github.com/sdxl-go/sdxl/sdxl/vae"
	"github.com/sdxl-go/sdxl/tensor"
)

// runStage is one diffusers pipeline __call__ (txt2img or img2img) up to
// the latents.
func (p *Pipeline) runStage(ctx context.Context, r *Request, st *stage, gen sched.Generator, res *Result, tr *tracker) ([]float32, [4]int, error) {
	m := st.model
	cfg := r.Guidance > 1
	cond, err := p.conditioning(ctx, r, st, cfg, tr)
	if err != nil {
		return nil, [4]int{}, err
	}
	if res.Scheduler == "" {
		res.Scheduler = st.sched.ClassName()
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
	latents, shape, err := p.initialLatents(ctx, r, st, gen, randn)
	if err != nil {
		return nil, shape, err
	}
	res.Timesteps = append(res.Timesteps, st.timesteps...)
	lp := &loop{p: p, r: r, st: st, res: res, tr: tr, cfg: cfg, dt: dt, shape: shape,
		noise: sched.GeneratorNoise{Gen: gen, ModelHalf: dt == tensor.F16}}
	lp.timeIDs = p.timeIDs(m, r, st, shape[2]*m.VAE.ScaleFactor(), shape[3]*m.VAE.ScaleFactor(), r.NumImages, cfg)
	lp.ctxT, lp.pooledT = cond.upload(p.Backend, dt, cfg)
	defer lp.ctxT.Free()
	defer lp.pooledT.Free()
	if lp.control, err = p.newControlRun(r, st, shape[3]*m.VAE.ScaleFactor(), shape[2]*m.VAE.ScaleFactor(), cfg, dt); err != nil {
		return nil, shape, err
	}
	defer lp.control.Free()
	if err := tr.stage(st.name, len(st.timesteps)); err != nil {
		return nil, shape, err
	}
	err = p.onDevice(func() (err error) {
		latents, err = lp.denoise(ctx, latents)
		return err
	}, append([]any{m.UNet}, lp.control.modules()...)...)
	return latents, shape, err
}

// conditioning encodes the stage's prompts (or takes the given embeds).
func (p *Pipeline) conditioning(ctx context.Context, r *Request, st *stage, cfg bool, tr *tracker) (*Conditioning, error) {
	if st.embeds != nil {
		return st.embeds.conditioning(st.model, r.NumImages, cfg)
	}
	if err := canceled(ctx); err != nil {
		return nil, err
	}
	if err := tr.text(); err != nil {
		return nil, err
	}
	c, err := r.Weighting.Conditioner()
	if err != nil {
		return nil, err
	}
	p.setTextCompute(st.model)
	var cond *Conditioning
	err = p.onDevice(func() (err error) {
		cond, err = c.Encode(ctx, p.Backend, st.model, r.prompts(cfg))
		return err
	}, st.model.Text.TextEncoder, st.model.Text.TextEncoder2)
	if cerr := canceled(ctx); err != nil && cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	for _, e := range [][]float32{cond.Prompt, cond.Negative, cond.Pooled, cond.NegativePooled} {
		if err := sched.CheckFinite(e, string(st.name), "the text encoders' output", sched.CauseModel); err != nil {
			return nil, err
		}
	}
	if p.ReleaseTextEncoders {
		st.model.releaseText()
	}
	return cond, tr.textDone()
}

// initialLatents are the latents the denoising starts from: scaled noise
// for text to image, the (noised) encoded image for img2img.
func (p *Pipeline) initialLatents(ctx context.Context, r *Request, st *stage, gen sched.Generator, randn func(int) []float32) ([]float32, [4]int, error) {
	m, n := st.model, r.NumImages
	if st.inp != nil {
		return p.prepareInpaint(ctx, r, st, gen, randn)
	}
	if !st.img2img {
		f := m.VAE.ScaleFactor()
		shape := [4]int{n, m.UNet.InChannels(), r.Height / f, r.Width / f}
		size := shape[0] * shape[1] * shape[2] * shape[3]
		var latents []float32
		if r.InitNoise != nil {
			latents = append([]float32(nil), r.InitNoise...)
		} else {
			latents = randn(size)
		}
		sigma := float32(st.sched.InitNoiseSigma())
		for i := range latents {
			latents[i] *= sigma
		}
		return latents, shape, nil
	}
	var init []float32
	var shape [4]int
	err := p.onDevice(func() (err error) {
		init, shape, err = p.encodeImage(ctx, m, st, gen, n)
		return err
	}, m.VAE)
	if err != nil || validFrac(st.denoisingStart) {
		return init, shape, err
	}
	latents, err := st.sched.AddNoise(init, randn(len(init)), st.noiseT)
	return latents, shape, err
}

// encodeImage is the img2img pipeline's prepare_latents up to the noise:
// VAE-encode pixels (sampling the posterior with the generator) and scale,
// or take latents as they are; then repeat for the batch.
func (p *Pipeline) encodeImage(ctx context.Context, m *Model, st *stage, gen sched.Generator, n int) ([]float32, [4]int, error) {
	var lat []float32
	var shape [4]int
	if st.imageIsLatents {
		lat = st.image
		copy(shape[:], st.imageShape)
	} else {
		var err error
		if lat, shape, err = p.encodePixels(ctx, m, st.image, st.imageShape, st.tiling, gen); err != nil {
			return nil, shape, err
		}
	}
	if shape[0] == n {
		return lat, shape, nil
	}
	if shape[0] != 1 {
		return nil, shape, fmt.Errorf("image batch %d cannot make %d images", shape[0], n)
	}
	shape[0] = n
	return repeat(lat, n), shape, nil
}

// encodePixels VAE-encodes an image (in tiles with tiling) and samples its
// posterior.
func (p *Pipeline) encodePixels(ctx context.Context, m *Model, img []float32, ishape []int, tiling *vae.Tiling, gen sched.Generator) ([]float32, [4]int, error) {
	s := tensor.NewScope(p.Backend)
	defer s.Release()
	var shape [4]int
	x := s.FromFloat32(tensor.F32, tensor.Shape(ishape), img)
	var post *vae.Posterior
	var err error
	if tiling != nil {
		post, err = m.VAE.EncodeTiled(ctx, s, x, *tiling)
	} else {
		post, err = m.VAE.Encode(ctx, s, nil, x)
	}
	if cerr := canceled(ctx); err != nil && cerr != nil {
		return nil, shape, cerr
	}
	if err != nil {
		return nil, shape, err
	}
	ms := post.Mean.Shape()
	sample, err := post.Sample(s, s.FromFloat32(tensor.F32, ms, gen.Randn(ms.Numel())))
	if err != nil {
		return nil, shape, err
	}
	copy(shape[:], ms)
	return s.ToFloat32(m.VAE.Scale(s, sample)), shape, nil
}

// loop is the denoising loop of one stage.
type loop struct {
	p             *Pipeline
	r             *Request
	st            *stage
	res           *Result
	tr            *tracker
	cfg           bool
	dt            tensor.DType
	shape         [4]int
	noise         sched.GeneratorNoise
	timeIDs       []float32
	ctxT, pooledT *tensor.Tensor
	control       *controlRun // nil without ControlNets
}

func (lp *loop) denoise(ctx context.Context, latents []float32) ([]float32, error) {
	for i, t := range lp.st.timesteps {
		if err := canceled(ctx); err != nil {
			return nil, err
		}
		pred, err := lp.predict(ctx, latents, t, i)
		if err != nil {
			return nil, err
		}
		if latents, err = lp.st.sched.Step(pred, t, latents, lp.noise); err != nil {
			return nil, err
		}
		if lp.st.inp != nil {
			if latents, err = lp.st.inp.blend(lp.st.sched, latents, lp.st.timesteps, i); err != nil {
				return nil, err
			}
		}
		// NaN or infinite values would decode to an all-black image: stop
		// at the step, blaming the UNet or the scheduler by which output
		// first holds them.
		if err := sched.CheckStep(string(lp.st.name), i+1, len(lp.st.timesteps), pred, latents); err != nil {
			return nil, err
		}
		if lp.r.KeepStepLatents {
			lp.res.StepLatents = append(lp.res.StepLatents, latents)
		}
		if err := lp.tr.step(lp.st.name, i+1, t, latents, lp.shape); err != nil {
			return nil, err
		}
	}
	return latents, nil
}

// predict runs the UNet on the step's input (both guidance halves at once)
// and returns the guided noise prediction.
func (lp *loop) predict(ctx context.Context, latents []float32, t float64, step int) ([]float32, error) {
	n, shape := lp.r.NumImages, lp.shape
	in, rows := latents, n
	if lp.cfg {
		in = append(append(make([]float32, 0, 2*len(latents)), latents...), latents...)
		rows = 2 * n
	}
	scaled, err := lp.st.sched.ScaleModelInput(in, t)
	if err != nil {
		return nil, err
	}
	var rec *capture.Recorder
	var nnRec nn.Recorder
	if len(lp.r.Dump) > 0 {
		if rec, err = capture.New(lp.r.Dump...); err != nil {
			return nil, err
		}
		nnRec = rec
	}
	s := tensor.NewScope(lp.p.Backend)
	defer s.Release()
	x := s.FromFloat32(lp.dt, tensor.Shape{rows, shape[1], shape[2], shape[3]}, scaled)
	uin := unet.Input{Sample: x, Timesteps: []float32{float32(t)}, EncoderHiddenStates: lp.ctxT, TextEmbeds: lp.pooledT, TimeIDs: lp.timeIDs}
	if lp.st.inp != nil && lp.st.inp.nine {
		// The 9-channel inpainting UNet also sees the masks.
		in, ch := lp.st.inp.modelInput(scaled, rows)
		uin.Sample = s.FromFloat32(lp.dt, tensor.Shape{rows, ch, shape[2], shape[3]}, in)
	}
	ctrl, err := lp.control.residuals(ctx, s, nnRec, controlStep{i: step, t: float32(t), x: x, context: lp.ctxT, pooled: lp.pooledT, timeIDs: lp.timeIDs})
	if cerr := canceled(ctx); err != nil && cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	if ctrl != nil {
		uin.DownResiduals, uin.MidResidual = ctrl.Down, ctrl.Mid
	}
	out, err := lp.st.model.UNet.Forward(ctx, s, uin, nnRec)
	if cerr := canceled(ctx); err != nil && cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	pred := s.ToFloat32(out)
	if err := s.Err(); err != nil {
		return nil, err
	}
	if rec != nil {
		for _, path := range rec.Paths() {
			a, _ := rec.Get(path)
			lp.res.Dumps = append(lp.res.Dumps, Activation{Name: fmt.Sprintf("%s.step%d.%s", lp.st.name, step, path), Shape: a.Shape, Data: a.Data})
		}
	}
	if !lp.cfg {
		return pred, nil
	}
	per := len(latents) / n
	return classifierFreeGuidance(pred[:n*per], pred[n*per:], lp.r.Guidance, lp.r.GuidanceRescale, n), nil
}

// timeIDs builds the add_time_ids rows the way each diffusers pipeline
// stacks them; without guidance both give pos x n. With guidance the
// img2img pipeline repeats each block ([neg x n; pos x n], matching the
// [uncond; text] halves of the batch) but the txt2img pipeline repeats the
// pair ([neg; pos] x n): with n > 1 and negative micro-conditioning that
// differs from the positive one, its unconditional and text halves both
// get neg, pos, neg, pos, ... — a quirk reproduced on purpose.
func (p *Pipeline) timeIDs(m *Model, r *Request, st *stage, height, width, n int, cfg bool) []float32 {
	pos, neg := stageTimeIDs(m, r, st, height, width)
	var out []float32
	switch {
	case !cfg:
		out = repeat(pos, n)
	case st.img2img:
		out = append(repeat(neg, n), repeat(pos, n)...)
	default:
		out = repeat(append(append([]float32(nil), neg...), pos...), n)
	}
	return out
}

// stageTimeIDs are one image's positive and negative add_time_ids.
func stageTimeIDs(m *Model, r *Request, st *stage, height, width int) (pos, neg []float32) {
	tp := unet.TimeIDParams{
		OriginalSize:           [2]int{height, width},
		CropsTopLeft:           r.CropsTopLeft,
		TargetSize:             [2]int{height, width},
		NegativeOriginalSize:   r.NegativeOriginalSize,
		NegativeCropsTopLeft:   r.NegativeCropsTopLeft,
		NegativeTargetSize:     r.NegativeTargetSize,
		AestheticScore:         unet.DefaultAestheticScore,
		NegativeAestheticScore: unet.DefaultNegativeAestheticScore,
	}
	if r.OriginalSize != nil {
		tp.OriginalSize = *r.OriginalSize
	}
	if r.TargetSize != nil {
		tp.TargetSize = *r.TargetSize
	}
	if r.AestheticScore != nil {
		tp.AestheticScore = *r.AestheticScore
	}
	if r.NegativeAestheticScore != nil {
		tp.NegativeAestheticScore = *r.NegativeAestheticScore
	}
	if st.img2img {
		return unet.Img2ImgTimeIDs(tp, m.RequiresAestheticsScore)
	}
	return unet.BaseTimeIDs(tp)
}

// setTextCompute makes m's text encoders compute in the pipeline's
// explicit precision (PrecisionAuto: their weights' dtype).
func (p *Pipeline) setTextCompute(m *Model) {
	var dt *tensor.DType
	if d, ok := p.Precision.dtype(); ok {
		dt = &d
	}
	for _, te := range []*clip.TextModel{m.Text.TextEncoder, m.Text.TextEncoder2} {
		if te != nil {
			te.Compute = dt
		}
	}
}

// activationDType is the dtype the UNet computes in for model m (see
// Pipeline.Precision).
func (p *Pipeline) activationDType(m *Model) tensor.DType {
	if dt, ok := p.Precision.dtype(); ok {
		return dt
	}
	if m.UNet.ConvIn == nil || m.UNet.ConvIn.Weight == nil {
		return tensor.F32
	}
	return m.UNet.ConvIn.Weight.DType()
}
