package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/sched"
	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/bundled"
)

// modelFlags choose the models and the device: every command that opens
// an engine (generate, serve, worker, batch) shares them.
type modelFlags struct {
	model, config, refiner, variant string
	device, dtype                   string
	offload                         bool
	loraDir                         string
	// oneShot is set by commands that run one request (not a flag): the
	// engine then frees the text encoders once the prompts are encoded.
	oneShot bool
}

func (m *modelFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&m.model, "model", "", "diffusers folder or single .safetensors checkpoint (default: the bundled small random-weight test model)")
	fs.StringVar(&m.config, "config", "", "diffusers folder whose configs and tokenizers describe a single-file --model (default: the real SDXL 1.0 configs)")
	fs.StringVar(&m.refiner, "refiner", "", "refiner model (folder or single file): with --model, an ensemble of experts; alone, refines --image")
	fs.StringVar(&m.variant, "variant", "", "weight-file variant of diffusers folders, e.g. fp16")
	fs.StringVar(&m.device, "device", "cpu", "compute device: cpu or cuda")
	fs.StringVar(&m.dtype, "dtype", "", "UNet and text-encoder precision: f32 or f16 (default: f32 on cpu, f16 on cuda)")
	fs.StringVar(&m.loraDir, "lora-dir", "", "folder of LoRA .safetensors files that prompt tags <lora:NAME:WEIGHT> load (AUTOMATIC1111's syntax, any --prompt-weighting); without it the tags stay in the prompt")
	fs.BoolVar(&m.offload, "offload", false, "keep the models in host memory and put only the running one on the GPU (for small GPUs; slower)")
}

// check validates the flags' own values before anything is opened.
func (m *modelFlags) check() error {
	switch m.device {
	case "cpu", "cuda":
	default:
		return usageErr("--device %q: want cpu or cuda", m.device)
	}
	switch m.dtype {
	case "", "f32", "f16", "float32", "float16", "fp32", "fp16", "half":
	default:
		return usageErr("--dtype %q: want f32 or f16", m.dtype)
	}
	if m.loraDir != "" {
		if st, err := os.Stat(m.loraDir); err != nil || !st.IsDir() {
			return usageErr("--lora-dir %s: not a folder", m.loraDir)
		}
	}
	return nil
}

// bundledBase says whether the run uses the bundled model as its base.
func (m *modelFlags) bundledBase() bool { return m.model == "" && m.refiner == "" }

// roles are the models the run will have (a --model that is really a
// refiner is found out once loaded).
func (m *modelFlags) roles(image bool) sdxl.Roles {
	return sdxl.Roles{Base: m.model != "" || m.bundledBase(), Refiner: m.refiner != "", Image: image}
}

// open opens the device and loads the models into an engine.
func (m *modelFlags) open(ctx context.Context, stderr io.Writer, prog *progress, limits sdxl.Limits) (*sdxl.Engine, *device, error) {
	e, dev, _, err := m.openWithOptions(ctx, stderr, prog, limits)
	return e, dev, err
}

// openWithOptions is open that also returns the engine's options (to make
// more engines over the same models: the server's base-only engine).
func (m *modelFlags) openWithOptions(ctx context.Context, stderr io.Writer, prog *progress, limits sdxl.Limits) (*sdxl.Engine, *device, sdxl.Options, error) {
	dev, err := openDevice(m.device, m.dtype)
	if err != nil {
		return nil, nil, sdxl.Options{}, err
	}
	opt := sdxl.Options{Backend: dev.b, Base: m.model, Refiner: m.refiner, ConfigDir: m.config, Variant: m.variant,
		DType: dev.dtype, Precision: dev.precision(), Limits: limits, LoRADir: m.loraDir,
		ReleaseTextEncoders: m.oneShot}
	if prog != nil {
		opt.LoadProgress = prog.load
	}
	if dev.cuda != nil {
		// --rng cuda on a GPU: torch's CUDA stream drawn on the device,
		// bit-exact with diffusers' torch.Generator("cuda").
		opt.CUDAGenerator = func(seed uint64) sched.Generator { return dev.cuda.NewTorchGenerator(seed) }
	}
	if m.offload {
		// Weights stay on the host (the CPU backend's memory) and visit the
		// device one component at a time.
		opt.Offload = cpu.New()
	}
	if m.bundledBase() {
		if opt.Base, err = bundled.Dir(); err != nil {
			dev.close()
			return nil, nil, opt, err
		}
		fmt.Fprintln(stderr, "note: using the bundled small random-weight test model (its images are noise); give --model with real SDXL weights for real pictures (see README)")
	}
	e, err := sdxl.Open(ctx, opt)
	if err != nil {
		dev.close()
		return nil, nil, opt, cliError(err)
	}
	return e, dev, opt, nil
}
