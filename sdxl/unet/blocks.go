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
// skips. x is never freed (it is itself a skip).
func (d *DownBlock) Forward(b tensor.Backend, rec nn.Recorder, x, tembAct, context *tensor.Tensor, skips []*tensor.Tensor) (*tensor.Tensor, []*tensor.Tensor) {
	nn.RecordIn(rec, d.Path, x)
	h := x
	for i, r := range d.Resnets {
		h = r.Forward(b, rec, h, tembAct)
		if len(d.Attentions) > 0 {
			a := d.Attentions[i].Forward(b, rec, h, context)
			h.Free()
			h = a
		}
		skips = append(skips, h)
	}
	for _, ds := range d.Downsamplers {
		h = ds.Forward(b, rec, h)
		skips = append(skips, h)
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

// Forward runs the mid block; x is not freed.
func (m *MidBlock) Forward(b tensor.Backend, rec nn.Recorder, x, tembAct, context *tensor.Tensor) *tensor.Tensor {
	nn.RecordIn(rec, m.Path, x)
	h := m.Resnets[0].Forward(b, rec, x, tembAct)
	for i, a := range m.Attentions {
		t := a.Forward(b, rec, h, context)
		h.Free()
		h = m.Resnets[i+1].Forward(b, rec, t, tembAct)
		t.Free()
	}
	nn.RecordOut(rec, m.Path, h)
	return h
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

// Forward consumes len(Resnets) skips from the end of skips and returns the
// output and the remaining skips. upH, upW is the upsampler's output size
// (the next skip's size; 0 = twice). x is freed (it is the previous
// block's output), as are the consumed skips.
func (u *UpBlock) Forward(b tensor.Backend, rec nn.Recorder, x, tembAct, context *tensor.Tensor, skips []*tensor.Tensor, upH, upW int) (*tensor.Tensor, []*tensor.Tensor) {
	nn.RecordIn(rec, u.Path, x)
	h := x
	for i, r := range u.Resnets {
		skip := skips[len(skips)-1]
		skips = skips[:len(skips)-1]
		if skip.Dim(2) != h.Dim(2) || skip.Dim(3) != h.Dim(3) {
			panic(fmt.Sprintf("unet: %s: skip %v does not match %v", u.Path, skip.Shape(), h.Shape()))
		}
		cat := b.Concat(1, h, skip)
		h.Free()
		skip.Free()
		h = r.Forward(b, rec, cat, tembAct)
		cat.Free()
		if len(u.Attentions) > 0 {
			a := u.Attentions[i].Forward(b, rec, h, context)
			h.Free()
			h = a
		}
	}
	for _, us := range u.Upsamplers {
		o := us.Forward(b, rec, h, upH, upW)
		h.Free()
		h = o
	}
	nn.RecordOut(rec, u.Path, h)
	return h, skips
}
