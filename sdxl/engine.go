package sdxl

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/sdxl-go/sdxl/sched"
	"github.com/sdxl-go/sdxl/sdxl/memory"
	"github.com/sdxl-go/sdxl/tensor"
)

// Options open an Engine.
type Options struct {
	// Backend computes (cpu.New(), cuda.New(0)).
	Backend tensor.Backend
	// Base and Refiner are model paths: diffusers folders or single
	// .safetensors checkpoints. Either may be empty. A refiner given as
	// Base (a model without the first text encoder) is used as the
	// refiner when Refiner is empty.
	Base, Refiner string
	// ConfigDir describes a single-file Base (see LoadOptions).
	ConfigDir string
	// Variant picks weight files ("fp16"), as diffusers' variant=.
	Variant string
	// DType is the weights' storage dtype (the VAE stays F32).
	DType tensor.DType
	// Precision is the UNet's compute dtype (PrecisionAuto: the weights').
	Precision Precision
	// Offload, when set, keeps the weights on this host backend and puts
	// each component on Backend only while it runs.
	Offload tensor.Backend
	// CUDAGenerator draws the "cuda" RNG stream on the device.
	CUDAGenerator func(seed uint64) sched.Generator
	// LoRADir is the folder prompt tags <lora:NAME:W> load
	// NAME.safetensors from ("": tags stay text, with a warning).
	LoRADir string
	// Limits bound what a request may ask for (zero: the defaults).
	Limits Limits
	// MemoryBudget bounds the memory a request may need on the compute
	// device, weights included, in bytes: a request whose estimate
	// (package memory) is larger is refused by Check with a message saying
	// what fits. 0 means the memory this process may use when the backend
	// computes in host memory (the CPU backend: the cgroup limit or the
	// available memory) and no check on other devices; negative turns the
	// check off.
	MemoryBudget int64
	// ReleaseTextEncoders frees the text encoders' weights once a
	// request's prompts are encoded: for an engine that serves one request
	// (the sdxl-run command). Later requests needing them fail.
	ReleaseTextEncoders bool
	// AutoTilePixels is the image size (width × height) above which the
	// engine tiles the VAE by itself, with a warning, when a request does
	// not ask for tiling: 0 means DefaultAutoTilePixels on the CPU backend
	// and never on others (there the memory budget decides); negative
	// never. Whatever this says, a request whose untiled VAE would not fit
	// in MemoryBudget but whose tiled one would is tiled.
	AutoTilePixels int
	// LoadProgress reports weight loading: component, tensors done, total.
	LoadProgress func(component string, done, total int)
}

// Limits bound requests, so that a mistake or a hostile client is refused
// in Check instead of running out of memory or for days.
type Limits struct {
	// MaxPixels bounds width × height of an image (DefaultMaxPixels).
	MaxPixels int
	// MaxSteps bounds the denoising steps (DefaultMaxSteps).
	MaxSteps int
	// MaxImages bounds NumImages (DefaultMaxImages).
	MaxImages int
}

// Default limits: 4096×4096 pixels, 1000 steps (the training schedule's
// length), 64 images per request.
const (
	DefaultMaxPixels = 4096 * 4096
	DefaultMaxSteps  = 1000
	DefaultMaxImages = 64
)

func (l Limits) withDefaults() Limits {
	if l.MaxPixels <= 0 {
		l.MaxPixels = DefaultMaxPixels
	}
	if l.MaxSteps <= 0 {
		l.MaxSteps = DefaultMaxSteps
	}
	if l.MaxImages <= 0 {
		l.MaxImages = DefaultMaxImages
	}
	return l
}

// Engine holds loaded models on a backend and serves requests one at a
// time: every front end (CLI, HTTP server, worker, batch) maps its inputs
// to a Request, calls Check for a quick answer and Generate for the work.
// It is safe for concurrent use; concurrent Generate calls queue.
type Engine struct {
	mu     sync.Mutex
	p      Pipeline
	limits Limits
	// mem describes the models for memory estimates; budget is the
	// resolved Options.MemoryBudget (<= 0: no check).
	mem    []*memory.Model
	budget int64
	// autoTilePx is the resolved Options.AutoTilePixels (-1: by memory only).
	autoTilePx int
}

