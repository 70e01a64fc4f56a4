package main

import (
	"fmt"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/backend/cuda"
	"github.com/sdxl-go/sdxl/internal/memlimit"
	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/tensor"
)

// device is the backend a run computes on.
type device struct {
	name  string
	b     tensor.Backend
	dtype tensor.DType
	cuda  *cuda.Backend
}

// openDevice opens cpu or cuda with the requested compute dtype: f32 on the
// CPU (the oracle; f16 is simulated there), f16 by default on CUDA.
func openDevice(name, dtype string) (*device, error) {
	d := &device{name: name, dtype: tensor.F32}
	if name == "cuda" {
		d.dtype = tensor.F16
	}
	if dtype != "" {
		dt, err := tensor.ParseDType(dtype)
		if err != nil {
			return nil, usageErr("--dtype: %v", err)
		}
		d.dtype = dt
	}
	switch name {
	case "cpu":
		c, err := cpu.Open(cpu.Options{})
		if err != nil {
			return nil, fmt.Errorf("--device cpu: %v", err)
		}
		d.b = c
		memlimit.Track() // collect garbage at the weights plus 1 GiB, not at twice the weights
	case "cuda":
		c, err := cuda.New(0)
		if err != nil {
			return nil, fmt.Errorf("--device cuda: %v (use --device cpu to run without a GPU)", err)
		}
		d.b, d.cuda = c, c
	default:
		return nil, usageErr("--device %q: want cpu or cuda", name)
	}
	return d, nil
}

// precision is the UNet's compute precision. On CUDA it is the requested
// dtype; on the CPU it is always float32: --dtype f16 or bf16 there keeps
// the weights in 16 bits (half the memory, widened while packing) and
// computes in float32, which equals float32 weights rounded to f16.
func (d *device) precision() sdxl.Precision {
	if d.cuda == nil {
		return sdxl.PrecisionF32
	}
	return sdxl.PrecisionOf(d.dtype)
}

func (d *device) close() {
	if d.cuda != nil {
		d.cuda.Close()
	}
}

// peakBytes is the GPU memory peak, 0 on the CPU.
func (d *device) peakBytes() int64 {
	if d.cuda == nil {
		return 0
	}
	return d.cuda.PeakBytes()
}

// sync waits for queued device work (nil on the CPU, which is synchronous).
func (d *device) sync() error {
	if d.cuda == nil {
		return nil
	}
	return d.cuda.Sync()
}

func (d *device) describe() string {
	if d.cuda == nil {
		return "cpu"
	}
	i := d.cuda.Info()
	return fmt.Sprintf("cuda:%d %s (sm_%d%d)", i.Ordinal, i.Name, i.Major, i.Minor)
}
