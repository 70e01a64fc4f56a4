// Package testengine opens the bundled small random-weight model for the
// tests of the job and server packages (sdxl-small-base: tiny widths,
// real SDXL topology; a 64x64, 2-step image takes tens of milliseconds).
package testengine

import (
	"context"
	"sync"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/bundled"
	"github.com/sdxl-go/sdxl/tensor"
)

var (
	once    sync.Once
	backend tensor.Backend
	model   *sdxl.Model
	err     error
)

// Bundled returns an engine over the bundled model, loaded once per test
// binary on one CPU backend; opt's Backend is set to that backend, its
// model paths are ignored. Engines share the model: run one at a time.
func Bundled(t testing.TB, opt sdxl.Options) *sdxl.Engine {
	t.Helper()
	once.Do(func() {
		backend = cpu.New()
		var dir string
		if dir, err = bundled.Dir(); err != nil {
			return
		}
		var e *sdxl.Engine
		if e, err = sdxl.Open(context.Background(), sdxl.Options{Backend: backend, Base: dir, MemoryBudget: -1}); err == nil {
			model = e.Base()
		}
	})
	if err != nil {
		t.Fatalf("bundled model: %v", err)
	}
	opt.Backend = backend
	e, err := sdxl.New(opt, model, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}
