package unet

import (
	"fmt"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/tensor"
)

// DownBlock is DownBlock2D (no attentions) or CrossAttnDownBlock2D: pairs
// of resnet (+ transformer), then an optional stride-2 downsampler. Every
// intermediate output is a skip connection for the up path.
type DownBlock struct {
	Resnets      []*nn.ResnetBlock2D `st:"resnets"`
	Attentions   []*nn.Transformer2D `st:"attentions"`
	Downsamplers []*nn.Downsample2D  `st:"downsamplers"`
	Path         string
}

// Forward returns the block's output and appends its skip tensors to
// skips; the output is the last skip. x, itself a skip, is not consumed.
func (d *DownBlock) Forward(b tensor.Backend, rec nn.Recorder, x, tembAct, context *tensor.Tensor, skips []*tensor.Tensor) (*tensor.Tensor, []*tensor.Tensor) {
	s := tensor.NewScope(b)
	defer s.Release()
	tembAct, context = s.Borrow(tembAct), s.Borrow(context)
	nn.RecordIn(rec, d.Path, x)
	h := x
	for i, r := range d.Resnets {
		h = r.Forward(s, rec, s.Borrow(h), tembAct)
		if len(d.Attentions) > 0 {
			h = d.Attentions[i].Forward(s, rec, h, context)
		}
		skips = append(skips, s.Keep(h))
	}
	for _, ds := range d.Downsamplers {
		h = ds.Forward(s, rec, s.Borrow(h))
		skips = append(skips, s.Keep(h))
	}
	nn.RecordOut(rec, d.Path, h)
	return h, skips
}

// MidBlock is UNetMidBlock2DCrossAttn (resnet, then transformer + resnet
// pairs) or UNetMidBlock2D without attention (one resnet).
type MidBlock struct {
	Resnets    []*nn.ResnetBlock2D `st:"resnets"`
	Attentions []*nn.Transformer2D `st:"attentions"`
	Path       string
}

// Forward runs the mid block.
func (m *MidBlock) Forward(b tensor.Backend, rec nn.Recorder, x, tembAct, context *tensor.Tensor) *tensor.Tensor {
	s := tensor.NewScope(b)
	defer s.Release()
	tembAct, context = s.Borrow(tembAct), s.Borrow(context)
	nn.RecordIn(rec, m.Path, x)
	h := m.Resnets[0].Forward(s, rec, x, tembAct)
	for i, a := range m.Attentions {
		h = m.Resnets[i+1].Forward(s, rec, a.Forward(s, rec, h, context), tembAct)
	}
	nn.RecordOut(rec, m.Path, h)
	return s.Keep(h)
}

// UpBlock is UpBlock2D or CrossAttnUpBlock2D: each resnet takes the
// previous output concatenated with the next skip (last in, first out),
// then an optional transformer; an optional upsampler ends the block.
type UpBlock struct {
	Resnets    []*nn.ResnetBlock2D `st:"resnets"`
	Attentions []*nn.Transformer2D `st:"attentions"`
	Upsamplers []*nn.Upsample2D    `st:"upsamplers"`
	Path       string
}

// Forward consumes x and len(Resnets) skips from the end of skips and
// returns the output and the remaining skips. upH, upW is the upsampler's
// output size (the next skip's size; 0 = twice).
func (u *UpBlock) Forward(b tensor.Backend, rec nn.Recorder, x, tembAct, context *tensor.Tensor, skips []*tensor.Tensor, upH, upW int) (*tensor.Tensor, []*tensor.Tensor) {
	s := tensor.NewScope(b)
	defer s.Release()
	tembAct, context = s.Borrow(tembAct), s.Borrow(context)
	nn.RecordIn(rec, u.Path, x)
	h := x
	for i, r := range u.Resnets {
		skip := skips[len(skips)-1]
		skips = skips[:len(skips)-1]
		if skip.Dim(2) != h.Dim(2) || skip.Dim(3) != h.Dim(3) {
			panic(fmt.Sprintf("unet: %s: skip %v does not match %v", u.Path, skip.Shape(), h.Shape()))
		}
		h = r.Forward(s, rec, s.Concat(1, h, skip), tembAct)
		if len(u.Attentions) > 0 {
			h = u.Attentions[i].Forward(s, rec, h, context)
		}
	}
	for _, us := range u.Upsamplers {
		h = us.Forward(s, rec, h, upH, upW)
	}
	nn.RecordOut(rec, u.Path, h)
	return s.Keep(h), skips
}
