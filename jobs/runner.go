package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/sdxl-go/sdxl/jobspec"
	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/sdxl/pngmeta"
)

// RunnerOptions describe the engine for the images' metadata.
type RunnerOptions struct {
	// BaseOnly is an engine over the same base model without the refiner
	// (sdxl.New(opts, e.Base(), nil)), for jobs that turn the refiner off;
	// nil when the engine has no refiner (or no base).
	BaseOnly *sdxl.Engine
	// Device and DType name the compute device in the run record.
	Device, DType string
	// Version is the program in the infotext ("sdxl-run v1.2.0").
	Version string
	// BaseName, when set, replaces the base model's name in the metadata
	// (the bundled model, whose folder is a cache path).
	BaseName string
	// Env is what jobs may use (limits, LoRA folder).
	Env jobspec.Env
	// Tool names the program in the images' run record ("sdxl-run
	// batch"); "" is "sdxl-run serve".
	Tool string
}

// Runner executes jobs on one engine and makes their PNGs. It runs one
// job at a time (the engine queues concurrent calls).
type Runner struct {
	engine *sdxl.Engine
	opt    RunnerOptions

	// hashes are the model files' hashes, set before ready closes.
	hashes pngmeta.Hashes
	ready  chan struct{}
}

// NewRunner returns a runner over e. It starts hashing the model files in
// the background (cached by package hashes) for the images' metadata.
func NewRunner(ctx context.Context, e *sdxl.Engine, opt RunnerOptions) *Runner {
	r := &Runner{engine: e, opt: opt, ready: make(chan struct{})}
	pending := pngmeta.HashFiles(ctx, e, nil)
	go func() {
		h := pending.Wait()
		if opt.BaseName != "" && len(h.Models) > 0 && h.Models[0].Role == "base" {
			h.Models[0].Name = opt.BaseName
		}
		r.hashes = h
		close(r.ready)
	}()
	return r
}

// Models describes the engine's models: with their hashes once computed,
// without them before.
func (r *Runner) Models() pngmeta.Hashes {
	select {
	case <-r.ready:
		return r.hashes
	default:
	}
	refs := pngmeta.ModelRefs(r.engine)
	if r.opt.BaseName != "" && len(refs) > 0 && refs[0].Role == "base" {
		refs[0].Name = r.opt.BaseName
	}
	return pngmeta.Hashes{Models: refs}
}

// Engine is the runner's engine (with every model).
func (r *Runner) Engine() *sdxl.Engine { return r.engine }

// Prepared is a checked job ready to run.
type Prepared struct {
	Spec     jobspec.Spec
	Request  sdxl.Request
	Warnings []string
	// baseOnly runs the job on RunnerOptions.BaseOnly.
	baseOnly bool
}

// Prepare normalizes and checks a job, decodes its images and lets the
// engine check the request: every mistake is a *jobspec.FieldError before
// the job is queued.
func (r *Runner) Prepare(spec jobspec.Spec) (*Prepared, error) {
	spec.Normalize()
	req, warnings, err := spec.Request(r.opt.Env)
	if err != nil {
		return nil, err
	}
	eng, baseOnly := r.engine, false
	if spec.Refiner != nil {
		switch {
		case *spec.Refiner && eng.Refiner() == nil:
			return nil, &jobspec.FieldError{Field: "refiner", Message: "no refiner is loaded (start sdxl-run serve, worker or batch with --refiner)"}
		case !*spec.Refiner && r.opt.BaseOnly != nil:
			eng, baseOnly = r.opt.BaseOnly, true
		case !*spec.Refiner && eng.Base() == nil:
			return nil, &jobspec.FieldError{Field: "refiner", Message: "the server has only a refiner: it cannot run without it"}
		}
	}
	ws, err := eng.Check(req)
	if err != nil {
		return nil, jobspec.FromEngine(err)
	}
	for _, w := range ws {
		warnings = append(warnings, w.Message)
	}
	return &Prepared{Spec: spec, Request: req, Warnings: warnings, baseOnly: baseOnly}, nil
}

// engineFor is the engine that runs p.
func (r *Runner) engineFor(p *Prepared) *sdxl.Engine {
	if p.baseOnly && r.opt.BaseOnly != nil {
		return r.opt.BaseOnly
	}
	return r.engine
}

// Output is one finished image.
type Output struct {
	PNG           []byte
	Seed          uint64
	Width, Height int
	Infotext      string
}

// Hooks follow a run.
type Hooks struct {
	// Batch returns the context of batch k (canceling it skips the batch);
	// nil runs every batch under the job's context.
	Batch func(ctx context.Context, k int) (context.Context, context.CancelFunc)
	// Progress gets the engine's events of batch k.
	Progress func(k int, ev sdxl.Event)
	// Images gets the images of batch k when it is done.
	Images func(k int, out []Output)
}

