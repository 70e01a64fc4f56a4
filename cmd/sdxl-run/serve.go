package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/jobspec"
	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/bundled"
	"github.com/sdxl-go/sdxl/server"
)

// serveFlags are the serve command's flags.
type serveFlags struct {
	modelFlags
	listen, apiKey, cors, outputDir string
	nats, prefix, modelID           string
	insecure                        bool
	limitFlags
	maxQueue, keep int
	maxBody        int64
}

func newServeFlags(f *serveFlags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sdxl-run serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.modelFlags.register(fs)
	fs.StringVar(&f.listen, "listen", "127.0.0.1:7860", "address to serve on (HOST:PORT; port 0 picks a free one)")
	fs.StringVar(&f.apiKey, "api-key", os.Getenv("SDXL_API_KEY"), "require this key (Authorization: Bearer KEY, or Basic with KEY as password); default $SDXL_API_KEY")
	fs.BoolVar(&f.insecure, "insecure", false, "allow a non-loopback --listen without --api-key")
	fs.StringVar(&f.cors, "cors-origin", "", "allow cross-origin requests from this origin (* for any); default none")
	fs.IntVar(&f.maxQueue, "max-queue", 16, "jobs that may wait; more are refused with 429 and Retry-After")
	f.limitFlags.register(fs)
	fs.Int64Var(&f.maxBody, "max-body", 64<<20, "largest request body in bytes")
	fs.StringVar(&f.outputDir, "output-dir", "", "also write every image to this folder (PNG with metadata; never replacing a file)")
	fs.IntVar(&f.keep, "keep", 64, "finished jobs whose images stay available (the gallery)")
	fs.StringVar(&f.nats, "nats", "", "be a front end of sdxl-run workers over the NATS server with JetStream at this `URL` (nats://HOST:4222): no model is loaded here")
	fs.StringVar(&f.prefix, "prefix", "", "with --nats: the deployment's name prefix (streams, buckets, subjects; default SDXL)")
	fs.StringVar(&f.modelID, "model-id", "", "with --nats: the workers' model id to send jobs to (default: the one the live workers serve)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sdxl-run serve [--listen 127.0.0.1:7860] [--model PATH] [--refiner PATH] [--lora-dir DIR] [--api-key KEY] ...\n       sdxl-run serve --nats URL [--listen ...] [--api-key KEY] ...   (a front end of NATS workers)\n\nflags:")
		fs.PrintDefaults()
	}
	return fs
}

// check validates the flags before any model is loaded.
func (f *serveFlags) check(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return usageErr("serve: unexpected argument %q", fs.Arg(0))
	}
	if err := f.modelFlags.check(); err != nil {
		return err
	}
	if err := f.checkNATS(fs); err != nil {
		return err
	}
	if err := server.CheckListen(f.listen, f.apiKey, f.insecure); err != nil {
		return usageErr("--listen %v", err)
	}
	for _, v := range []struct {
		name string
		v    int64
	}{{"max-queue", int64(f.maxQueue)}, {"max-pixels", int64(f.maxPixels)}, {"max-steps", int64(f.maxSteps)},
		{"max-images", int64(f.maxImages)}, {"max-body", f.maxBody}, {"keep", int64(f.keep)}} {
		if v.v <= 0 {
			return usageErr("--%s %d: must be more than 0", v.name, v.v)
		}
	}
	if f.outputDir != "" {
		if st, err := os.Stat(f.outputDir); err != nil || !st.IsDir() {
			return usageErr("--output-dir %s: not a folder", f.outputDir)
		}
	}
	return nil
}

// runServe loads the models once and serves until SIGINT or SIGTERM:
// then it stops accepting, cancels the queued and running jobs (the
// running one stops within a step, writing nothing) and exits 0.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f serveFlags
	fs := newServeFlags(&f, stderr)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if err := f.check(fs); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %v", f.listen, err)
	}
	defer ln.Close()
	cfg, closeFn, err := f.start(ctx, stderr)
	if err != nil {
		return interrupted(ctx, err)
	}
	defer closeFn()
	svc := cfg.Jobs
	logger := log.New(stderr, "sdxl-run serve: ", log.LstdFlags)
	cfg.Version, cfg.Limits, cfg.APIKey, cfg.CORSOrigin = "sdxl-run "+version(), f.limits(), f.apiKey, f.cors
	cfg.MaxBodyBytes, cfg.Logf = f.maxBody, logger.Printf
	srv := &http.Server{Handler: server.New(cfg), ReadHeaderTimeout: 30 * time.Second, ErrorLog: logger}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "sdxl-run serve: open http://%s/ (AUTOMATIC1111 API under /sdapi/v1, OpenAI under /v1/images, jobs under /v1/jobs)\n", ln.Addr())
	select {
	case err := <-served:
		svc.Close(context.Background())
		return err
	case <-ctx.Done():
	}
	return f.shutdown(ctx, srv, svc, stderr)
}

