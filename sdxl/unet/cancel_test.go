package unet

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/tensor"
	"github.com/sdxl-go/sdxl/tensor/backendtest"
)

// TestForwardCancel: a context cancelled before the forward, or during it
// (from a recorder, after the mid block), stops the pass at its next op
// with context.Canceled, and every tensor it made is freed.
func TestForwardCancel(t *testing.T) {
	lb := backendtest.NewLive(cpu.New())
	u, err := LoadDir(lb, golden.Path(t, "small/models/sdxl-small-base/unet"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in := benchInput(lb, u, 2, 16, 16)
	lb.Reset()

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if out, err := u.Forward(ctx, lb, in, nil); !errors.Is(err, context.Canceled) || out != nil {
		t.Errorf("cancelled before: result %v, error %v", out, err)
	}
	if lb.Count() != 0 {
		t.Errorf("cancelled before: %d tensors left", lb.Count())
	}

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	stopped := false
	out, err := u.Forward(ctx, lb, in, nn.RecorderFunc(func(path string, _ *tensor.Tensor) {
		// A module reports its input before its first op.
		if stopped && !strings.HasSuffix(path, ".input") {
			t.Errorf("%s ran after the cancel", path)
		}
		if path == "mid_block" {
			cancel()
			stopped = true
		}
	}))
	if !errors.Is(err, context.Canceled) || out != nil || !stopped {
		t.Fatalf("cancelled in the mid block: result %v, error %v", out, err)
	}
	if lb.Count() != 0 || lb.Bytes != 0 {
		t.Errorf("cancelled in the mid block: %d tensors (%d bytes) left", lb.Count(), lb.Bytes)
	}
}

// TestConditionOnScope: Condition only reads its input's tensors, even
// when they are temporaries of the scope it runs on (a ControlNet
// pipeline's step inputs).
func TestConditionOnScope(t *testing.T) {
	b := cpu.New()
	u, err := LoadDir(b, golden.Path(t, "small/models/sdxl-small-base/unet"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := tensor.NewScope(b)
	defer s.Release()
	in := benchInput(s, u, 2, 8, 8)
	if _, _, err := u.Condition(s, nil, in); err != nil {
		t.Fatal(err)
	}
	for name, x := range map[string]*tensor.Tensor{"sample": in.Sample, "encoder_hidden_states": in.EncoderHiddenStates, "text_embeds": in.TextEmbeds} {
		if x.Storage == nil {
			t.Errorf("%s was freed", name)
		}
	}
}
