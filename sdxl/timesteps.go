package sdxl

import (
	"fmt"
	"math"
)

// timestepCutoff is diffusers' discrete_timestep_cutoff for a denoising
// fraction: int(round(T - frac*T)). Python's round is half-to-even.
func timestepCutoff(numTrain int, frac float64) float64 {
	return math.RoundToEven(float64(numTrain) - frac*float64(numTrain))
}

// validFrac is diffusers' denoising_value_valid: a float strictly inside (0, 1).
func validFrac(f float64) bool { return f > 0 && f < 1 }

// applyDenoisingEnd keeps the leading timesteps >= the cutoff, as the base
// pipeline does with denoising_end (section 8.1 of its __call__).
func applyDenoisingEnd(ts []float64, numTrain int, end float64) []float64 {
	if !validFrac(end) {
		return ts
	}
	cut := timestepCutoff(numTrain, end)
	n := 0
	for _, t := range ts {
		if t >= cut {
			n++
		}
	}
	return ts[:n]
}

// img2imgTimesteps is StableDiffusionXLImg2ImgPipeline.get_timesteps: it
// returns the index of the first timestep to run (the scheduler's begin
// index). Without denoising_start the strength decides; with it, the
// timesteps below the cutoff run, plus one for second-order schedulers
// whose count would otherwise stop between the two halves of a step.
func img2imgTimesteps(ts []float64, numSteps int, strength float64, order int, numTrain int, start float64) (int, error) {
	if !validFrac(start) {
		init := int(float64(numSteps) * strength)
		if init > numSteps {
			init = numSteps
		}
		tStart := numSteps - init
		if tStart < 0 {
			tStart = 0
		}
		begin := tStart * order
		if begin >= len(ts) {
			return 0, fmt.Errorf("strength %g with %d steps leaves no denoising step (increase --strength or --steps)", strength, numSteps)
		}
		return begin, nil
	}
	cut := timestepCutoff(numTrain, start)
	n := 0
	for _, t := range ts {
		if t < cut {
			n++
		}
	}
	if order == 2 && n%2 == 0 {
		n++
	}
	if n > len(ts) {
		n = len(ts)
	}
	if n == 0 {
		return 0, fmt.Errorf("denoising start %g leaves no denoising step", start)
	}
	return len(ts) - n, nil
}

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
