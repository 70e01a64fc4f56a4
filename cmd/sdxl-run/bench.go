package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/sdxl-go/sdxl/internal/opprof"
	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/memory"
	"github.com/sdxl-go/sdxl/tensor"
)

// benchFlags are the bench command's flags.
type benchFlags struct {
	random, refiner, profile bool
	model, device, dtype     string
	size, steps              int
}

func parseBench(args []string, stderr io.Writer) (*benchFlags, error) {
	f := &benchFlags{}
	fs := flag.NewFlagSet("sdxl-run bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&f.random, "random-weights", false, "build the real SDXL 1.0 configs with random weights (no files needed)")
	fs.StringVar(&f.model, "model", "", "benchmark a real model folder or single file instead")
	fs.BoolVar(&f.refiner, "refiner", false, "with --random-weights: add a random refiner and run the 0.8 ensemble")
	fs.StringVar(&f.device, "device", "cuda", "cpu or cuda")
	fs.StringVar(&f.dtype, "dtype", "", "f16 or f32 (default: f16 on cuda, f32 on cpu)")
	fs.IntVar(&f.size, "size", 1024, "image width and height")
	fs.IntVar(&f.steps, "steps", 30, "denoising steps")
	fs.BoolVar(&f.profile, "profile", false, "time each op of one extra UNet step (synchronising after every op)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usageErr("unexpected argument %q (bench takes only flags)", fs.Arg(0))
	}
	if !f.random && f.model == "" {
		return nil, usageErr("give --random-weights (real SDXL sizes, no files) or --model PATH")
	}
	if f.size%8 != 0 || f.size <= 0 || f.steps < 1 {
		return nil, usageErr("--size must be a positive multiple of 8 and --steps at least 1")
	}
	if int64(f.size)*int64(f.size) > benchMaxPixels {
		return nil, usageErr("--size %d: %dx%d is over bench's limit of %d pixels", f.size, f.size, f.size, benchMaxPixels)
	}
	return f, nil
}

// benchMaxPixels bounds --size: far beyond what generation allows (bench
// measures what does not fit too), but a size is still refused here rather
// than after building the models.
const benchMaxPixels = 1 << 30

// checkMemory estimates the run from the models' configs before anything
// is built and refuses one that cannot fit in this machine's memory (on
// the CPU; a GPU's memory is not known before it is opened).
func (f *benchFlags) checkMemory(dev *device) error {
	if f.device != "cpu" {
		return nil
	}
	var models []*memory.Model
	if f.random {
		for _, refiner := range []bool{false, true}[:1+boolInt(f.refiner)] {
			m, err := sdxl.RandomMemoryModel(refiner)
			if err != nil {
				return err
			}
			models = append(models, m)
		}
	} else {
		m, err := sdxl.FolderMemoryModel(f.model)
		if err != nil {
			return nil // a single file or a bad folder: loading says more
		}
		models = append(models, m)
	}
	r := memory.Request{Width: f.size, Height: f.size, Images: 1, Guidance: true,
		WeightBytes: dev.dtype.Size(), ComputeBytes: dev.dtype.Size(), VAEBytes: 4}
	if err := memory.Check(r, sdxl.HostMemoryBudget(), models...); err != nil {
		return usageErr("--size %d: %v", f.size, err)
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// runBench times a whole generation with the real SDXL sizes: text
// encoders, every UNet step (batch 2 with classifier-free guidance), the VAE
// decode, and reports step times, total time, peak GPU memory and, with
// --profile, each op's share of one UNet step.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseBench(args, stderr)
	if err != nil {
		return err
	}
	dev, err := openDevice(f.device, f.dtype)
	if err != nil {
		return err
	}
	defer dev.close()
	if err := f.checkMemory(dev); err != nil {
		return err
	}
	t0 := time.Now()
	opt, base, ref, err := f.models(dev)
	if err != nil {
		return err
	}
	e, err := sdxl.New(opt, base, ref)
	if err != nil {
		return cliError(err)
	}
	if err := dev.b.Err(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "device %s, dtype %s, %dx%d, %d steps, batch 2 (CFG); built in %.1fs\n", dev.describe(), dev.dtype, f.size, f.size, f.steps, time.Since(t0).Seconds())
	req := sdxl.Request{Prompt: "a photo of an astronaut riding a horse on mars", Width: f.size, Height: f.size,
		Steps: f.steps, Guidance: 5, Seed: 1, Scheduler: "euler"}
	if err := timeRun(ctx, e, req, dev, stdout); err != nil {
		return err
	}
	if !f.profile {
		return nil
	}
	opt.Backend = opprof.New(dev.b, dev.sync)
	pe, err := sdxl.New(opt, base, ref)
	if err != nil {
		return err
	}
	return profileStep(ctx, pe, req, stdout)
}

// models builds (or loads) the benchmarked models and the engine options.
func (f *benchFlags) models(dev *device) (opt sdxl.Options, base, ref *sdxl.Model, err error) {
	if f.model != "" {
		base, err = sdxl.LoadModel(dev.b, f.model, sdxl.LoadOptions{DType: dev.dtype})
	} else {
		base, err = sdxl.RandomModel(dev.b, false, dev.dtype, 1)
		if err == nil && f.refiner {
			ref, err = sdxl.RandomModel(dev.b, true, dev.dtype, 100)
		}
	}
	// Any size: measuring what does not fit is the point of some runs.
	opt = sdxl.Options{Backend: dev.b, Precision: dev.precision(), Limits: sdxl.Limits{MaxPixels: 1 << 30}}
	return opt, base, ref, err
}

// timeRun runs a one-step warm-up (kernels compiled, memory pool filled, as
// in a long-running server), then the timed run, and reports.
func timeRun(ctx context.Context, e *sdxl.Engine, req sdxl.Request, dev *device, stdout io.Writer) error {
	warm := req
	warm.Steps, warm.OutputLatents = 1, true
	if _, err := e.Generate(ctx, warm); err != nil {
		return err
	}
	var stepTimes []time.Duration
	start := time.Now()
	last := start
	req.Progress = func(ev sdxl.Event) error {
		if ev.Latents == nil {
			return nil // not a denoising step
		}
		now := time.Now()
		stepTimes = append(stepTimes, now.Sub(last))
		last = now
		return nil
	}
	if _, err := e.Generate(ctx, req); err != nil {
		return err
	}
	total := time.Since(start)
	if err := dev.b.Err(); err != nil {
		return err
	}
	reportSteps(stdout, stepTimes)
	fmt.Fprintf(stdout, "whole image (text + %d steps + VAE decode): %.2f s\n", req.Steps, total.Seconds())
	if pb := dev.peakBytes(); pb > 0 {
		fmt.Fprintf(stdout, "peak GPU memory (tensors and pool): %.2f GiB\n", float64(pb)/(1<<30))
	}
	return nil
}

// reportSteps prints the step-time statistics. The first interval also
// holds the text encoders; the mean leaves it out when there are others.
func reportSteps(stdout io.Writer, stepTimes []time.Duration) {
	st := append([]time.Duration(nil), stepTimes...)
	sort.Slice(st, func(i, j int) bool { return st[i] < st[j] })
	rest := stepTimes
	if len(rest) > 1 {
		rest = rest[1:]
	}
	var sum time.Duration
	for _, d := range rest {
		sum += d
	}
	fmt.Fprintf(stdout, "UNet step (forward + guidance + scheduler): median %.1f ms, mean %.1f ms (steps 2..n), min %.1f ms; first step incl. text encoders %.1f ms\n",
		ms(st[len(st)/2]), ms(sum)/float64(len(rest)), ms(st[0]), ms(stepTimes[0]))
}

// profileStep times each op of one step on a profiling backend.
func profileStep(ctx context.Context, e *sdxl.Engine, req sdxl.Request, stdout io.Writer) error {
	one := req
	one.Steps, one.Progress, one.OutputLatents = 1, nil, true
	if _, err := e.Generate(ctx, one); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "op time shares of one step (text encoders included; synchronised per op):")
	e.Backend().(*opprof.Backend).Report(stdout)
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

var _ tensor.Backend = (*opprof.Backend)(nil)
