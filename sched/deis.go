package sched

import "fmt"

// DEIS is diffusers' DEISMultistepScheduler (log-rho DEIS, orders 1-3).
// Its final sigma is the smallest training sigma, not zero.
type DEIS struct {
	multistepBase
}

func newDEIS(p Params) (Scheduler, error) {
	switch p.AlgorithmType {
	case "deis":
	case "dpmsolver", "dpmsolver++":
		p.AlgorithmType = "deis"
	default:
		return nil, fmt.Errorf("%s: algorithm_type %q is not implemented", p.Class, p.AlgorithmType)
	}
	switch p.SolverType {
	case "logrho":
	case "midpoint", "heun", "bh1", "bh2":
		p.SolverType = "logrho"
	default:
		return nil, fmt.Errorf("%s: solver_type %q is not implemented", p.Class, p.SolverType)
	}
	if p.SolverOrder > 3 {
		return nil, fmt.Errorf("%s: solver_order %d (want 1, 2 or 3)", p.Class, p.SolverOrder)
	}
	b, err := newMultistepBase(p, false)
	if err != nil {
		return nil, err
	}
	return &DEIS{b}, nil
}

func (d *DEIS) ClassName() string { return "DEISMultistepScheduler" }

func (d *DEIS) SetCustomTimesteps([]float64) error {
	return errNotSupported(d.p.Class, "custom timesteps")
}

func (d *DEIS) SetTimesteps(n int) error {
	if err := checkSteps(d.p.Class, n, d.p.NumTrainTimesteps); err != nil {
		return err
	}
	ts, err := dpmSpacing(&d.p, n, d.p.NumTrainTimesteps)
	if err != nil {
		return err
	}
	var sig []float32
	if conv, cts, ok := d.convertedSchedule(n, true); ok {
		// The converted schedule ends with its own last sigma repeated.
		ts = cts
		sig = make([]float32, len(conv)+1)
		for i, v := range conv {
			sig[i] = float32(v)
		}
		sig[len(conv)] = float32(conv[len(conv)-1])
	} else {
		sig = make([]float32, len(ts)+1)
		for i, t := range ts {
			sig[i] = float32(npInterp(t, d.trainSig))
		}
		ac := d.tables.alphasCumprod[0]
		sig[len(ts)] = sqrt32((1 - ac) / ac)
	}
	out := make([]float64, len(ts))
	for i, t := range ts {
		out[i] = toInt64(t)
	}
	d.install(out, sig)
	return nil
}

func (d *DEIS) Step(modelOutput []float32, t float64, sample []float32, _ NoiseSource) ([]float32, error) {
	if err := checkLen(d.p.Class, "model output", modelOutput, sample); err != nil {
		return nil, err
	}
	if err := d.ready(t); err != nil {
		return nil, err
	}
	i, nts := d.cur.step, len(d.timesteps)
	p := &d.p
	lowerFinal := i == nts-1 && p.LowerOrderFinal && nts < 15
	lowerSecond := i == nts-2 && p.LowerOrderFinal && nts < 15
	// convert_model_output: x0 from the model, then back to the noise
	// (sample - alpha_t * x0) / sigma_t.
	x0, err := dpmConvert(&d.p, d.sigmas[i], modelOutput, sample)
	if err != nil {
		return nil, err
	}
	alpha, sigmaT := alphaSigma(d.sigmas[i])
	eps := make([]float32, len(sample))
	for k := range eps {
		eps[k] = (sample[k] - alpha*x0[k]) / sigmaT
	}
	d.pushOutput(eps)
	var out []float32
	switch {
	case p.SolverOrder == 1 || d.lowerNums < 1 || lowerFinal:
		out = d.firstOrder(sample)
	case p.SolverOrder == 2 || d.lowerNums < 2 || lowerSecond:
		out = d.secondOrder(sample)
	default:
		out = d.thirdOrder(sample)
	}
	if d.lowerNums < p.SolverOrder {
		d.lowerNums++
	}
	d.cur.step++
	return out, nil
}

func (d *DEIS) firstOrder(sample []float32) []float32 {
	i := d.cur.step
	alphaT, sigmaT := alphaSigma(d.sigmas[i+1])
	alphaS, sigmaS := alphaSigma(d.sigmas[i])
	h := lambdaOf(alphaT, sigmaT) - lambdaOf(alphaS, sigmaS)
	c1 := alphaT / alphaS
	c2 := sigmaT * (exp32(h) - 1)
	m := d.output(1)
	out := make([]float32, len(sample))
	for k := range out {
		out[k] = c1*sample[k] - c2*m[k]
	}
	return out
}

// The DEIS coefficients are evaluated with np.log on float32 scalars
// (float32 results) and float32 tensor arithmetic.

func (d *DEIS) secondOrder(sample []float32) []float32 {
	i := d.cur.step
	alphaT, sigmaT := alphaSigma(d.sigmas[i+1])
	alphaS0, sigmaS0 := alphaSigma(d.sigmas[i])
	alphaS1, sigmaS1 := alphaSigma(d.sigmas[i-1])
	m0, m1 := d.output(1), d.output(2)
	rhoT, rho0, rho1 := sigmaT/alphaT, sigmaS0/alphaS0, sigmaS1/alphaS1
	ind := func(t, b, c float32) float32 {
		return t * (-log32(c) + log32(t) - 1) / (log32(b) - log32(c))
	}
	coef1 := ind(rhoT, rho0, rho1) - ind(rho0, rho0, rho1)
	coef2 := ind(rhoT, rho1, rho0) - ind(rho0, rho1, rho0)
	out := make([]float32, len(sample))
	for k := range out {
		out[k] = alphaT * (sample[k]/alphaS0 + coef1*m0[k] + coef2*m1[k])
	}
	return out
}

func (d *DEIS) thirdOrder(sample []float32) []float32 {
	i := d.cur.step
	alphaT, sigmaT := alphaSigma(d.sigmas[i+1])
	alphaS0, sigmaS0 := alphaSigma(d.sigmas[i])
	alphaS1, sigmaS1 := alphaSigma(d.sigmas[i-1])
	alphaS2, sigmaS2 := alphaSigma(d.sigmas[i-2])
	m0, m1, m2 := d.output(1), d.output(2), d.output(3)
	rhoT, rho0 := sigmaT/alphaT, sigmaS0/alphaS0
	rho1, rho2 := sigmaS1/alphaS1, sigmaS2/alphaS2
	ind := func(t, b, c, dd float32) float32 {
		lt, lb, lc, ld := log32(t), log32(b), log32(c), log32(dd)
		num := t * (lc*(ld-lt+1) - ld*lt + ld + lt*lt - 2*lt + 2)
		den := (lb - lc) * (lb - ld)
		return num / den
	}
	coef1 := ind(rhoT, rho0, rho1, rho2) - ind(rho0, rho0, rho1, rho2)
	coef2 := ind(rhoT, rho1, rho2, rho0) - ind(rho0, rho1, rho2, rho0)
	coef3 := ind(rhoT, rho2, rho0, rho1) - ind(rho0, rho2, rho0, rho1)
	out := make([]float32, len(sample))
	for k := range out {
		out[k] = alphaT * (sample[k]/alphaS0 + coef1*m0[k] + coef2*m1[k] + coef3*m2[k])
	}
	return out
}

func (d *DEIS) AddNoise(original, noise []float32, t float64) ([]float32, error) {
	return d.addNoiseAlphaSigma(original, noise, t)
}
