package sched

import "fmt"

// DPMSinglestep is diffusers' DPMSolverSinglestepScheduler: DPM-Solver
// (++) in singlestep form, where each block of `order` model evaluations
// starts from the sample at the block's start. The order of every step
// comes from get_order_list.
type DPMSinglestep struct {
	multistepBase
	orders []int
	block  []float32 // self.sample: the sample at the start of the block
}

func newDPMSinglestep(p Params) (Scheduler, error) {
	switch p.AlgorithmType {
	case "dpmsolver", "dpmsolver++", "sde-dpmsolver++":
	case "deis":
		p.AlgorithmType = "dpmsolver++"
	default:
		return nil, fmt.Errorf("%s: algorithm_type %q is not implemented", p.Class, p.AlgorithmType)
	}
	switch p.SolverType {
	case "midpoint", "heun":
	case "logrho", "bh1", "bh2":
		p.SolverType = "midpoint"
	default:
		return nil, fmt.Errorf("%s: solver_type %q is not implemented", p.Class, p.SolverType)
	}
	if p.AlgorithmType == "dpmsolver" && p.FinalSigmasType == "zero" {
		return nil, fmt.Errorf("%s: final_sigmas_type zero is not supported for algorithm_type dpmsolver (use sigma_min)", p.Class)
	}
	if p.VarianceType != "" {
		return nil, fmt.Errorf("%s: variance_type %q (learned variance) is not supported", p.Class, p.VarianceType)
	}
	if p.SolverOrder > 3 {
		return nil, fmt.Errorf("%s: solver_order %d (want 1, 2 or 3)", p.Class, p.SolverOrder)
	}
	b, err := newMultistepBase(p, false)
	if err != nil {
		return nil, err
	}
	return &DPMSinglestep{multistepBase: b}, nil
}

func (d *DPMSinglestep) ClassName() string { return "DPMSolverSinglestepScheduler" }

// orderList is get_order_list.
func (d *DPMSinglestep) orderList(steps int) []int {
	order := d.p.SolverOrder
	var o []int
	rep := func(pat []int, times int) {
		for i := 0; i < times; i++ {
			o = append(o, pat...)
		}
	}
	if d.p.LowerOrderFinal {
		switch order {
		case 3:
			switch steps % 3 {
			case 0:
				rep([]int{1, 2, 3}, steps/3-1)
				o = append(o, 1, 2, 1)
			case 1:
				rep([]int{1, 2, 3}, steps/3)
				o = append(o, 1)
			default:
				rep([]int{1, 2, 3}, steps/3)
				o = append(o, 1, 2)
			}
		case 2:
			if steps%2 == 0 {
				rep([]int{1, 2}, steps/2-1)
				o = append(o, 1, 1)
			} else {
				rep([]int{1, 2}, steps/2)
				o = append(o, 1)
			}
		default:
			rep([]int{1}, steps)
		}
	} else {
		switch order {
		case 3:
			rep([]int{1, 2, 3}, steps/3)
		case 2:
			rep([]int{1, 2}, steps/2)
		default:
			rep([]int{1}, steps)
		}
	}
	if d.p.FinalSigmasType == "zero" && len(o) > 0 {
		o[len(o)-1] = 1
	}
	return o
}

func (d *DPMSinglestep) SetTimesteps(n int) error {
	if err := checkSteps(d.p.Class, n, d.p.NumTrainTimesteps); err != nil {
		return err
	}
	l := npLinspace(0, float64(d.p.NumTrainTimesteps-1-d.clippedIdx()), n+1)
	ts := make([]float64, 0, n)
	for i := n; i >= 1; i-- {
		ts = append(ts, roundHalfEven(l[i]))
	}
	return d.fromTimesteps(ts, n, false)
}

func (d *DPMSinglestep) SetCustomTimesteps(timesteps []float64) error {
	if err := d.p.checkCustomTimesteps(timesteps); err != nil {
		return err
	}
	ts := make([]float64, len(timesteps))
	for i, t := range timesteps {
		ts[i] = toInt64(t)
	}
	return d.fromTimesteps(ts, len(ts), true)
}

