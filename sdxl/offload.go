package sdxl

import (
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/tensor"
)

// onDevice runs fn with the weights of the given modules on the pipeline's
// backend. With Pipeline.Offload set the models live on that host backend
// and each component is uploaded only while it runs, then freed: diffusers'
// enable_model_cpu_offload, for GPUs too small to hold every model at once.
// Without Offload it just runs fn.
func (p *Pipeline) onDevice(fn func() error, modules ...any) error {
	if p.Offload == nil {
		return fn()
	}
	type swap struct {
		slot *(*tensor.Tensor)
		host *tensor.Tensor
	}
	var swaps []swap
	defer func() {
		for _, s := range swaps {
			(*s.slot).Free()
			*s.slot = s.host
		}
	}()
	for _, m := range modules {
		if m == nil {
			continue
		}
		for _, prm := range nn.Params(m, "") {
			h := *prm.Ptr
			*prm.Ptr = p.Backend.FromFloat32(h.DType(), h.Shape(), p.Offload.ToFloat32(h))
			swaps = append(swaps, swap{prm.Ptr, h})
		}
	}
	return fn()
}
