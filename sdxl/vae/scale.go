package vae

import (
	"github.com/sdxl-go/sdxl/tensor"
)

// Unscale maps the UNet's latents to the decoder's input, as the SDXL
// pipelines do before vae.decode: latents * latents_std / scaling_factor +
// latents_mean when the config has per-channel statistics, otherwise
// latents / scaling_factor (+ shift_factor when set; SDXL VAEs have none).
// Scaling by a power-of-two-free factor multiplies by its float32
// reciprocal, which may differ from torch's division by one ulp.
func (v *VAE) Unscale(b tensor.Backend, latents *tensor.Tensor) *tensor.Tensor {
	s := tensor.NewScope(b)
	defer s.Release()
	c := v.cfg
	if c.LatentsMean != nil {
		std := channelVector(s, latents.DType(), c.LatentsStd, 1/c.ScalingFactor, false)
		mean := channelVector(s, latents.DType(), c.LatentsMean, 1, false)
		return s.Keep(s.Add(s.Mul(latents, std), mean))
	}
	out := s.Scale(latents, float32(1/c.ScalingFactor))
	if c.ShiftFactor != nil && *c.ShiftFactor != 0 {
		out = s.Add(out, s.FromFloat32(latents.DType(), tensor.Shape{1}, []float32{float32(*c.ShiftFactor)}))
	}
	return s.Keep(out)
}

// Scale maps an encoder sample (or mean) to the UNet's latent space, the
// inverse of Unscale: (x - latents_mean) * scaling_factor / latents_std,
// or (x - shift_factor) * scaling_factor.
func (v *VAE) Scale(b tensor.Backend, x *tensor.Tensor) *tensor.Tensor {
	s := tensor.NewScope(b)
	defer s.Release()
	c := v.cfg
	if c.LatentsMean != nil {
		d := s.Add(x, channelVector(s, x.DType(), c.LatentsMean, -1, false))
		return s.Keep(s.Mul(d, channelVector(s, x.DType(), c.LatentsStd, c.ScalingFactor, true)))
	}
	if c.ShiftFactor != nil && *c.ShiftFactor != 0 {
		x = s.Add(x, s.FromFloat32(x.DType(), tensor.Shape{1}, []float32{float32(-*c.ShiftFactor)}))
	}
	return s.Keep(s.Scale(x, float32(c.ScalingFactor)))
}

// channelVector returns k*vals (k/vals when invert) as a [1, C, 1, 1]
// tensor.
func channelVector(b tensor.Backend, dt tensor.DType, vals []float64, k float64, invert bool) *tensor.Tensor {
	out := make([]float32, len(vals))
	for i, v := range vals {
		if invert {
			out[i] = float32(k / v)
		} else {
			out[i] = float32(k * v)
		}
	}
	return b.FromFloat32(dt, tensor.Shape{1, len(vals), 1, 1}, out)
}
