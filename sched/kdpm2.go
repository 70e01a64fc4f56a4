package sched

import "fmt"

// KDPM2 is diffusers' KDPM2DiscreteScheduler (k-diffusion's DPM-Solver-2):
// each step first moves to the log-midpoint sigma ("interpol"), evaluates
// the model there, then completes the step from the saved sample. Like
// Heun it is second order with an interleaved timestep list; the
// intermediate timesteps are those of the midpoint sigmas. KDPM2Ancestral
// adds ancestral noise after each completed step.
type KDPM2 struct {
	sigmaSchedule
	ancestral      bool
	sigmasInterpol []float32
	sigmasUp       []float32 // ancestral only
	sigmasDown     []float32 // ancestral only
	saved          []float32 // self.sample: set in the first stage
}

func newKDPM2(p Params) (Scheduler, error) { return newKDPM2Any(p, false) }

func newKDPM2Ancestral(p Params) (Scheduler, error) { return newKDPM2Any(p, true) }

func newKDPM2Any(p Params, ancestral bool) (Scheduler, error) {
	if n := boolCount(p.UseKarrasSigmas, p.UseExponentialSigmas, p.UseBetaSigmas); n > 1 {
		return nil, fmt.Errorf("%s: only one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas can be set", p.Class)
	}
	s, err := newSigmaSchedule(p)
	if err != nil {
		return nil, err
	}
	return &KDPM2{sigmaSchedule: s, ancestral: ancestral}, nil
}

func (k *KDPM2) ClassName() string {
	if k.ancestral {
		return "KDPM2AncestralDiscreteScheduler"
	}
	return "KDPM2DiscreteScheduler"
}
func (k *KDPM2) Order() int              { return 2 }
func (k *KDPM2) InitNoiseSigma() float64 { return k.kInitNoiseSigma() }

func (k *KDPM2) SetCustomTimesteps([]float64) error {
	return errNotSupported(k.p.Class, "custom timesteps")
}

func (k *KDPM2) SetCustomSigmas([]float64) error {
	return errNotSupported(k.p.Class, "custom sigmas")
}

// logLerpHalf is a.log().lerp(b.log(), 0.5).exp() on float32 tensors:
// torch's lerp with weight 0.5 computes end - (end - start) * 0.5.
func logLerpHalf(a, b float32) float32 {
	la, lb := log32(a), log32(b)
	return exp32(lb - (lb-la)*0.5)
}

func (k *KDPM2) SetTimesteps(n int) error {
	if err := checkSteps(k.p.Class, n, k.p.NumTrainTimesteps); err != nil {
		return err
	}
	ts, err := spacing(&k.p, n)
	if err != nil {
		return err
	}
	sig64 := make([]float64, len(ts))
	for i, t := range ts {
		sig64[i] = npInterp(t, k.trainSig)
	}
	if conv, cts, ok := sigmaConversion(&k.p, sig64, k.logSig, n); ok {
		sig64, ts = conv, cts
		if k.p.UseKarrasSigmas {
			for i := range ts {
				ts[i] = roundHalfEven(ts[i])
			}
		}
	}
	m := len(sig64)
	sig := make([]float32, m+1) // with the final 0
	for i, v := range sig64 {
		sig[i] = float32(v)
	}
	// timesteps are a float32 tensor, or float64 for the converted
	// (Karras/exponential/beta) schedules, whose dtype the interpolated
	// timesteps then take.
	tsType := func(v float64) float64 { return float64(float32(v)) }
	if k.p.UseKarrasSigmas || k.p.UseExponentialSigmas || k.p.UseBetaSigmas {
		tsType = func(v float64) float64 { return v }
	}
	interp, up, down := k.interpolated(sig)
	// Interpolated timesteps: _sigma_to_t of every interpolated sigma.
	tInterp := make([]float64, m+1)
	for i, s := range interp {
		tInterp[i] = tsType(sigmaToT(float64(s), k.logSig))
	}
	k.sigmas = kdpmDouble(sig)
	k.sigmasInterpol = kdpmDouble(interp)
	if k.ancestral {
		k.sigmasUp = kdpmDouble(up)
		k.sigmasDown = kdpmDouble(down)
	}
	k.timesteps = []float64{tsType(ts[0])}
	for i := 1; i < m; i++ {
		// stack((interp[..], timesteps[1:])): interp first. The plain
		// scheduler pairs timesteps[i] with interp[i]; the ancestral one
		// with interp[i-1].
		ti := tInterp[i]
		if k.ancestral {
			ti = tInterp[i-1]
		}
		k.timesteps = append(k.timesteps, ti, tsType(ts[i]))
	}
	k.saved = nil
	k.cur.reset()
	return nil
}