// Run runs the job's batches in order and returns their images. A
// cancelled ctx stops it within one step with an error wrapping
// sdxl.ErrCanceled, returning the images of the finished batches; a batch
// whose own context is cancelled (skipped) is left out and the next runs.
func (r *Runner) Run(ctx context.Context, p *Prepared, h Hooks) ([]Output, error) {
	var all []Output
	for k := 0; k < p.Spec.NIter; k++ {
		bctx, cancel := ctx, context.CancelFunc(func() {})
		if h.Batch != nil {
			bctx, cancel = h.Batch(ctx, k)
		}
		out, err := r.batch(bctx, p, k, h)
		cancel()
		if err != nil {
			if ctx.Err() == nil && bctx.Err() != nil {
				continue // skipped
			}
			return all, err
		}
		all = append(all, out...)
		if h.Images != nil {
			h.Images(k, out)
		}
	}
	return all, nil
}

// batch runs batch k and encodes its PNGs.
func (r *Runner) batch(ctx context.Context, p *Prepared, k int, h Hooks) ([]Output, error) {
	req := p.Request
	req.Seed = p.Spec.IterationSeed(k)
	if h.Progress != nil {
		req.Progress = func(ev sdxl.Event) error { h.Progress(k, ev); return nil }
	}
	start := time.Now()
	eng := r.engineFor(p)
	res, err := eng.Generate(ctx, req)
	if err == nil {
		err = ctx.Err() // a cancel after the decode still means "stop"
	}
	if err != nil {
		return nil, err
	}
	hs, err := r.modelHashes(ctx)
	if err != nil {
		return nil, err
	}
	return r.encode(p, eng, req, res, hs, time.Since(start))
}

// modelHashes waits for the model files' hashes (computed once).
func (r *Runner) modelHashes(ctx context.Context) (pngmeta.Hashes, error) {
	select {
	case <-r.ready:
		return r.hashes, nil
	case <-ctx.Done():
		return pngmeta.Hashes{}, fmt.Errorf("%w: %w", sdxl.ErrCanceled, ctx.Err())
	}
}

// record is the sdxl-run chunk of a server's image: the job as it ran.
type record struct {
	Tool      string               `json:"tool"`
	Version   string               `json:"version"`
	Go        string               `json:"go"`
	Date      string               `json:"date"`
	Device    string               `json:"device"`
	DType     string               `json:"dtype"`
	Job       jobspec.Spec         `json:"job"`
	Seed      uint64               `json:"seed"`
	Scheduler string               `json:"scheduler_class"`
	Timesteps []float64            `json:"timesteps"`
	Models    []pngmeta.ModelRef   `json:"models"`
	LoRAs     []pngmeta.LoRARecord `json:"loras,omitempty"`
	Files     []pngmeta.FileHash   `json:"model_files"`
	Seconds   float64              `json:"seconds"`
	Image     int                  `json:"image_index,omitempty"`
}

// encode makes the batch's PNGs with the parameters and the job record.
func (r *Runner) encode(p *Prepared, eng *sdxl.Engine, req sdxl.Request, res *sdxl.Result, hs pngmeta.Hashes, took time.Duration) ([]Output, error) {
	models := hs.Models
	if eng.Refiner() == nil {
		models = nil
		for _, m := range hs.Models {
			if m.Role == "base" {
				models = append(models, m)
			}
		}
	}
	imgs, err := imageio.FromNCHW(res.Images, res.ImageShape[:])
	if err != nil {
		return nil, err
	}
	params := pngmeta.Params(req, res, models, pngmeta.Options{Version: r.opt.Version})
	tool := r.opt.Tool
	if tool == "" {
		tool = "sdxl-run serve"
	}
	rec := record{Tool: tool, Version: r.opt.Version, Go: runtime.Version(),
		Date: time.Now().UTC().Format(time.RFC3339), Device: r.opt.Device, DType: r.opt.DType,
		Job: p.Spec.Record(), Seed: req.Seed, Scheduler: res.Scheduler, Timesteps: res.Timesteps,
		Models: models, LoRAs: pngmeta.LoRARecords(res.LoRAs), Files: hs.Files, Seconds: took.Seconds()}
	out := make([]Output, len(imgs))
	for i, img := range imgs {
		rec.Image = i
		chunks, err := pngmeta.Chunks(params, rec, len(imgs), i)
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		if err := imageio.EncodePNG(&buf, img, chunks); err != nil {
			return nil, err
		}
		b := img.Bounds()
		out[i] = Output{PNG: buf.Bytes(), Seed: req.Seed, Width: b.Dx(), Height: b.Dy(), Infotext: chunks[0].Value}
	}
	return out, nil
}

// canceled reports an error of a cancelled run.
func canceled(err error) bool {
	return errors.Is(err, sdxl.ErrCanceled) || errors.Is(err, context.Canceled)
}
