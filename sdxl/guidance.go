package sdxl

import "math"

// classifierFreeGuidance combines the unconditional and text predictions
// in float32 like torch: uncond + g*(text-uncond), then optionally
// rescales by guidance_rescale (Lin et al. 2023, section 3.4) using torch's
// unbiased standard deviation over each sample.
func classifierFreeGuidance(uncond, text []float32, g, rescale float64, batch int) []float32 {
	out := make([]float32, len(uncond))
	gf := float32(g)
	for i := range out {
		out[i] = uncond[i] + gf*(text[i]-uncond[i])
	}
	if rescale <= 0 {
		return out
	}
	per := len(out) / batch
	for b := 0; b < batch; b++ {
		cfg := out[b*per : (b+1)*per]
		stdText := stddev(text[b*per : (b+1)*per])
		stdCfg := stddev(cfg)
		r := float32(rescale)
		ratio := float32(stdText / stdCfg)
		for i, v := range cfg {
			cfg[i] = r*(v*ratio) + (1-r)*v
		}
	}
	return out
}

// stddev is the unbiased (n-1) standard deviation, torch.std's default.
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

// validFrac is diffusers' denoising_value_valid: a float strictly inside
// (0, 1); other values mean "not given".
func validFrac(f float64) bool { return f > 0 && f < 1 }
