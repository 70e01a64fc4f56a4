package sched

import "fmt"

// LMS is diffusers' LMSDiscreteScheduler: a linear multistep method of up
// to fourth order on the derivatives of the previous steps. Diffusers
// integrates each Lagrange basis polynomial with scipy.integrate.quad; the
// integrand is a polynomial of degree < 4, which this implementation
// integrates exactly in float64 (the goldens record quad's coefficients;
// they agree to float32 precision).
type LMS struct {
	sigmaSchedule
	derivatives [][]float32
	// lastCoeffs are the coefficients of the latest step (for tests).
	lastCoeffs []float64
}

// lmsOrder is the order diffusers' pipelines use (step's default order=4).
const lmsOrder = 4

func newLMS(p Params) (Scheduler, error) {
	if n := boolCount(p.UseKarrasSigmas, p.UseExponentialSigmas, p.UseBetaSigmas); n > 1 {
		return nil, fmt.Errorf("%s: only one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas can be set", p.Class)
	}
	s, err := newSigmaSchedule(p)
	if err != nil {
		return nil, err
	}
	return &LMS{sigmaSchedule: s}, nil
}

func (l *LMS) ClassName() string       { return "LMSDiscreteScheduler" }
func (l *LMS) Order() int              { return 1 }
func (l *LMS) InitNoiseSigma() float64 { return l.kInitNoiseSigma() }

func (l *LMS) SetTimesteps(n int) error {
	if err := checkSteps(l.p.Class, n, l.p.NumTrainTimesteps); err != nil {
		return err
	}
	ts, err := spacing(&l.p, n)
	if err != nil {
		return err
	}
	sig64 := make([]float64, len(ts))
	for i, t := range ts {
		sig64[i] = npInterp(t, l.trainSig)
	}
	if conv, cts, ok := sigmaConversion(&l.p, sig64, l.logSig, n); ok {
		sig64, ts = conv, cts
	}
	sig := make([]float32, len(sig64)+1)
	for i, v := range sig64 {
		sig[i] = float32(v)
	}
	out := make([]float64, len(ts))
	for i, t := range ts {
		out[i] = float64(float32(t))
	}
	l.timesteps, l.sigmas = out, sig
	l.derivatives = nil
	l.cur.reset()
	return nil
}

func (l *LMS) SetCustomTimesteps([]float64) error {
	return errNotSupported(l.p.Class, "custom timesteps")
}

func (l *LMS) SetCustomSigmas([]float64) error {
	return errNotSupported(l.p.Class, "custom sigmas")
}

func (l *LMS) ScaleModelInput(sample []float32, t float64) ([]float32, error) {
	if err := l.ready(t); err != nil {
		return nil, err
	}
	return scaleBySigma(sample, l.sigmas[l.cur.step]), nil
}

// coefficient is get_lms_coefficient: the integral over [sigma_t,
// sigma_{t+1}] of the Lagrange basis polynomial of node t-current on the
// nodes sigma_t, ..., sigma_{t-order+1}. The nodes are the float32 sigmas.
func (l *LMS) coefficient(order, t, current int) float64 {
	// Build the polynomial's coefficients (ascending powers) in float64.
	poly := []float64{1}
	for k := 0; k < order; k++ {
		if k == current {
			continue
		}
		den := float64(l.sigmas[t-current]) - float64(l.sigmas[t-k])
		root := float64(l.sigmas[t-k])
		next := make([]float64, len(poly)+1)
		for i, c := range poly {
			next[i+1] += c / den
			next[i] -= c * root / den
		}
		poly = next
	}
	a, b := float64(l.sigmas[t]), float64(l.sigmas[t+1])
	integral := func(x float64) float64 {
		s, xp := 0.0, x
		for i, c := range poly {
			s += c * xp / float64(i+1)
			xp *= x
		}
		return s
	}
	return integral(b) - integral(a)
}

func (l *LMS) Step(modelOutput []float32, t float64, sample []float32, _ NoiseSource) ([]float32, error) {
	if err := checkLen(l.p.Class, "model output", modelOutput, sample); err != nil {
		return nil, err
	}
	if err := l.ready(t); err != nil {
		return nil, err
	}
	i := l.cur.step
	sigma := l.sigmas[i]
	pred, err := predX0(l.p.Class, l.p.PredictionType, modelOutput, sample, sigma, true)
	if err != nil {
		return nil, err
	}
	d := make([]float32, len(sample))
	for k := range d {
		d[k] = (sample[k] - pred[k]) / sigma
	}
	l.derivatives = append(l.derivatives, d)
	if len(l.derivatives) > lmsOrder {
		l.derivatives = l.derivatives[1:]
	}
	order := min(i+1, lmsOrder)
	coeffs := make([]float64, order)
	for c := range coeffs {
		coeffs[c] = l.coefficient(order, i, c)
	}
	l.lastCoeffs = coeffs
	// sample + sum(coeff * derivative for coeff, derivative in
	// zip(coeffs, reversed(derivatives))): Python's sum starts from 0 and
	// adds the float32 products left to right.
	// zip stops at the shorter list: after SetBeginIndex there may be
	// fewer derivatives than the order.
	out := make([]float32, len(sample))
	n := len(l.derivatives)
	terms := min(len(coeffs), n)
	for k := range out {
		var acc float32
		for c := 0; c < terms; c++ {
			acc += float32(coeffs[c]) * l.derivatives[n-1-c][k]
		}
		out[k] = sample[k] + acc
	}
	l.cur.step++
	return out, nil
}

func (l *LMS) AddNoise(original, noise []float32, t float64) ([]float32, error) {
	return l.addNoiseSigma(original, noise, t)
}
