package sched

import (
	"fmt"
	"math"
)

// This file holds the scheduler arithmetic of the SDXL pipelines that
// decides which timesteps run: img2img strength, the refiner's
// denoising_start and the base's denoising_end (the ensemble split), so that
// every pipeline uses one tested implementation.

// validFraction is diffusers' denoising_value_valid: a float in (0, 1).
func validFraction(f float64) bool { return f > 0 && f < 1 }

// cutoff is int(round(N - f*N)) with Python's round (half to even).
func cutoff(numTrain int, f float64) float64 {
	n := float64(numTrain)
	return math.Trunc(math.RoundToEven(n - f*n))
}

// Img2ImgTimesteps is StableDiffusionXLImg2ImgPipeline.get_timesteps, to be
// called after s.SetTimesteps(numInferenceSteps). Without a valid
// denoisingStart (0 means none) it keeps the last int(steps*strength) steps;
// with one (the refiner's denoising_start) it keeps the timesteps below the
// cutoff, plus one for second-order schedulers whose count would be even.
// It sets the scheduler's begin index, as the pipeline does, and returns
// the timesteps to run; their first element is the timestep add_noise uses
// for the initial latents.
func Img2ImgTimesteps(s Scheduler, numInferenceSteps int, strength, denoisingStart float64) ([]float64, error) {
	ts := s.Timesteps()
	if len(ts) == 0 {
		return nil, fmt.Errorf("%s: SetTimesteps has not been called", s.ClassName())
	}
	var start int
	if validFraction(denoisingStart) {
		c := cutoff(s.Config().NumTrainTimesteps, denoisingStart)
		n := 0
		for _, t := range ts {
			if t < c {
				n++
			}
		}
		if s.Order() == 2 && n%2 == 0 {
			// The cut would land after a first-order stage; take one more
			// so it falls after a completed step.
			n++
		}
		start = len(ts) - n
	} else {
		if !(strength >= 0 && strength <= 1) {
			return nil, fmt.Errorf("img2img strength %v must be in [0, 1]", strength)
		}
		initT := min(int(float64(numInferenceSteps)*strength), numInferenceSteps)
		start = max(numInferenceSteps-initT, 0) * s.Order()
	}
	if start < 0 || start > len(ts) {
		return nil, fmt.Errorf("%s: img2img start index %d outside the %d-step schedule", s.ClassName(), start, len(ts))
	}
	s.SetBeginIndex(start)
	return ts[start:], nil
}

// DenoisingEnd keeps the timesteps at or above the denoising_end cutoff (the
// base pipeline's part of an ensemble). An invalid fraction (not in (0, 1))
// keeps them all, as diffusers does.
func DenoisingEnd(s Scheduler, timesteps []float64, denoisingEnd float64) []float64 {
	if !validFraction(denoisingEnd) {
		return timesteps
	}
	c := cutoff(s.Config().NumTrainTimesteps, denoisingEnd)
	n := 0
	for _, t := range timesteps {
		if t >= c {
			n++
		}
	}
	return timesteps[:n]
}
