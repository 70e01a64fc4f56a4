package sched

import (
	"fmt"
	"math"
	"slices"
)

// maxScheduleValue bounds sigmas, ranges and rho (real values: sigma_max
// 80 or about 14.6, rho 7): far larger ones overflow float32 arithmetic.
const maxScheduleValue = 1e4

// validate checks the numbers of a resolved configuration before any
// table is built from them: a value that would make the noise schedule
// NaN or infinite (betas outside (0, 1), a zero sigma_data, ...) would
// otherwise give an all-black image without an error.
func (p *Params) validate() error {
	if p.NumTrainTimesteps < 2 || p.NumTrainTimesteps > maxTrainTimesteps {
		return fmt.Errorf("%s: num_train_timesteps = %d, want 2 to %d", p.Class, p.NumTrainTimesteps, maxTrainTimesteps)
	}
	reads := func(key string) bool { return slices.Contains(p.Keys, key) }
	if p.StepsOffset < 0 || p.StepsOffset >= p.NumTrainTimesteps {
		return fmt.Errorf("%s: steps_offset = %d, want 0 to num_train_timesteps-1 (%d)", p.Class, p.StepsOffset, p.NumTrainTimesteps-1)
	}
	if reads("beta_start") && p.TrainedBetas == nil && p.BetaSchedule != "squaredcos_cap_v2" && p.BetaSchedule != "exp" && p.BetaSchedule != "laplace" {
		for _, b := range []struct {
			key string
			v   float64
		}{{"beta_start", p.BetaStart}, {"beta_end", p.BetaEnd}} {
			if !(b.v > 0 && b.v < 1) {
				return fmt.Errorf("%s: %s = %g, want a number between 0 and 1 (exclusive): other betas make the noise schedule NaN", p.Class, b.key, b.v)
			}
		}
	}
	for i, b := range p.TrainedBetas {
		if !(b > 0 && b < 1) {
			return fmt.Errorf("%s: trained_betas[%d] = %g, want a number between 0 and 1 (exclusive)", p.Class, i, b)
		}
	}
	positive := []struct {
		key string
		v   float64
	}{{"clip_sample_range", p.ClipSampleRange}, {"sample_max_value", p.SampleMaxValue}, {"sigma_data", p.SigmaData}, {"rho", p.Rho}}
	if p.SigmaMin != nil {
		positive = append(positive, struct {
			key string
			v   float64
		}{"sigma_min", *p.SigmaMin})
	}
	if p.SigmaMax != nil {
		positive = append(positive, struct {
			key string
			v   float64
		}{"sigma_max", *p.SigmaMax})
	}
	for _, f := range positive {
		if reads(f.key) && !(f.v > 0 && f.v <= maxScheduleValue) {
			return fmt.Errorf("%s: %s = %g, want a number > 0 and at most %g", p.Class, f.key, f.v, float64(maxScheduleValue))
		}
	}
	if p.SigmaMin != nil && p.SigmaMax != nil && *p.SigmaMin > *p.SigmaMax {
		return fmt.Errorf("%s: sigma_min %g is above sigma_max %g", p.Class, *p.SigmaMin, *p.SigmaMax)
	}
	if r := p.DynamicThresholdingRatio; p.Thresholding && !(r > 0 && r <= 1) {
		return fmt.Errorf("%s: dynamic_thresholding_ratio = %g, want a number in (0, 1]", p.Class, r)
	}
	if math.IsNaN(p.LambdaMinClipped) || math.IsInf(p.LambdaMinClipped, 1) {
		return fmt.Errorf("%s: lambda_min_clipped = %g, want a number or -Infinity", p.Class, p.LambdaMinClipped)
	}
	if p.Eta < 0 || math.IsNaN(p.Eta) || math.IsInf(p.Eta, 0) {
		return fmt.Errorf("%s: eta = %g, want a finite number >= 0", p.Class, p.Eta)
	}
	return nil
}

// checkAlphas refuses a schedule whose cumulative alphas leave (0, 1]: a
// zero or negative one gives infinite or NaN sigmas. With zero terminal
// SNR the last one is 0 on purpose.
func checkAlphas(p *Params, betas, alphasCumprod []float32) error {
	for i, a := range alphasCumprod {
		if i == len(alphasCumprod)-1 && p.RescaleBetasZeroSNR {
			break
		}
		if !(a > 0 && a <= 1) {
			return fmt.Errorf("%s: the beta schedule gives alphas_cumprod[%d] = %g (beta %g), outside (0, 1]: betas too large for %d training steps",
				p.Class, i, a, betas[i], p.NumTrainTimesteps)
		}
	}
	return nil
}