// Open loads the models of opt and returns an engine serving them.
func Open(ctx context.Context, opt Options) (*Engine, error) {
	if opt.Backend == nil {
		return nil, errors.New("sdxl: Options.Backend is nil")
	}
	if opt.Base == "" && opt.Refiner == "" {
		return nil, errors.New("sdxl: no model given (Options.Base or Options.Refiner)")
	}
	loadOn := opt.Backend
	if opt.Offload != nil {
		loadOn = opt.Offload
	}
	lo := LoadOptions{DType: opt.DType, Variant: opt.Variant, ConfigDir: opt.ConfigDir, Progress: opt.LoadProgress}
	var base, refiner *Model
	var err error
	if opt.Base != "" {
		if base, err = LoadModel(loadOn, opt.Base, lo); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opt.Refiner != "" {
		lo.ConfigDir = ""
		if refiner, err = LoadModel(loadOn, opt.Refiner, lo); err != nil {
			return nil, err
		}
	}
	return New(opt, base, refiner)
}

// New returns an engine over models already loaded on opt.Backend (or on
// opt.Offload); opt's paths are ignored. It settles the models' roles: a
// refiner given as base becomes the refiner when there is no other.
func New(opt Options, base, refiner *Model) (*Engine, error) {
	if opt.Backend == nil {
		return nil, errors.New("sdxl: Options.Backend is nil")
	}
	if base != nil && base.IsRefiner() {
		if refiner != nil {
			return nil, &ModelError{Role: "base", Path: base.Path, Reason: "is a refiner (no first text encoder): with a refiner, the base must be a base model"}
		}
		base, refiner = nil, base
	}
	if refiner != nil && !refiner.IsRefiner() {
		return nil, &ModelError{Role: "refiner", Path: refiner.Path, Reason: "has two text encoders: it is a base model, not a refiner"}
	}
	if base == nil && refiner == nil {
		return nil, errors.New("sdxl: no model")
	}
	e := &Engine{limits: opt.Limits.withDefaults(), budget: memoryBudget(opt), autoTilePx: autoTilePixels(opt)}
	e.p = Pipeline{Backend: opt.Backend, Base: base, Refiner: refiner, Precision: opt.Precision,
		Offload: opt.Offload, CUDAGenerator: opt.CUDAGenerator, LoRADir: opt.LoRADir,
		ReleaseTextEncoders: opt.ReleaseTextEncoders}
	e.p.loraFiles() // made before any concurrent Check
	for _, m := range []*Model{base, refiner} {
		if m != nil {
			e.mem = append(e.mem, memoryModel(m))
		}
	}
	return e, nil
}

// ModelError says a model cannot play the role it was given.
type ModelError struct {
	Role   string // "base" or "refiner"
	Path   string
	Reason string
}

func (e *ModelError) Error() string { return fmt.Sprintf("%s model %s %s", e.Role, e.Path, e.Reason) }

// Base and Refiner return the engine's models (nil when absent).
func (e *Engine) Base() *Model    { return e.p.Base }
func (e *Engine) Refiner() *Model { return e.p.Refiner }

// Backend is the engine's compute backend.
func (e *Engine) Backend() tensor.Backend { return e.p.Backend }

// Limits are the engine's request limits.
func (e *Engine) Limits() Limits { return e.limits }

// Check validates req without running it: a *FieldError names the field
// at fault; warnings say what the run will do differently than asked.
func (e *Engine) Check(req Request) ([]Warning, error) {
	pl, err := e.plan(req)
	if err != nil {
		return nil, err
	}
	return pl.warnings, nil
}

// Generate checks and runs req. Progress events go to req.Progress;
// cancelling ctx stops the run between steps (and inside long UNet and VAE
// forwards) with an error wrapping context.Canceled, and no result.
func (e *Engine) Generate(ctx context.Context, req Request) (*Result, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := canceled(ctx); err != nil {
		return nil, err
	}
	pl, err := e.plan(req)
	if err != nil {
		return nil, err
	}
	return e.p.run(ctx, pl)
}

// plan is the pipeline's plan within the engine's limits.
func (e *Engine) plan(req Request) (*plan, error) {
	pl, err := e.p.plan(req)
	if err != nil {
		return nil, err
	}
	if err := e.checkLimits(&pl.req); err != nil {
		return nil, err
	}
	if err := e.autoTile(pl); err != nil {
		return nil, err
	}
	return pl, e.checkMemory(pl)
}

func (e *Engine) checkLimits(r *Request) error {
	l := e.limits
	if px := r.Width * r.Height; px > l.MaxPixels {
		side := isqrt(l.MaxPixels) / 8 * 8
		return fieldErr("Width", nil, "%dx%d is %d pixels, over this engine's limit of %d (%dx%d fits)", r.Width, r.Height, px, l.MaxPixels, side, side)
	}
	if r.Steps > l.MaxSteps {
		return fieldErr("Steps", r.Steps, "over this engine's limit of %d", l.MaxSteps)
	}
	if r.NumImages > l.MaxImages {
		return fieldErr("NumImages", r.NumImages, "over this engine's limit of %d images per request", l.MaxImages)
	}
	return nil
}

func isqrt(n int) int { return int(math.Sqrt(float64(n))) }
