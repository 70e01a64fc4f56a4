// Command sdxl-run generates images with Stable Diffusion XL, reproducing
// Hugging Face diffusers.
//
//	sdxl-run --prompt "a photo of an astronaut riding a horse on mars" --out astronaut.png
//	sdxl-run --model stable-diffusion-xl-base-1.0 --refiner stable-diffusion-xl-refiner-1.0 \
//	         --device cuda --prompt "..." --out out.png
//	sdxl-run tokenize [--model PATH] TEXT
//	sdxl-run --verify-watermark FILE.png
//	sdxl-run bench --random-weights --device cuda --size 1024 --steps 30
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
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
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
