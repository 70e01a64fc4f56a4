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
	"github.com/sdxl-go/sdxl/tensor"
)

// runBench times a whole generation with the real SDXL sizes: text
// encoders, every UNet step (batch 2 with classifier-free guidance), the VAE
// decode, and reports step times, total time, peak GPU memory and, with
// --profile, each op's share of one UNet step.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sdxl-run bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	random := fs.Bool("random-weights", false, "build the real SDXL 1.0 configs with random weights (no files needed)")
	model := fs.String("model", "", "benchmark a real model folder or single file instead")
	refiner := fs.Bool("refiner", false, "with --random-weights: add a random refiner and run the 0.8 ensemble")
	device := fs.String("device", "cuda", "cpu or cuda")
	dtype := fs.String("dtype", "", "f16 or f32 (default: f16 on cuda, f32 on cpu)")
	size := fs.Int("size", 1024, "image width and height")
	steps := fs.Int("steps", 30, "denoising steps")
	profile := fs.Bool("profile", false, "time each op of one extra UNet step (synchronising after every op)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if !*random && *model == "" {
		return usageErr("give --random-weights (real SDXL sizes, no files) or --model PATH")
	}
	if *size%8 != 0 || *size <= 0 || *steps < 1 {
		return usageErr("--size must be a positive multiple of 8 and --steps at least 1")
	}
	dev, err := openDevice(*device, *dtype)
	if err != nil {
		return err
	}
	defer dev.close()
	t0 := time.Now()
	p := &sdxl.Pipeline{Backend: dev.b, DType: dev.dtype}
	if *model != "" {
		p.Base, err = sdxl.LoadModel(dev.b, *model, sdxl.LoadOptions{DType: dev.dtype})
	} else {
		p.Base, err = sdxl.RandomModel(dev.b, false, dev.dtype, 1)
		if err == nil && *refiner {
			p.Refiner, err = sdxl.RandomModel(dev.b, true, dev.dtype, 100)
		}
	}
	if err != nil {
		return err
	}
	if err := dev.b.Err(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "device %s, dtype %s, %dx%d, %d steps, batch 2 (CFG); built in %.1fs\n", dev.describe(), dev.dtype, *size, *size, *steps, time.Since(t0).Seconds())

	var stepTimes []time.Duration
	last := time.Now()
	req := sdxl.Request{
		Prompt: "a photo of an astronaut riding a horse on mars", Width: *size, Height: *size, Steps: *steps,
		Guidance: 5, Seed: 1, Scheduler: "euler",
		Progress: func(sdxl.Progress) error {
			now := time.Now()
			stepTimes = append(stepTimes, now.Sub(last))
			last = now
			return nil
		},
	}
	// A warm-up run compiles kernels and fills the memory pool, as a
	// long-running server would be; it is one step only.
	warm := req
	warm.Steps, warm.Progress, warm.OutputLatents = 1, nil, true
	if _, err := p.Generate(ctx, warm); err != nil {
		return err
	}
	start := time.Now()
	last = start
	if _, err := p.Generate(ctx, req); err != nil {
		return err
	}
	total := time.Since(start)
	if err := dev.b.Err(); err != nil {
		return err
	}
	st := append([]time.Duration(nil), stepTimes...)
	sort.Slice(st, func(i, j int) bool { return st[i] < st[j] })
	// The first interval also holds the text encoders; the mean leaves it
	// out when there are other steps.
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
	fmt.Fprintf(stdout, "whole image (text + %d steps + VAE decode): %.2f s\n", *steps, total.Seconds())
	if pb := dev.peakBytes(); pb > 0 {
		fmt.Fprintf(stdout, "peak GPU memory (tensors and pool): %.2f GiB\n", float64(pb)/(1<<30))
	}
	if *profile {
		prof := opprof.New(dev.b, dev.sync)
		pp := *p
		pp.Backend = prof
		one := req
		one.Steps, one.Progress, one.OutputLatents = 1, nil, true
		if _, err := pp.Generate(ctx, one); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "op time shares of one step (text encoders included; synchronised per op):")
		prof.Report(stdout)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

var _ tensor.Backend = (*opprof.Backend)(nil)
