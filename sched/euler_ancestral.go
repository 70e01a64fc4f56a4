package sched

import "fmt"

// EulerAncestral is diffusers' EulerAncestralDiscreteScheduler: an Euler
// step to sigma_down followed by fresh noise of scale sigma_up, drawn from
// the step's generator at every step.
type EulerAncestral struct {
	sigmaSchedule
}

func newEulerAncestral(p Params) (Scheduler, error) {
	s, err := newSigmaSchedule(p)
	if err != nil {
		return nil, err
	}
	return &EulerAncestral{s}, nil
}

func (e *EulerAncestral) ClassName() string       { return "EulerAncestralDiscreteScheduler" }
func (e *EulerAncestral) Order() int              { return 1 }
func (e *EulerAncestral) InitNoiseSigma() float64 { return e.kInitNoiseSigma() }

func (e *EulerAncestral) SetTimesteps(n int) error {
	if err := checkSteps(e.p.Class, n, e.p.NumTrainTimesteps); err != nil {
		return err
	}
	ts, err := spacing(&e.p, n)
	if err != nil {
		return err
	}
	sig := make([]float32, len(ts)+1)
	for i, t := range ts {
		sig[i] = float32(npInterp(t, e.trainSig))
	}
	e.timesteps, e.sigmas = ts, sig
	e.cur.reset()
	return nil
}

func (e *EulerAncestral) SetCustomTimesteps([]float64) error {
	return errNotSupported(e.p.Class, "custom timesteps")
}

func (e *EulerAncestral) SetCustomSigmas([]float64) error {
	return errNotSupported(e.p.Class, "custom sigmas")
}

func (e *EulerAncestral) ScaleModelInput(sample []float32, t float64) ([]float32, error) {
	if err := e.ready(t); err != nil {
		return nil, err
	}
	return scaleBySigma(sample, e.sigmas[e.cur.step]), nil
}

func (e *EulerAncestral) Step(modelOutput []float32, t float64, sample []float32, noise NoiseSource) ([]float32, error) {
	if err := checkLen(e.p.Class, "model output", modelOutput, sample); err != nil {
		return nil, err
	}
	if err := e.ready(t); err != nil {
		return nil, err
	}
	if e.p.PredictionType == "sample" {
		return nil, fmt.Errorf("%s: prediction_type sample is not implemented (as in diffusers)", e.p.Class)
	}
	i := e.cur.step
	sigma := e.sigmas[i]
	pred, err := predX0(e.p.Class, e.p.PredictionType, modelOutput, sample, sigma, false)
	if err != nil {
		return nil, err
	}
	from, to := e.sigmas[i], e.sigmas[i+1]
	// sigma_up = (to**2 * (from**2 - to**2) / from**2) ** 0.5
	to2, from2 := to*to, from*from
	sigmaUp := sqrt32(to2 * (from2 - to2) / from2)
	sigmaDown := sqrt32(to2 - sigmaUp*sigmaUp)
	dt := sigmaDown - sigma
	eps, err := drawNoise(e.p.Class, noise, len(sample), NoiseModelDType)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(sample))
	for k := range out {
		derivative := (sample[k] - pred[k]) / sigma
		prev := sample[k] + derivative*dt
		out[k] = prev + eps[k]*sigmaUp
	}
	e.cur.step++
	return out, nil
}

func (e *EulerAncestral) AddNoise(original, noise []float32, t float64) ([]float32, error) {
	return e.addNoiseSigma(original, noise, t)
}
