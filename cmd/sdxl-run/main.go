// Command sdxl-run generates images with Stable Diffusion XL, reproducing
// Hugging Face diffusers.
//
//	sdxl-run --prompt "a photo of an astronaut riding a horse on mars" --out astronaut.png
//	sdxl-run --model stable-diffusion-xl-base-1.0 --refiner stable-diffusion-xl-refiner-1.0 \
//	         --device cuda --prompt "..." --out out.png
//	sdxl-run tokenize [--model PATH] TEXT
//	sdxl-run --verify-watermark FILE.png
//	sdxl-run bench --random-weights --device cuda --size 1024 --steps 30
//	sdxl-run serve [--listen 127.0.0.1:7860] [--model PATH] [--api-key KEY]
//	sdxl-run batch --in jobs.jsonl --out DIR [--model PATH]
//	sdxl-run worker --nats nats://HOST:4222 [--model PATH] [--device cuda]
//
// Without --model it uses a small random-weight SDXL embedded in the binary
// (its pictures are noise; it is there so the tool runs anywhere). Run
// `sdxl-run --help` for every flag.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"
)

func main() {
	os.Exit(runMain(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// graceAfterSignal is how long a run may take to stop after SIGINT or
// SIGTERM before the process exits anyway (a long step that does not look
// at the context, such as one big UNet or VAE forward): the whole exit
// stays within about 5 seconds.
const graceAfterSignal = 3 * time.Second

// runMain runs the command with the process's signal handling and the
// last-resort recovery. The first SIGINT or SIGTERM cancels the run, which
// stops at its next check and writes nothing; the exit status is then 130
// or 143 (128 + the signal). A run still busy graceAfterSignal later (and
// not placing its outputs) is abandoned; a second signal exits at once. A
// panic is an internal error: exit 3 with a request to report it.
func runMain(parent context.Context, args []string, stdout, stderr io.Writer) int {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	guard := &writeGuard{}
	ctx = context.WithValue(ctx, writeGuardKey{}, guard)
	done := make(chan int, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				fmt.Fprintf(stderr, "sdxl-run: internal error: %v\n%s\nThis is a bug in sdxl-run: please report it with the command line and this message.\n", r, debug.Stack())
				done <- 3
			}
		}()
		done <- run(ctx, args, stdout, stderr)
	}()
	var got os.Signal
	var grace <-chan time.Time
	for {
		select {
		case code := <-done:
			if got != nil && code != 0 {
				return signalCode(got)
			}
			return code
		case sig := <-sigs:
			if got != nil {
				fmt.Fprintf(stderr, "sdxl-run: %v again: exiting now\n", sig)
				return signalCode(got)
			}
			got = sig
			cancel()
			fmt.Fprintf(stderr, "sdxl-run: %v: stopping; no output will be written (again to exit at once)\n", sig)
			grace = time.After(graceAfterSignal)
		case <-grace:
			if guard.busy() {
				grace = time.After(100 * time.Millisecond) // outputs being placed: let it finish or undo
				continue
			}
			fmt.Fprintf(stderr, "sdxl-run: still busy %v after %v: exiting; no output was written\n", graceAfterSignal, got)
			return signalCode(got)
		}
	}
}

// signalCode is the conventional exit status of a process stopped by sig.
func signalCode(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 130
}

// writeGuard marks the time a run spends placing its outputs, when an exit
// would leave a temporary file behind.
type writeGuard struct {
	mu    sync.Mutex
	depth int
}

type writeGuardKey struct{}

func (g *writeGuard) busy() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.depth > 0
}

// holdWrites marks ctx's run as writing until the returned function is
// called.
func holdWrites(ctx context.Context) func() {
	g, ok := ctx.Value(writeGuardKey{}).(*writeGuard)
	if !ok {
		return func() {}
	}
	g.mu.Lock()
	g.depth++
	g.mu.Unlock()
	return func() {
		g.mu.Lock()
		g.depth--
		g.mu.Unlock()
	}
}

// exitError carries an exit status through run's callers.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

// run dispatches on the subcommand and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "tokenize":
			return runTokenize(args[1:], stdout, stderr)
		case "bench":
			return report(stderr, "sdxl-run bench", runBench(ctx, args[1:], stdout, stderr))
		case "serve":
			return report(stderr, "sdxl-run serve", runServe(ctx, args[1:], stdout, stderr))
		case "batch":
			return report(stderr, "sdxl-run batch", runBatch(ctx, args[1:], stdout, stderr))
		case "worker":
			return report(stderr, "sdxl-run worker", runWorker(ctx, args[1:], stdout, stderr))
		}
	}
	return report(stderr, "sdxl-run", runGenerate(ctx, args, stdout, stderr))
}

// report prints an error as one line and maps it to an exit status: 2 for
// usage errors, 130 for an interrupted run, 1 otherwise.
func report(stderr io.Writer, name string, err error) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.code != 0 {
			fmt.Fprintf(stderr, "%s: %v\n", name, ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	return 1
}

// stageHookKey carries a function called when a run reaches a stage
// ("text", "base", "refiner", "vae", "write"); only the signal tests set
// one.
type stageHookKey struct{}

func stageHook(ctx context.Context, stage string) {
	if f, ok := ctx.Value(stageHookKey{}).(func(string)); ok {
		f(stage)
	}
}
