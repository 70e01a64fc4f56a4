package nn

import (
	"github.com/sdxl-go/sdxl/tensor"
)

// ResnetBlock2D is diffusers' ResnetBlock2D with time_embedding_norm
// "default" and SiLU: norm1, SiLU, conv1, + time_emb_proj(SiLU(temb)),
// norm2, SiLU, conv2 (dropout is inference-off), plus the input (through a
// 1x1 conv_shortcut when the channel count changes), divided by
// output_scale_factor.
type ResnetBlock2D struct {
	Norm1        *GroupNorm `st:"norm1"`
	Conv1        *Conv2d    `st:"conv1"`
	TimeEmbProj  *Linear    `st:"time_emb_proj"` // nil without a time embedding (VAE)
	Norm2        *GroupNorm `st:"norm2"`
	Conv2        *Conv2d    `st:"conv2"`
	ConvShortcut *Conv2d    `st:"conv_shortcut"` // nil when in == out
	// OutputScale is output_scale_factor (1 = none).
	OutputScale float32
	Path        string
}

// ResnetConfig describes one ResnetBlock2D.
type ResnetConfig struct {
	In, Out int
	// TembChannels is the width of the time embedding; 0 for none.
	TembChannels int
	// Groups and GroupsOut are the GroupNorm group counts of norm1 and
	// norm2 (GroupsOut 0 = Groups).
	Groups, GroupsOut int
	Eps               float32
	OutputScale       float32 // 0 = 1
}

// NewResnetBlock2D builds a meta ResnetBlock2D.
func NewResnetBlock2D(path string, c ResnetConfig) *ResnetBlock2D {
	gout := c.GroupsOut
	if gout == 0 {
		gout = c.Groups
	}
	scale := c.OutputScale
	if scale == 0 {
		scale = 1
	}
	r := &ResnetBlock2D{
		Norm1:       NewGroupNorm(c.Groups, c.In, c.Eps),
		Conv1:       NewConv2d(c.In, c.Out, 3, 1, 1),
		Norm2:       NewGroupNorm(gout, c.Out, c.Eps),
		Conv2:       NewConv2d(c.Out, c.Out, 3, 1, 1),
		OutputScale: scale,
		Path:        path,
	}
	if c.TembChannels > 0 {
		r.TimeEmbProj = NewLinear(c.TembChannels, c.Out, true)
	}
	if c.In != c.Out {
		r.ConvShortcut = NewConv2d(c.In, c.Out, 1, 1, 0)
	}
	return r
}

// Forward runs the block on x [B, In, H, W]. Besides its output it reports
// conv1, time_emb_proj ([B, Out], before broadcasting), conv2 and
// conv_shortcut to rec; norm1/norm2 are fused with their SiLU and not
// reported. tembAct is SiLU(temb) [B, TembChannels], computed once by the
// caller and shared by every block (diffusers applies the same SiLU inside
// each block); nil when the block has no time embedding. Like every layer
// it consumes a temporary of its caller's scope (see tensor.Scope): x and
// tembAct, unless borrowed.
func (r *ResnetBlock2D) Forward(b tensor.Backend, rec Recorder, x, tembAct *tensor.Tensor) *tensor.Tensor {
	s := tensor.NewScope(b)
	defer s.Release()
	RecordIn(rec, r.Path, x)
	c := r.Conv1.Forward(s, r.Norm1.ForwardSiLU(s, s.Borrow(x)))
	RecordChild(rec, r.Path, "conv1", c)
	if r.TimeEmbProj != nil && tembAct != nil {
		t := r.TimeEmbProj.Forward(s, tembAct)
		RecordChild(rec, r.Path, "time_emb_proj", t)
		c = s.Add(c, t.Reshape(t.Dim(0), t.Dim(1), 1, 1))
	}
	c = r.Conv2.Forward(s, r.Norm2.ForwardSiLU(s, c))
	RecordChild(rec, r.Path, "conv2", c)
	skip := x
	if r.ConvShortcut != nil {
		skip = r.ConvShortcut.Forward(s, x)
		RecordChild(rec, r.Path, "conv_shortcut", skip)
	}
	out := s.Add(skip, c)
	if r.OutputScale != 1 {
		out = s.Scale(out, 1/r.OutputScale)
	}
	RecordOut(rec, r.Path, out)
	return s.Keep(out)
}

// Downsample2D is diffusers' Downsample2D with use_conv: a 3x3 conv with
// stride 2. Padding 1 is symmetric; padding 0 (the VAE encoder) pads one
// zero row and column at the bottom and right first, as diffusers does.
type Downsample2D struct {
	Conv *Conv2d `st:"conv"`
	Path string
}

// NewDownsample2D builds the layer; padding is downsample_padding.
func NewDownsample2D(path string, in, out, padding int) *Downsample2D {
	return &Downsample2D{Conv: NewConv2d(in, out, 3, 2, padding), Path: path}
}

// Forward halves the spatial size of x [B, C, H, W] (rounding up with
// padding 1).
func (d *Downsample2D) Forward(b tensor.Backend, rec Recorder, x *tensor.Tensor) *tensor.Tensor {
	s := tensor.NewScope(b)
	defer s.Release()
	RecordIn(rec, d.Path, x)
	if d.Conv.Padding == 0 {
		x = padBottomRight(s, x)
	}
	out := d.Conv.Forward(s, x)
	RecordChild(rec, d.Path, "conv", out)
	RecordOut(rec, d.Path, out)
	return s.Keep(out)
}

// padBottomRight appends one zero row and one zero column to [B, C, H, W]
// (F.pad(x, (0, 1, 0, 1))); the Backend has no pad op, so zeros are
// concatenated.
func padBottomRight(s *tensor.Scope, x *tensor.Tensor) *tensor.Tensor {
	B, C, H, W := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	wide := s.Concat(3, x, s.Zeros(x.DType(), B, C, H, 1))
	return s.Concat(2, wide, s.Zeros(x.DType(), B, C, 1, W+1))
}

// Upsample2D is diffusers' Upsample2D with use_conv: nearest-neighbour
// upsampling to an explicit size, then a 3x3 conv.
type Upsample2D struct {
	Conv *Conv2d `st:"conv"`
	Path string
}

// NewUpsample2D builds the layer.
func NewUpsample2D(path string, in, out int) *Upsample2D {
	return &Upsample2D{Conv: NewConv2d(in, out, 3, 1, 1), Path: path}
}

// Forward resizes x [B, C, H, W] to [B, C, h, w] and convolves. The UNet
// passes the size of the matching skip connection, which is what makes odd
// latent sizes work; h, w <= 0 means twice the input size.
func (u *Upsample2D) Forward(b tensor.Backend, rec Recorder, x *tensor.Tensor, h, w int) *tensor.Tensor {
	s := tensor.NewScope(b)
	defer s.Release()
	RecordIn(rec, u.Path, x)
	if h <= 0 || w <= 0 {
		h, w = 2*x.Dim(2), 2*x.Dim(3)
	}
	out := u.Conv.Forward(s, s.Upsample(x, h, w))
	RecordChild(rec, u.Path, "conv", out)
	RecordOut(rec, u.Path, out)
	return s.Keep(out)
}
