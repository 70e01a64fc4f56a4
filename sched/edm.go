package sched

import (
	"fmt"
	"math"
)

// EDMEuler is diffusers' EDMEulerScheduler: Euler steps in the EDM
// (Karras et al. 2022) parameterisation, with its own sigma range
// (sigma_min 0.002 to sigma_max 80 by default) instead of betas; the model
// sees c_noise = log(sigma)/4 as its timestep.
type EDMEuler struct {
	sigmaSchedule
}

func newEDMEuler(p Params) (Scheduler, error) {
	if p.PredictionType != "epsilon" && p.PredictionType != "v_prediction" {
		return nil, predictionError(p.Class, p.PredictionType, "epsilon or v_prediction")
	}
	if p.FinalSigmasType != "zero" && p.FinalSigmasType != "sigma_min" {
		return nil, fmt.Errorf("%s: final_sigmas_type %q (want zero or sigma_min)", p.Class, p.FinalSigmasType)
	}
	if !(*p.SigmaMin > 0) || !(*p.SigmaMax > *p.SigmaMin) {
		return nil, fmt.Errorf("%s: need 0 < sigma_min < sigma_max, got %v and %v", p.Class, *p.SigmaMin, *p.SigmaMax)
	}
	e := &EDMEuler{sigmaSchedule{p: p}}
	e.cur.reset()
	return e, nil
}

func (e *EDMEuler) ClassName() string { return "EDMEulerScheduler" }
func (e *EDMEuler) Order() int        { return 1 }

// InitNoiseSigma is (sigma_max**2 + 1) ** 0.5 as a Python float.
func (e *EDMEuler) InitNoiseSigma() float64 {
	m := *e.p.SigmaMax
	return math.Sqrt(m*m + 1)
}

// torchLinspace64 is torch.linspace(start, end, n, dtype=float64) on the
// CPU (fused multiply-adds, halves counted from each end).
func torchLinspace64(start, end float64, n int) []float64 {
	out := make([]float64, n)
	if n == 1 {
		out[0] = start
		return out
	}
	step := (end - start) / float64(n-1)
	half := n / 2
	for i := range out {
		if i < half {
			out[i] = math.FMA(step, float64(i), start)
		} else {
			out[i] = math.FMA(-step, float64(n-i-1), end)
		}
	}
	return out
}

// sigmasFromRamp is _compute_karras_sigmas / _compute_exponential_sigmas
// in float64, cast to float32.
func (e *EDMEuler) sigmasFromRamp(ramp []float64) []float32 {
	lo, hi := *e.p.SigmaMin, *e.p.SigmaMax
	out := make([]float32, len(ramp))
	if e.p.SigmaSchedule == "exponential" {
		// torch.linspace(log(min), log(max), n) is float32 here.
		l := torchLinspace32(math.Log(lo), math.Log(hi), len(ramp))
		for i := range out {
			out[len(out)-1-i] = exp32(l[i])
		}
		return out
	}
	minInv := math.Pow(lo, 1/e.p.Rho)
	maxInv := math.Pow(hi, 1/e.p.Rho)
	for i, r := range ramp {
		out[i] = float32(math.Pow(maxInv+r*(minInv-maxInv), e.p.Rho))
	}
	return out
}

func (e *EDMEuler) SetTimesteps(n int) error {
	if n < 1 {
		return fmt.Errorf("%s: num_inference_steps = %d, need at least 1", e.p.Class, n)
	}
	return e.install(e.sigmasFromRamp(torchLinspace64(0, 1, n)))
}

// SetCustomSigmas takes the ramp values diffusers' set_timesteps(sigmas=)
// feeds through the sigma schedule (values in [0, 1], 0 = sigma_max).
func (e *EDMEuler) SetCustomSigmas(ramp []float64) error {
	if len(ramp) == 0 {
		return fmt.Errorf("%s: empty custom sigmas", e.p.Class)
	}
	return e.install(e.sigmasFromRamp(ramp))
}

func (e *EDMEuler) SetCustomTimesteps([]float64) error {
	return errNotSupported(e.p.Class, "custom timesteps")
}

func (e *EDMEuler) install(sig []float32) error {
	ts := make([]float64, len(sig))
	for i, s := range sig {
		ts[i] = float64(0.25 * log32(s))
	}
	last := float32(0)
	if e.p.FinalSigmasType == "sigma_min" {
		last = sig[len(sig)-1]
	}
	e.timesteps = ts
	e.sigmas = append(sig, last)
	e.cur.reset()
	return nil
}

func (e *EDMEuler) ScaleModelInput(sample []float32, t float64) ([]float32, error) {
	if err := e.ready(t); err != nil {
		return nil, err
	}
	sigma := e.sigmas[e.cur.step]
	sd := float32(e.p.SigmaData * e.p.SigmaData)
	cIn := 1 / sqrt32(sigma*sigma+sd)
	out := make([]float32, len(sample))
	for i, v := range sample {
		out[i] = v * cIn
	}
	return out, nil
}

func (e *EDMEuler) Step(modelOutput []float32, t float64, sample []float32, _ NoiseSource) ([]float32, error) {
	if err := checkLen(e.p.Class, "model output", modelOutput, sample); err != nil {
		return nil, err
	}
	if err := e.ready(t); err != nil {
		return nil, err
	}
	i := e.cur.step
	sigmaHat := e.sigmas[i] // s_churn = 0
	sd2 := float32(e.p.SigmaData * e.p.SigmaData)
	s2 := sigmaHat*sigmaHat + sd2
	cSkip := (1 / s2) * sd2 // Python float / tensor is reciprocal(tensor) * float
	cOut := sigmaHat * float32(e.p.SigmaData) / sqrt32(s2)
	if e.p.PredictionType == "v_prediction" {
		cOut = -sigmaHat * float32(e.p.SigmaData) / sqrt32(s2)
	}
	dt := e.sigmas[i+1] - sigmaHat
	out := make([]float32, len(sample))
	for k := range out {
		denoised := cSkip*sample[k] + cOut*modelOutput[k]
		derivative := (sample[k] - denoised) / sigmaHat
		out[k] = sample[k] + derivative*dt
	}
	e.cur.step++
	return out, nil
}

func (e *EDMEuler) AddNoise(original, noise []float32, t float64) ([]float32, error) {
	return e.addNoiseSigma(original, noise, t)
}
