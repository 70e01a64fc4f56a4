package main

import (
	"context"
	"errors"
	"io"
)

// runBench is filled in with the CUDA benchmark.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("bench: not available yet")
}
