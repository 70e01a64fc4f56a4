package nn

import (
	"math"

	"github.com/sdxl-go/sdxl/tensor"
)

// Timesteps computes diffusers' sinusoidal timestep embedding
// (get_timestep_embedding with scale 1 and max_period 10000) on the host,
// rounding every intermediate to float32 in the order torch does:
//
//	exponent_i = float32(-ln 10000) * i / float32(half - freqShift)
//	freq_i     = exp(exponent_i)
//	arg        = float32(t) * freq_i
//	emb        = [sin(arg) | cos(arg)], halves swapped when flipSinToCos
//
// The result is [len(ts), dim] row-major; an odd dim gets a zero last
// column as in diffusers. float32 rounding of each step matters: the
// add_time_ids embedding multiplies frequencies by values up to 1024, so a
// frequency computed in float64 would shift the sine's argument by more
// than the tolerance of the goldens.
func Timesteps(ts []float32, dim int, flipSinToCos bool, freqShift float64) []float32 {
	half := dim / 2
	freq := make([]float32, half)
	negLog := float32(-math.Log(10000))
	den := float32(float64(half) - freqShift)
	for i := range freq {
		e := negLog * float32(i)
		e /= den
		freq[i] = float32(math.Exp(float64(e)))
	}
	out := make([]float32, len(ts)*dim)
	for r, t := range ts {
		row := out[r*dim : (r+1)*dim]
		for i, f := range freq {
			arg := float64(float32(t * f)) // explicit rounding: no fused ops
			s, c := float32(math.Sin(arg)), float32(math.Cos(arg))
			if flipSinToCos {
				row[i], row[half+i] = c, s
			} else {
				row[i], row[half+i] = s, c
			}
		}
	}
	return out
}

// TimestepEmbedding is diffusers' TimestepEmbedding MLP: linear_1, SiLU,
// linear_2 (no cond_proj, no post activation: the SDXL configuration).
type TimestepEmbedding struct {
	Linear1 *Linear `st:"linear_1"`
	Linear2 *Linear `st:"linear_2"`
	Path    string
}

// NewTimestepEmbedding builds the MLP in -> dim -> out.
func NewTimestepEmbedding(path string, in, dim, out int) *TimestepEmbedding {
	return &TimestepEmbedding{Linear1: NewLinear(in, dim, true), Linear2: NewLinear(dim, out, true), Path: path}
}

// Forward maps x [B, in] to [B, out].
func (e *TimestepEmbedding) Forward(b tensor.Backend, rec Recorder, x *tensor.Tensor) *tensor.Tensor {
	s := tensor.NewScope(b)
	defer s.Release()
	RecordIn(rec, e.Path, x)
	out := e.Linear2.Forward(s, s.SiLU(e.Linear1.Forward(s, x)))
	RecordOut(rec, e.Path, out)
	return s.Keep(out)
}