func (d *DPMSinglestep) fromTimesteps(ts []float64, n int, custom bool) error {
	if err := d.installTimesteps(ts, n, custom, true); err != nil {
		return err
	}
	d.block = nil
	// diffusers turns lower_order_final on (in its config, permanently)
	// when the steps do not divide into blocks or the final sigma is zero.
	if !d.p.LowerOrderFinal && (n%d.p.SolverOrder != 0 || d.p.FinalSigmasType == "zero") {
		d.p.LowerOrderFinal = true
	}
	d.orders = d.orderList(n)
	return nil
}

func (d *DPMSinglestep) Step(modelOutput []float32, t float64, sample []float32, noise NoiseSource) ([]float32, error) {
	if err := checkLen(d.p.Class, "model output", modelOutput, sample); err != nil {
		return nil, err
	}
	if err := d.ready(t); err != nil {
		return nil, err
	}
	i := d.cur.step
	if i >= len(d.orders) {
		return nil, fmt.Errorf("%s: step %d has no order (schedule of %d steps)", d.p.Class, i, len(d.orders))
	}
	x0, err := dpmConvert(&d.p, d.sigmas[i], modelOutput, sample)
	if err != nil {
		return nil, err
	}
	d.pushOutput(x0)
	var z []float32
	if d.p.AlgorithmType == "sde-dpmsolver++" {
		if z, err = drawNoise(d.p.Class, noise, len(sample), NoiseModelDType); err != nil {
			return nil, err
		}
	}
	order := d.orders[i]
	for order > 1 && d.output(order) == nil {
		order--
	}
	if order == 1 {
		d.block = append([]float32(nil), sample...)
	}
	var out []float32
	switch order {
	case 1:
		out = dpmFirstOrder(&d.p, d.sigmas[i+1], d.sigmas[i], d.output(1), d.block, z)
	case 2:
		out = d.secondOrder(z)
	default:
		out = d.thirdOrder(z)
	}
	d.cur.step++
	return out, nil
}

// secondOrder is singlestep_dpm_solver_second_order_update: from the block
// start at sigma_{i-1}, through the evaluation at sigma_i.
func (d *DPMSinglestep) secondOrder(z []float32) []float32 {
	i := d.cur.step
	p := &d.p
	sample := d.block
	alphaT, sigmaT := alphaSigma(d.sigmas[i+1])
	alphaS0, sigmaS0 := alphaSigma(d.sigmas[i])
	alphaS1, sigmaS1 := alphaSigma(d.sigmas[i-1])
	lt, l0, l1 := lambdaOf(alphaT, sigmaT), lambdaOf(alphaS0, sigmaS0), lambdaOf(alphaS1, sigmaS1)
	m0, m1 := d.output(1), d.output(2)
	h, h0 := lt-l1, l0-l1
	r0 := h0 / h
	inv := 1 / r0
	out := make([]float32, len(sample))
	switch p.AlgorithmType {
	case "dpmsolver++":
		c1 := sigmaT / sigmaS1
		em := exp32(-h) - 1
		c2 := alphaT * em
		c3 := 0.5 * (alphaT * em)
		sign := float32(-1)
		if p.SolverType == "heun" {
			c3, sign = alphaT*(em/h+1), 1
		}
		for k := range out {
			out[k] = c1*sample[k] - c2*m1[k] + sign*(c3*(inv*(m0[k]-m1[k])))
		}
	case "dpmsolver":
		c1 := alphaT / alphaS1
		ep := exp32(h) - 1
		c2 := sigmaT * ep
		c3 := 0.5 * (sigmaT * ep)
		if p.SolverType == "heun" {
			c3 = sigmaT * (ep/h - 1)
		}
		for k := range out {
			out[k] = c1*sample[k] - c2*m1[k] - c3*(inv*(m0[k]-m1[k]))
		}
	case "sde-dpmsolver++":
		e2 := exp32(-2 * h)
		c1 := sigmaT / sigmaS1 * exp32(-h)
		c2 := alphaT * (1 - e2)
		c3 := 0.5 * (alphaT * (1 - e2))
		if p.SolverType == "heun" {
			c3 = alphaT * ((1-e2)/(-2*h) + 1)
		}
		c4 := sigmaT * sqrt32(1-e2)
		for k := range out {
			out[k] = c1*sample[k] + c2*m1[k] + c3*(inv*(m0[k]-m1[k])) + c4*z[k]
		}
	}
	return out
}