// shutdown stops the server: no new connections, the jobs cancelled (the
// running one within a step), then the open requests end.
func (f *serveFlags) shutdown(ctx context.Context, srv *http.Server, svc jobs.Service, stderr io.Writer) error {
	defer holdWrites(ctx)() // the process waits for this (a second signal exits at once)
	if f.nats != "" {
		fmt.Fprintln(stderr, "sdxl-run serve: stopping (the jobs go on in the workers)")
	} else {
		fmt.Fprintln(stderr, "sdxl-run serve: stopping: cancelling the jobs (again to exit at once)")
	}
	stopped := make(chan error, 1)
	go func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- srv.Shutdown(c)
	}()
	if err := svc.Close(context.Background()); err != nil {
		return err
	}
	if err := <-stopped; err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	srv.Close()
	return nil
}

// start opens the engine (and a base-only one when a refiner is loaded)
// and starts the job workers, or with --nats connects the front end to
// the workers. It fills the server config's jobs, models and LoRAs; the
// function it returns releases the device or connection.
func (f *serveFlags) start(ctx context.Context, stderr io.Writer) (server.Config, func(), error) {
	if f.nats != "" {
		return f.startNATS(ctx, stderr)
	}
	r, dev, err := f.modelFlags.openRunner(ctx, stderr, newProgress(stderr, false), f.limits(), "sdxl-run serve")
	if err != nil {
		return server.Config{}, nil, err
	}
	logger := log.New(stderr, "sdxl-run serve: ", log.LstdFlags)
	svc := jobs.NewLocal(jobs.Config{MaxQueue: f.maxQueue, Keep: f.keep, OutputDir: f.outputDir, Logf: logger.Printf}, r)
	models := func() []server.Model { return serverModels(r, f.bundledBase()) }
	return server.Config{Jobs: svc, Models: models, LoRADir: f.loraDir}, dev.close, nil
}

// openRunner opens the engine within limits (and a base-only one when a
// refiner is loaded, for jobs that turn the refiner off) and returns a
// job runner over it whose images name tool in their run record: the
// engine of every command that runs jobs (serve, worker, batch).
func (m *modelFlags) openRunner(ctx context.Context, stderr io.Writer, prog *progress, limits jobspec.Limits, tool string) (*jobs.Runner, *device, error) {
	e, dev, opt, err := m.openWithOptions(ctx, stderr, prog, sdxl.Limits{MaxPixels: limits.MaxPixels, MaxSteps: limits.MaxSteps, MaxImages: limits.MaxImages})
	if err != nil {
		return nil, nil, err
	}
	prog.doneLoading()
	ro := jobs.RunnerOptions{Device: dev.describe(), DType: dev.dtype.String(), Version: "sdxl-run " + version(),
		Env: jobspec.Env{Limits: limits, LoRAs: m.loraDir != ""}, Tool: tool}
	if m.bundledBase() {
		ro.BaseName = bundled.Name
	}
	if e.Base() != nil && e.Refiner() != nil {
		if ro.BaseOnly, err = sdxl.New(opt, e.Base(), nil); err != nil {
			dev.close()
			return nil, nil, err
		}
	}
	return jobs.NewRunner(context.Background(), e, ro), dev, nil
}

// serverModels describes the runner's models for the API.
func serverModels(r *jobs.Runner, bundledBase bool) []server.Model {
	h := r.Models()
	sums := map[string]string{}
	for _, fh := range h.Files {
		sums[fh.Path] = fh.SHA256
	}
	var out []server.Model
	for _, m := range h.Models {
		file := filepath.Base(m.Path)
		if bundledBase && m.Role == "base" {
			file = bundled.Name
		}
		out = append(out, server.Model{Role: m.Role, Name: m.Name, File: file, Hash: m.Hash, SHA256: sums[m.HashOf]})
	}
	return out
}
