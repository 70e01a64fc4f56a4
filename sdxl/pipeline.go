// Package sdxl runs Stable Diffusion XL pipelines the way Hugging Face
// diffusers does: StableDiffusionXLPipeline (text to image, optionally
// stopping at denoising_end), StableDiffusionXLImg2ImgPipeline (image to
// image and the refiner, optionally starting at denoising_start), their
// combination, the base + refiner "ensemble of experts", and with
// Request.ControlNets StableDiffusionXLControlNetPipeline and its img2img
// variant (one or several ControlNets, see ControlNet).
//
// Front ends (the sdxl-run command, servers, workers) use an Engine: opened
// once with its models on a backend, it validates requests (Check), runs
// them one at a time (Generate) with progress events, latent previews and
// cancellation through the context. A Pipeline is the engine's core: a
// backend and up to two models, one diffusers call per Generate, without
// limits or locking; researchers and tests may use it directly.
//
// With the CPU backend and torch's CPU generator it reproduces diffusers'
// float32 results (see the golden tests); the same code runs on CUDA.
package sdxl

import (
	"context"
	"errors"
	"fmt"

	"github.com/sdxl-go/sdxl/sched"
	"github.com/sdxl-go/sdxl/sched/torchrand"
	"github.com/sdxl-go/sdxl/sdxl/vae"
	"github.com/sdxl-go/sdxl/sdxl/watermark"
	"github.com/sdxl-go/sdxl/tensor"
)

// Pipeline is a backend with a base model, a refiner, or both.
type Pipeline struct {
	Backend tensor.Backend
	Base    *Model
	Refiner *Model
	// Precision is the dtype of the UNet's activations; the zero value,
	// PrecisionAuto, follows the UNet's weights (a model loaded in F16
	// runs in F16, as diffusers does with torch_dtype=float16, instead of
	// converting its weights at every layer).
	Precision Precision
	// Offload, when set, is the host backend the models were loaded on:
	// each component's weights are copied to Backend only while it runs
	// (see onDevice), trading upload time for GPU memory.
	Offload tensor.Backend

	// LoRADir, when set, is the folder prompt tags <lora:NAME:W> load
	// NAME.safetensors from (see LoRA); without it the tags stay text.
	LoRADir string

	// CUDAGenerator, when set, provides the RNG "cuda" stream. The CUDA
	// backend's device generator (cuda.Backend.NewTorchGenerator) draws it
	// with the GPU's own math and so matches torch.Generator("cuda") bit for
	// bit; without it sched/torchrand's host emulation is used (equal to
	// about 1e-6).
	CUDAGenerator func(seed uint64) sched.Generator

	// ReleaseTextEncoders frees each model's text encoders as soon as its
	// prompts are encoded, for a pipeline that serves one request (the
	// CLI): their weights (3.3 GB for the SDXL base in f32) are then not
	// held through the denoising. Later requests that need them fail.
	ReleaseTextEncoders bool

	// newGen, when set, replaces newGenerator (tests record the draws).
	newGen func(kind string, seed uint64) sched.Generator
	// loraCache holds the LoRA files prompt tags loaded (loraFiles).
	loraCache *loraFileCache
}

// ErrCanceled is returned (wrapped together with the context's error, so
// errors.Is(err, context.Canceled) holds too) when the context ends a run.
var ErrCanceled = errors.New("generation canceled")

// canceled wraps the context's error, or returns nil while it is live.
func canceled(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrCanceled, err)
	}
	return nil
}

// Generate runs the request: Check's validation, then every stage, then
// the VAE decode and the watermark.
func (p *Pipeline) Generate(ctx context.Context, req Request) (*Result, error) {
	pl, err := p.plan(req)
	if err != nil {
		return nil, err
	}
	return p.run(ctx, pl)
}

// Check validates req against the pipeline's models without running
// anything, returning what the run would warn about.
func (p *Pipeline) Check(req Request) ([]Warning, error) {
	pl, err := p.plan(req)
	if err != nil {
		return nil, err
	}
	return pl.warnings, nil
}

// ImageSize returns the width and height in pixels that Generate would
// produce for req (its defaults applied), without running anything.
func (p *Pipeline) ImageSize(req Request) (width, height int, err error) {
	pl, err := p.plan(req)
	if err != nil {
		return 0, 0, err
	}
	return pl.req.Width, pl.req.Height, nil
}