// thirdOrder is singlestep_dpm_solver_third_order_update (block start at
// sigma_{i-2}).
func (d *DPMSinglestep) thirdOrder(z []float32) []float32 {
	i := d.cur.step
	p := &d.p
	sample := d.block
	alphaT, sigmaT := alphaSigma(d.sigmas[i+1])
	alphaS0, sigmaS0 := alphaSigma(d.sigmas[i])
	alphaS1, sigmaS1 := alphaSigma(d.sigmas[i-1])
	alphaS2, sigmaS2 := alphaSigma(d.sigmas[i-2])
	lt, l0 := lambdaOf(alphaT, sigmaT), lambdaOf(alphaS0, sigmaS0)
	l1, l2 := lambdaOf(alphaS1, sigmaS1), lambdaOf(alphaS2, sigmaS2)
	m0, m1, m2 := d.output(1), d.output(2), d.output(3)
	h, h0, h1 := lt-l2, l0-l2, l1-l2
	r0, r1 := h0/h, h1/h
	inv1, inv0 := 1/r1, 1/r0
	out := make([]float32, len(sample))
	d10 := func(k int) float32 { return inv1 * (m1[k] - m2[k]) }
	d11 := func(k int) float32 { return inv0 * (m0[k] - m2[k]) }
	D1 := func(k int) float32 { return (r0*d10(k) - r1*d11(k)) / (r0 - r1) }
	D2 := func(k int) float32 { return 2 * (d11(k) - d10(k)) / (r0 - r1) }
	switch p.AlgorithmType {
	case "dpmsolver++":
		em := exp32(-h) - 1
		c1 := sigmaT / sigmaS2
		c2 := alphaT * em
		c3 := alphaT * (em/h + 1)
		if p.SolverType == "midpoint" {
			for k := range out {
				out[k] = c1*sample[k] - c2*m2[k] + c3*d11(k)
			}
		} else {
			c4 := alphaT * ((exp32(-h)-1+h)/(h*h) - 0.5)
			for k := range out {
				out[k] = c1*sample[k] - c2*m2[k] + c3*D1(k) - c4*D2(k)
			}
		}
	case "dpmsolver":
		ep := exp32(h) - 1
		c1 := alphaT / alphaS2
		c2 := sigmaT * ep
		c3 := sigmaT * (ep/h - 1)
		if p.SolverType == "midpoint" {
			for k := range out {
				out[k] = c1*sample[k] - c2*m2[k] - c3*d11(k)
			}
		} else {
			c4 := sigmaT * ((exp32(h)-1-h)/(h*h) - 0.5)
			for k := range out {
				out[k] = c1*sample[k] - c2*m2[k] - c3*D1(k) - c4*D2(k)
			}
		}
	case "sde-dpmsolver++":
		e2 := exp32(-2 * h)
		c1 := sigmaT / sigmaS2 * exp32(-h)
		c2 := alphaT * (1 - e2)
		c3 := alphaT * ((1-e2)/(-2*h) + 1)
		c5 := sigmaT * sqrt32(1-e2)
		if p.SolverType == "midpoint" {
			for k := range out {
				out[k] = c1*sample[k] + c2*m2[k] + c3*d11(k) + c5*z[k]
			}
		} else {
			c4 := alphaT * ((1-e2+(-2*h))/((-2*h)*(-2*h)) - 0.5)
			for k := range out {
				out[k] = c1*sample[k] + c2*m2[k] + c3*D1(k) + c4*D2(k) + c5*z[k]
			}
		}
	}
	return out
}

func (d *DPMSinglestep) AddNoise(original, noise []float32, t float64) ([]float32, error) {
	return d.addNoiseAlphaSigma(original, noise, t)
}
