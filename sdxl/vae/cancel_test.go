package vae

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/tensor"
	"github.com/sdxl-go/sdxl/tensor/backendtest"
)

// TestCancel: Decode and Moments stop at the first op after the context
// ends (cancelled before, or from a recorder during the pass) with
// context.Canceled and free every tensor they made.
func TestCancel(t *testing.T) {
	lb := backendtest.NewLive(cpu.New())
	v := loadSmall(t, lb)
	z := lb.Zeros(tensor.F32, 1, 4, 8, 8)
	x := lb.Zeros(tensor.F32, 1, 3, 64, 64)
	lb.Reset()
	run := map[string]func(context.Context, nn.Recorder) (*tensor.Tensor, error){
		"decode":  func(ctx context.Context, rec nn.Recorder) (*tensor.Tensor, error) { return v.Decode(ctx, lb, rec, z) },
		"moments": func(ctx context.Context, rec nn.Recorder) (*tensor.Tensor, error) { return v.Moments(ctx, lb, rec, x) },
	}
	for name, f := range run {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if out, err := f(ctx, nil); !errors.Is(err, context.Canceled) || out != nil || lb.Count() != 0 {
			t.Errorf("%s cancelled before: result %v, error %v, %d tensors left", name, out, err, lb.Count())
		}
		ctx, cancel = context.WithCancel(context.Background())
		stopped := false
		out, err := f(ctx, nn.RecorderFunc(func(path string, _ *tensor.Tensor) {
			if stopped && !strings.HasSuffix(path, ".input") {
				t.Errorf("%s: %s ran after the cancel", name, path)
			}
			if strings.HasSuffix(path, "mid_block") {
				cancel()
				stopped = true
			}
		}))
		if !errors.Is(err, context.Canceled) || out != nil || !stopped || lb.Count() != 0 {
			t.Errorf("%s cancelled after the mid block: result %v, error %v, %d tensors left", name, out, err, lb.Count())
		}
	}
}