// interpolated returns the interpolated sigmas (and, for the ancestral
// variant, sigmas_up and sigmas_down) of sigmas sig (with its final 0).
func (k *KDPM2) interpolated(sig []float32) (interp, up, down []float32) {
	m := len(sig) - 1
	interp = make([]float32, m+1)
	if !k.ancestral {
		// sigmas.log().lerp(sigmas.roll(1).log(), 0.5).exp()
		for i := range interp {
			prev := sig[(i+m)%(m+1)]
			interp[i] = logLerpHalf(sig[i], prev)
		}
		return interp, nil, nil
	}
	up = make([]float32, m+1)
	down = make([]float32, m+1)
	for i := range sig {
		next := float32(0)
		if i+1 <= m {
			next = sig[i+1]
		}
		n2, s2 := next*next, sig[i]*sig[i]
		up[i] = sqrt32(n2 * (s2 - n2) / s2)
		down[i] = sqrt32(n2 - up[i]*up[i])
	}
	down[m] = 0
	for i := range interp {
		interp[i] = logLerpHalf(sig[i], down[i])
	}
	interp[m-1], interp[m] = 0, 0
	return interp, up, down
}

// kdpmDouble is cat([s[:1], s[1:].repeat_interleave(2), s[-1:]]).
func kdpmDouble(s []float32) []float32 {
	out := []float32{s[0]}
	for _, v := range s[1:] {
		out = append(out, v, v)
	}
	return append(out, s[len(s)-1])
}

func (k *KDPM2) firstOrder() bool { return k.saved == nil }

func (k *KDPM2) ScaleModelInput(sample []float32, t float64) ([]float32, error) {
	if err := k.ready(t); err != nil {
		return nil, err
	}
	i := k.cur.step
	sigma := k.sigmas[i]
	if !k.firstOrder() {
		if k.ancestral {
			sigma = k.sigmasInterpol[i-1]
		} else {
			sigma = k.sigmasInterpol[i]
		}
	}
	return scaleBySigma(sample, sigma), nil
}

func (k *KDPM2) Step(modelOutput []float32, t float64, sample []float32, noise NoiseSource) ([]float32, error) {
	if err := checkLen(k.p.Class, "model output", modelOutput, sample); err != nil {
		return nil, err
	}
	if err := k.ready(t); err != nil {
		return nil, err
	}
	if k.p.PredictionType == "sample" {
		return nil, fmt.Errorf("%s: prediction_type sample is not implemented (as in diffusers)", k.p.Class)
	}
	i := k.cur.step
	first := k.firstOrder()
	if !first && i < 1 {
		return nil, fmt.Errorf("%s: correction stage at step 0", k.p.Class)
	}
	var sigma, sigmaInterpol, sigmaNext, sigmaUp, sigmaDown float32
	switch {
	case !k.ancestral && first:
		sigma, sigmaInterpol, sigmaNext = k.sigmas[i], k.sigmasInterpol[i+1], k.sigmas[i+1]
	case !k.ancestral:
		sigma, sigmaInterpol, sigmaNext = k.sigmas[i-1], k.sigmasInterpol[i], k.sigmas[i]
	case first:
		sigma, sigmaInterpol, sigmaUp = k.sigmas[i], k.sigmasInterpol[i], k.sigmasUp[i]
		// sigmas_down[step_index - 1] (Python wraps -1 to the last entry;
		// unused in this stage).
		sigmaDown = k.sigmasDown[(i-1+len(k.sigmasDown))%len(k.sigmasDown)]
	default:
		sigma, sigmaInterpol = k.sigmas[i-1], k.sigmasInterpol[i-1]
		sigmaUp, sigmaDown = k.sigmasUp[i-1], k.sigmasDown[i-1]
	}
	sigmaHat := sigma // gamma = 0
	sigmaInput := sigmaHat
	if !first {
		sigmaInput = sigmaInterpol
	}
	pred, err := predX0(k.p.Class, k.p.PredictionType, modelOutput, sample, sigmaInput, false)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(sample))
	if first {
		dt := sigmaInterpol - sigmaHat
		for j := range out {
			d := (sample[j] - pred[j]) / sigmaHat
			out[j] = sample[j] + d*dt
		}
		k.saved = append([]float32(nil), sample...)
	} else {
		var dt float32
		if k.ancestral {
			dt = sigmaDown - sigmaHat
		} else {
			dt = sigmaNext - sigmaHat
		}
		for j := range out {
			d := (sample[j] - pred[j]) / sigmaInterpol
			out[j] = k.saved[j] + d*dt
		}
		k.saved = nil
		if k.ancestral {
			eps, err := drawNoise(k.p.Class, noise, len(sample), NoiseModelDType)
			if err != nil {
				return nil, err
			}
			for j := range out {
				out[j] += eps[j] * sigmaUp
			}
		}
	}
	k.cur.step++
	return out, nil
}

func (k *KDPM2) AddNoise(original, noise []float32, t float64) ([]float32, error) {
	return k.addNoiseSigma(original, noise, t)
}