// generator returns the torch-compatible generator of a run.
func (p *Pipeline) generator(kind string, seed uint64) sched.Generator {
	switch {
	case p.newGen != nil:
		return p.newGen(kind, seed)
	case kind == "cuda" && p.CUDAGenerator != nil:
		return p.CUDAGenerator(seed)
	}
	return newGenerator(kind, seed)
}

// newGenerator is torch's generator emulated on the host.
func newGenerator(kind string, seed uint64) sched.Generator {
	if kind == "cuda" {
		return torchrand.NewCUDA(seed)
	}
	return torchrand.NewCPU(seed)
}

// run executes a plan.
func (p *Pipeline) run(ctx context.Context, pl *plan) (*Result, error) {
	req := &pl.req
	gen := p.generator(req.RNG, req.Seed)
	res := &Result{Warnings: pl.warnings, LoRAs: req.LoRAs}
	if err := p.applyLoRAs(ctx, pl); err != nil {
		return nil, err
	}
	tr := newTracker(req.Progress, pl)
	var latents []float32
	var shape [4]int
	for i, st := range pl.stages {
		if i > 0 {
			st.image, st.imageShape = latents, shape[:]
			res.BaseLatents = latents
		}
		var err error
		if latents, shape, err = p.runStage(ctx, req, st, gen, res, tr); err != nil {
			return nil, err
		}
	}
	res.Latents, res.LatentShape = latents, shape
	last := pl.stages[len(pl.stages)-1]
	if last.latentOutput {
		return res, nil
	}
	img, ishape, err := p.decodeStage(ctx, last, latents, shape, tr)
	if err != nil {
		return nil, err
	}
	if pl.watermark {
		if err := watermark.Apply(img, ishape[:]); err != nil {
			return nil, err
		}
	}
	// A run cancelled during the decode returns nothing, so that a front
	// end never writes the image of a run the user stopped.
	if err := canceled(ctx); err != nil {
		return nil, err
	}
	res.Images, res.ImageShape = img, ishape
	return res, nil
}

// decodeStage runs the VAE decoder of the last stage's model (in float32:
// SDXL's VAE overflows in fp16) with its progress events: one per tile
// with tiling.
func (p *Pipeline) decodeStage(ctx context.Context, st *stage, latents []float32, shape [4]int, tr *tracker) ([]float32, [4]int, error) {
	m := st.model
	tiles := 1
	if st.tiling != nil {
		tiles = m.VAE.DecodeTiles(shape[2], shape[3], *st.tiling)
	}
	if err := tr.stage(StageVAE, tiles); err != nil {
		return nil, [4]int{}, err
	}
	if err := canceled(ctx); err != nil {
		return nil, [4]int{}, err
	}
	var img []float32
	var ishape [4]int
	err := p.onDevice(func() (err error) {
		img, ishape, err = p.decode(ctx, m, latents, shape, st.tiling, tr)
		return err
	}, m.VAE)
	if err != nil {
		return nil, ishape, err
	}
	return img, ishape, tr.decoded()
}

// decode runs the VAE decoder on scaled latents, in tiles with tiling.
func (p *Pipeline) decode(ctx context.Context, m *Model, latents []float32, shape [4]int, tiling *vae.Tiling, tr *tracker) ([]float32, [4]int, error) {
	s := tensor.NewScope(p.Backend)
	defer s.Release()
	u := m.VAE.Unscale(s, s.FromFloat32(tensor.F32, tensor.Shape(shape[:]), latents))
	var img *tensor.Tensor
	var err error
	if tiling != nil {
		t := *tiling
		t.Progress = func(done, total int) error {
			if done < total { // the last tile is the decode's end (decoded)
				return tr.tile(done)
			}
			return nil
		}
		img, err = m.VAE.DecodeTiled(ctx, s, u, t)
	} else {
		img, err = m.VAE.Decode(ctx, s, nil, u)
	}
	if cerr := canceled(ctx); err != nil && cerr != nil {
		return nil, [4]int{}, cerr
	}
	if err != nil {
		return nil, [4]int{}, err
	}
	is := img.Shape()
	out := s.ToFloat32(img)
	if err := sched.CheckFinite(out, string(StageVAE), "the decoded image", sched.CauseModel); err != nil {
		return nil, [4]int{}, err
	}
	return out, [4]int{is[0], is[1], is[2], is[3]}, nil
}
