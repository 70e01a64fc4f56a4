package sched

import "fmt"

// Heun is diffusers' HeunDiscreteScheduler: a second-order method that
// evaluates the model twice per step. Its timestep list repeats every
// interior timestep (t0, t1, t1, t2, t2, ...), and its state alternates
// between a first-order (Euler) stage and the correction stage
// (state_in_first_order), so a pipeline runs 2N-1 model calls.
type Heun struct {
	sigmaSchedule
	// Set in the first-order stage for the correction stage.
	prevDerivative []float32
	dt             float32
	hasDt          bool
	prevSample     []float32
}

func newHeun(p Params) (Scheduler, error) {
	if n := boolCount(p.UseKarrasSigmas, p.UseExponentialSigmas, p.UseBetaSigmas); n > 1 {
		return nil, fmt.Errorf("%s: only one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas can be set", p.Class)
	}
	s, err := newSigmaSchedule(p, "exp")
	if err != nil {
		return nil, err
	}
	return &Heun{sigmaSchedule: s}, nil
}

func (h *Heun) ClassName() string       { return "HeunDiscreteScheduler" }
func (h *Heun) Order() int              { return 2 }
func (h *Heun) InitNoiseSigma() float64 { return h.kInitNoiseSigma() }

func (h *Heun) SetTimesteps(n int) error {
	if err := checkSteps(h.p.Class, n, h.p.NumTrainTimesteps); err != nil {
		return err
	}
	ts, err := spacing(&h.p, n)
	if err != nil {
		return err
	}
	return h.fromTimesteps(ts)
}

func (h *Heun) SetCustomTimesteps(timesteps []float64) error {
	if err := h.p.checkCustomTimesteps(timesteps); err != nil {
		return err
	}
	ts := make([]float64, len(timesteps))
	for i, t := range timesteps {
		ts[i] = float64(float32(t))
	}
	return h.fromTimesteps(ts)
}

func (h *Heun) SetCustomSigmas([]float64) error {
	return errNotSupported(h.p.Class, "custom sigmas")
}

func (h *Heun) fromTimesteps(ts []float64) error {
	sig64 := make([]float64, len(ts))
	for i, t := range ts {
		sig64[i] = npInterp(t, h.trainSig)
	}
	if conv, cts, ok := sigmaConversion(&h.p, sig64, h.logSig, len(ts)); ok {
		sig64, ts = conv, cts
	}
	sig := make([]float32, len(sig64)+1)
	for i, v := range sig64 {
		sig[i] = float32(v)
	}
	// sigmas: [s0, s1, s1, s2, s2, ..., s_{n-1}, s_{n-1}, 0]
	// timesteps: [t0, t1, t1, ..., t_{n-1}, t_{n-1}]
	h.sigmas = doubleInterior(sig)
	h.timesteps = make([]float64, 0, 2*len(ts)-1)
	for i, t := range ts {
		t = float64(float32(t))
		h.timesteps = append(h.timesteps, t)
		if i > 0 {
			h.timesteps = append(h.timesteps, t)
		}
	}
	h.prevDerivative, h.prevSample, h.hasDt = nil, nil, false
	h.cur.reset()
	return nil
}

// doubleInterior is cat([s[:1], s[1:-1].repeat_interleave(2), s[-1:]]).
func doubleInterior(s []float32) []float32 {
	out := []float32{s[0]}
	for _, v := range s[1 : len(s)-1] {
		out = append(out, v, v)
	}
	return append(out, s[len(s)-1])
}

func (h *Heun) firstOrder() bool { return !h.hasDt }

func (h *Heun) ScaleModelInput(sample []float32, t float64) ([]float32, error) {
	if err := h.ready(t); err != nil {
		return nil, err
	}
	return scaleBySigma(sample, h.sigmas[h.cur.step]), nil
}

func (h *Heun) Step(modelOutput []float32, t float64, sample []float32, _ NoiseSource) ([]float32, error) {
	if err := checkLen(h.p.Class, "model output", modelOutput, sample); err != nil {
		return nil, err
	}
	if err := h.ready(t); err != nil {
		return nil, err
	}
	i := h.cur.step
	var sigma, sigmaNext float32
	if h.firstOrder() {
		sigma, sigmaNext = h.sigmas[i], h.sigmas[i+1]
	} else {
		if i < 1 {
			return nil, fmt.Errorf("%s: correction stage at step 0", h.p.Class)
		}
		sigma, sigmaNext = h.sigmas[i-1], h.sigmas[i]
	}
	sigmaHat := sigma // gamma = 0
	sigmaInput := sigmaHat
	if !h.firstOrder() {
		sigmaInput = sigmaNext
	}
	pred, err := predX0(h.p.Class, h.p.PredictionType, modelOutput, sample, sigmaInput, true)
	if err != nil {
		return nil, err
	}
	if h.p.ClipSample {
		r := float32(h.p.ClipSampleRange)
		for k, v := range pred {
			pred[k] = min(max(v, -r), r)
		}
	}
	out := make([]float32, len(sample))
	if h.firstOrder() {
		dt := sigmaNext - sigmaHat
		deriv := make([]float32, len(sample))
		for k := range out {
			deriv[k] = (sample[k] - pred[k]) / sigmaHat
			out[k] = sample[k] + deriv[k]*dt
		}
		h.prevDerivative, h.dt, h.hasDt = deriv, dt, true
		h.prevSample = append([]float32(nil), sample...)
	} else {
		dt := h.dt
		for k := range out {
			d := (sample[k] - pred[k]) / sigmaNext
			d = (h.prevDerivative[k] + d) / 2
			out[k] = h.prevSample[k] + d*dt
		}
		h.prevDerivative, h.prevSample, h.hasDt = nil, nil, false
	}
	h.cur.step++
	return out, nil
}

func (h *Heun) AddNoise(original, noise []float32, t float64) ([]float32, error) {
	return h.addNoiseSigma(original, noise, t)
}
