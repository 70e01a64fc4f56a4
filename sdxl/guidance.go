package sdxl

import "math"

// classifierFreeGuidance combines the unconditional and text predictions
// in float32 like torch: uncond + g*(text-uncond), then optionally
// rescales by guidance_rescale (Lin et al. 2023, section 3.4) using torch's
// unbiased standard deviation over each sample. Every operation is one
// torch kernel, rounded to float32 on its own: the explicit conversions
// keep the Go compiler from fusing a multiply and an add (it may, on FMA
// targets), and Python's scalars (g, rescale, 1 - rescale) are rounded to
// float32 from their float64 values as torch does.
func classifierFreeGuidance(uncond, text []float32, g, rescale float64, batch int) []float32 {
	out := make([]float32, len(uncond))
	gf := float32(g)
	for i := range out {
		d := float32(text[i] - uncond[i])
		out[i] = uncond[i] + float32(gf*d)
	}
	if rescale <= 0 {
		return out
	}
	r, keep := float32(rescale), float32(1-rescale)
	per := len(out) / batch
	for b := 0; b < batch; b++ {
		cfg := out[b*per : (b+1)*per]
		// torch.std returns float32 tensors; their quotient is a float32
		// division.
		stdText := float32(stddev(text[b*per : (b+1)*per]))
		stdCfg := float32(stddev(cfg))
		ratio := stdText / stdCfg
		for i, v := range cfg {
			rescaled := float32(v * ratio)
			cfg[i] = float32(r*rescaled) + float32(keep*v)
		}
	}
	return out
}

// stddev is the unbiased (n-1) standard deviation, torch.std's default
// (torch accumulates float32 inputs in float64 on the CPU too).
func stddev(x []float32) float64 {
	var mean float64
	for _, v := range x {
		mean += float64(v)
	}
	mean /= float64(len(x))
	var ss float64
	for _, v := range x {
		d := float64(v) - mean
		ss += d * d
	}
	return math.Sqrt(ss / float64(len(x)-1))
}
