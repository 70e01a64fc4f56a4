package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/sdxl-go/sdxl/natsjobs"
	"github.com/sdxl-go/sdxl/server"
)

// workerFlags are the worker command's flags.
type workerFlags struct {
	modelFlags
	nats, modelID, prefix string
	maxDeliveries         int
	ackWait, drainTimeout time.Duration
	limitFlags
}

func newWorkerFlags(f *workerFlags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sdxl-run worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.modelFlags.register(fs)
	fs.StringVar(&f.nats, "nats", "", "the `URL` of the NATS server with JetStream to take jobs from (nats://HOST:4222); required")
	fs.StringVar(&f.modelID, "model-id", "", "subject token of this worker's jobs (default: from the base model's name)")
	fs.StringVar(&f.prefix, "prefix", natsjobs.DefaultPrefix, "names of the deployment's stream, buckets and subjects (the same for every worker and front end)")
	fs.IntVar(&f.maxDeliveries, "max-deliveries", natsjobs.DefaultMaxDeliveries, "attempts of a job before it fails with its last error")
	fs.DurationVar(&f.ackWait, "ack-wait", 30*time.Second, "a job of a worker silent this long goes to another worker")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", 60*time.Second, "on SIGINT or SIGTERM, the time the running job has to finish before it is handed back")
	f.limitFlags.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sdxl-run worker --nats URL [--model PATH] [--refiner PATH] [--lora-dir DIR] [--device cuda] [--model-id ID] ...\n\nflags:")
		fs.PrintDefaults()
	}
	return fs
}

// check validates the flags before anything is opened.
func (f *workerFlags) check(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return usageErr("worker: unexpected argument %q", fs.Arg(0))
	}
	if f.nats == "" {
		return usageErr("--nats URL is required: the NATS server to take jobs from (nats://HOST:4222)")
	}
	if err := f.modelFlags.check(); err != nil {
		return err
	}
	if f.modelID != "" && natsjobs.ModelID(f.modelID) != f.modelID {
		return usageErr("--model-id %q: use letters, digits, '-' and '_'", f.modelID)
	}
	if _, err := natsjobs.NamesFor(f.prefix); err != nil {
		return usageErr("--prefix %q: use letters, digits, '-' and '_'", f.prefix)
	}
	for _, v := range []struct {
		name string
		v    int
	}{{"max-deliveries", f.maxDeliveries}, {"max-pixels", f.maxPixels}, {"max-steps", f.maxSteps}, {"max-images", f.maxImages}} {
		if v.v <= 0 {
			return usageErr("--%s %d: must be more than 0", v.name, v.v)
		}
	}
	if f.ackWait < time.Second {
		return usageErr("--ack-wait %v: must be at least 1s", f.ackWait)
	}
	if f.drainTimeout <= 0 {
		return usageErr("--drain-timeout %v: must be more than 0", f.drainTimeout)
	}
	return nil
}

// runWorker connects to NATS, loads the models and takes jobs until
// SIGINT or SIGTERM; then it finishes its job (stored and acknowledged)
// or, past --drain-timeout, hands it back, and exits 130 or 143.
func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f workerFlags
	fs := newWorkerFlags(&f, stderr)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if err := f.check(fs); err != nil {
		return err
	}
	logger := log.New(stderr, "sdxl-run worker: ", log.LstdFlags)
	nc, err := connectNATS(f.nats, "sdxl-run worker", logger)
	if err != nil {
		return err
	}
	defer nc.Close()
	r, dev, err := f.openRunner(ctx, stderr, newProgress(stderr, false),
		f.limits(), "sdxl-run worker")
	if err != nil {
		return interrupted(ctx, err)
	}
	defer dev.close()
	names, _ := natsjobs.NamesFor(f.prefix)
	w, err := natsjobs.NewWorker(nc, r, natsjobs.WorkerConfig{Names: names, Model: f.modelID, MaxDeliveries: f.maxDeliveries,
		AckWait: f.ackWait, DrainTimeout: f.drainTimeout, Device: dev.describe(), Logf: logger.Printf,
		Models: func() []natsjobs.ModelInfo { return modelInfos(serverModels(r, f.bundledBase())) },
		LoRAs:  f.loraNames(logger)})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sdxl-run worker: %s takes the jobs of model %s from %s (stream %s)\n", w.ID(), w.Model(), f.nats, names.Stream)
	return f.serve(ctx, w, stderr)
}

// serve runs the worker. Once ctx is done the process waits for the
// drain (the signal handler's grace is held), so that the running job is
// either stored and acknowledged or handed back, never cut mid-store.
func (f *workerFlags) serve(ctx context.Context, w *natsjobs.Worker, stderr io.Writer) error {
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	defer holdWrites(ctx)()
	fmt.Fprintf(stderr, "sdxl-run worker: stopping: finishing the running job within %v (again to exit at once)\n", f.drainTimeout)
	if err := <-done; err != nil {
		return err
	}
	return &exitError{code: 130}
}

// modelInfos are the API's models as a worker advertises them.
func modelInfos(ms []server.Model) []natsjobs.ModelInfo {
	out := make([]natsjobs.ModelInfo, len(ms))
	for i, m := range ms {
		out[i] = natsjobs.ModelInfo{Role: m.Role, Name: m.Name, File: m.File, Hash: m.Hash, SHA256: m.SHA256}
	}
	return out
}

// loraNames lists the names of --lora-dir for the worker's WorkerInfo
// (nil without a folder).
func (f *workerFlags) loraNames(logger *log.Logger) func() []string {
	if f.loraDir == "" {
		return nil
	}
	return func() []string {
		files, err := server.ListLoRAs(f.loraDir)
		if err != nil {
			logger.Printf("listing --lora-dir %s: %v", f.loraDir, err)
		}
		names := make([]string, len(files))
		for i, l := range files {
			names[i] = l.Name
		}
		return names
	}
}
