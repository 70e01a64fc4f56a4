package controlnet

import (
	"fmt"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/tensor"
)

// CondEmbedding is ControlNetConditioningEmbedding: a 3x3 convolution, then
// per pair of widths a 3x3 convolution and a 3x3 stride-2 one (each
// followed by SiLU), then conv_out to the UNet's first width. It brings the
// control image down to the latents' size.
type CondEmbedding struct {
	ConvIn  *nn.Conv2d   `st:"conv_in"`
	Blocks  []*nn.Conv2d `st:"blocks"`
	ConvOut *nn.Conv2d   `st:"conv_out"`
}

// condPath is the module's diffusers path.
const condPath = "controlnet_cond_embedding"

func newCondEmbedding(in int, widths []int, out int) *CondEmbedding {
	e := &CondEmbedding{ConvIn: nn.NewConv2d(in, widths[0], 3, 1, 1)}
	for i := 0; i+1 < len(widths); i++ {
		e.Blocks = append(e.Blocks,
			nn.NewConv2d(widths[i], widths[i], 3, 1, 1),
			nn.NewConv2d(widths[i], widths[i+1], 3, 2, 1))
	}
	e.ConvOut = nn.NewConv2d(widths[len(widths)-1], out, 3, 1, 1)
	return e
}

// Forward embeds x [B, conditioning_channels, H, W].
func (e *CondEmbedding) Forward(b tensor.Backend, rec nn.Recorder, x *tensor.Tensor) *tensor.Tensor {
	s := tensor.NewScope(b)
	defer s.Release()
	nn.RecordIn(rec, condPath, x)
	h := convSiLU(s, rec, "conv_in", e.ConvIn, x)
	for i, conv := range e.Blocks {
		h = convSiLU(s, rec, fmt.Sprintf("blocks.%d", i), conv, h)
	}
	out := e.ConvOut.Forward(s, h)
	nn.RecordChild(rec, condPath, "conv_out", out)
	nn.RecordOut(rec, condPath, out)
	return s.Keep(out)
}

// convSiLU is a convolution followed by SiLU; the convolution's output is
// reported under its name.
func convSiLU(s *tensor.Scope, rec nn.Recorder, name string, conv *nn.Conv2d, x *tensor.Tensor) *tensor.Tensor {
	y := conv.Forward(s, x)
	nn.RecordChild(rec, condPath, name, y)
	return s.SiLU(y)
}
