package sdxl

import (
	"context"
	"errors"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/tensor"
)

// convCounter is the CPU backend calling at(n) before its n-th Conv2D.
type convCounter struct {
	*cpu.Backend
	n  int
	at func(n int)
}

func (c *convCounter) Conv2D(x, w, b *tensor.Tensor, stride, padding int) *tensor.Tensor {
	c.n++
	c.at(c.n)
	return c.Backend.Conv2D(x, w, b, stride, padding)
}

// TestCancelInsideForward: a cancel in the middle of a UNet forward (the
// text encoders have no convolutions, so the 5th is the first step's)
// ends the run at the next op, with both ErrCanceled and context.Canceled,
// and no further convolution runs.
func TestCancelInsideForward(t *testing.T) {
	b := cpu.New()
	base, _ := loadSmall(t, b, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cb := &convCounter{Backend: b, at: func(n int) {
		if n == 5 {
			cancel()
		}
	}}
	p := &Pipeline{Backend: cb, Base: base}
	res, err := p.Generate(ctx, Request{Prompt: "a lion", Steps: 3, Guidance: 5})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrCanceled) || res != nil {
		t.Fatalf("result %v, error %v; want ErrCanceled and context.Canceled", res != nil, err)
	}
	if cb.n != 5 {
		t.Errorf("%d convolutions ran, want the pass stopped after the 5th", cb.n)
	}
}
