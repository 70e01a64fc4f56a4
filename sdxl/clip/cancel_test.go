package clip

import (
	"context"
	"errors"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/tensor"
	"github.com/sdxl-go/sdxl/tensor/backendtest"
)

// TestCancel: a cancelled context stops the text encoders with
// context.Canceled, every tensor freed.
func TestCancel(t *testing.T) {
	lb := backendtest.NewLive(cpu.New())
	s := loadSmall(t, lb, "sdxl-small-base", true)
	lb.Reset()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if o, err := s.TextEncoder2.Forward(ctx, lb, benchIDs().IDs2, Request{Final: true}); !errors.Is(err, context.Canceled) || o != nil {
		t.Errorf("Forward: result %v, error %v", o, err)
	}
	if p, err := s.EncodePromptIDs(ctx, lb, benchIDs(), PromptOptions{ClassifierFreeGuidance: true}); !errors.Is(err, context.Canceled) || p != nil {
		t.Errorf("EncodePromptIDs: result %v, error %v", p, err)
	}
	enc := &HostEncoder{Backend: lb, Model: s.TextEncoder, Context: ctx}
	if _, _, err := enc.Encode(benchIDs().IDs1, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("HostEncoder: error %v", err)
	}
	if lb.Count() != 0 {
		t.Errorf("%d tensors left", lb.Count())
	}
}

// linearCounter is a backend calling at(n) before its n-th Linear.
type linearCounter struct {
	tensor.Backend
	n  int
	at func(n int)
}

func (c *linearCounter) Linear(x, w, b *tensor.Tensor) *tensor.Tensor {
	c.n++
	c.at(c.n)
	return tensor.Linear(c.Backend, x, w, b)
}

// TestCancelDuring: a context cancelled during the text model's forward
// (before its 10th Linear) stops it before the next op with
// context.Canceled, every tensor freed.
func TestCancelDuring(t *testing.T) {
	lb := backendtest.NewLive(cpu.New())
	s := loadSmall(t, lb, "sdxl-small-base", true)
	ids := benchIDs().IDs2
	lb.Reset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lc := &linearCounter{Backend: lb, at: func(n int) {
		if n == 10 {
			cancel()
		}
	}}
	if o, err := s.TextEncoder2.Forward(ctx, lc, ids, Request{Final: true}); !errors.Is(err, context.Canceled) || o != nil {
		t.Fatalf("result %v, error %v", o, err)
	}
	if lc.n != 10 {
		t.Errorf("%d Linear ops ran, want the pass stopped after the 10th", lc.n)
	}
	if lb.Count() != 0 {
		t.Errorf("%d tensors left", lb.Count())
	}
}
