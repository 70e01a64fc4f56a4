package sched

import (
	"fmt"
	"math"
	"slices"
)

// UniPC is diffusers' UniPCMultistepScheduler: a multistep predictor
// (UniP) with a corrector (UniC) applied to each new sample once the next
// model output is known, in the bh1 or bh2 variant.
type UniPC struct {
	multistepBase
	lastSample []float32
	thisOrder  int
}

func newUniPC(p Params) (Scheduler, error) {
	switch p.SolverType {
	case "bh1", "bh2":
	case "midpoint", "heun", "logrho":
		p.SolverType = "bh2"
	default:
		return nil, fmt.Errorf("%s: solver_type %q is not implemented", p.Class, p.SolverType)
	}
	b, err := newMultistepBase(p, true)
	if err != nil {
		return nil, err
	}
	return &UniPC{multistepBase: b}, nil
}

func (u *UniPC) ClassName() string { return "UniPCMultistepScheduler" }

func (u *UniPC) SetCustomTimesteps([]float64) error {
	return errNotSupported(u.p.Class, "custom timesteps")
}

func (u *UniPC) SetTimesteps(n int) error {
	if err := checkSteps(u.p.Class, n, u.p.NumTrainTimesteps); err != nil {
		return err
	}
	ts, err := dpmSpacing(&u.p, n, u.p.NumTrainTimesteps)
	if err != nil {
		return err
	}
	var sig []float32
	if conv, cts, ok := u.convertedSchedule(n, true); ok {
		ts = cts
		last := float32(0)
		if u.p.FinalSigmasType == "sigma_min" {
			last = float32(conv[len(conv)-1])
		} else if u.p.FinalSigmasType != "zero" {
			return fmt.Errorf("%s: final_sigmas_type %q (want zero or sigma_min)", u.p.Class, u.p.FinalSigmasType)
		}
		sig = make([]float32, len(conv)+1)
		for i, v := range conv {
			sig[i] = float32(v)
		}
		sig[len(conv)] = last
	} else {
		last, err := u.finalSigma()
		if err != nil {
			return err
		}
		sig = make([]float32, len(ts)+1)
		for i, t := range ts {
			sig[i] = float32(npInterp(t, u.trainSig))
		}
		sig[len(ts)] = last
	}
	out := make([]float64, len(ts))
	for i, t := range ts {
		out[i] = toInt64(t)
	}
	u.install(out, sig)
	u.lastSample = nil
	u.thisOrder = 0
	return nil
}

// convert is convert_model_output: x0 when predict_x0, else the noise.
func (u *UniPC) convert(m, sample []float32) ([]float32, error) {
	sigma := u.sigmas[u.cur.step]
	if u.p.PredictX0 {
		q := u.p
		q.AlgorithmType = "dpmsolver++"
		return dpmConvert(&q, sigma, m, sample)
	}
	q := u.p
	q.AlgorithmType = "dpmsolver"
	return dpmConvert(&q, sigma, m, sample)
}

func (u *UniPC) Step(modelOutput []float32, t float64, sample []float32, _ NoiseSource) ([]float32, error) {
	if err := checkLen(u.p.Class, "model output", modelOutput, sample); err != nil {
		return nil, err
	}
	if err := u.ready(t); err != nil {
		return nil, err
	}
	i := u.cur.step
	useCorrector := i > 0 && !slices.Contains(u.p.DisableCorrector, i-1) && u.lastSample != nil
	conv, err := u.convert(modelOutput, sample)
	if err != nil {
		return nil, err
	}
	if useCorrector {
		if sample, err = u.corrector(conv, u.lastSample, sample, u.thisOrder); err != nil {
			return nil, err
		}
	}
	u.pushOutput(conv)
	order := u.p.SolverOrder
	if u.p.LowerOrderFinal {
		order = min(u.p.SolverOrder, len(u.timesteps)-i)
	}
	u.thisOrder = min(order, u.lowerNums+1)
	u.lastSample = sample
	out, err := u.predictor(sample, u.thisOrder)
	if err != nil {
		return nil, err
	}
	if u.lowerNums < u.p.SolverOrder {
		u.lowerNums++
	}
	u.cur.step++
	return out, nil
}

// bhCoefficients builds UniPC's rks, the R matrix rows and b vector
// (float32 tensor arithmetic), for the given order.
func (u *UniPC) bhCoefficients(h float32, rks []float32, order int) (R [][]float32, b []float32, hPhi1, Bh float32) {
	hh := h
	if u.p.PredictX0 {
		hh = -h
	}
	hPhi1 = expm132(hh)
	hPhiK := hPhi1/hh - 1
	factorial := 1
	if u.p.SolverType == "bh1" {
		Bh = hh
	} else {
		Bh = expm132(hh)
	}
	for i := 1; i <= order; i++ {
		row := make([]float32, len(rks))
		for j, r := range rks {
			row[j] = powInt32(r, i-1)
		}
		R = append(R, row)
		b = append(b, hPhiK*float32(factorial)/Bh)
		factorial *= i + 1
		hPhiK = hPhiK/hh - float32(1/float64(factorial))
	}
	return R, b, hPhi1, Bh
}

// powInt32 is torch.pow(x, k) for small integer k on float32.
func powInt32(x float32, k int) float32 {
	switch k {
	case 0:
		return 1
	case 1:
		return x
	case 2:
		return x * x
	}
	return float32(math.Pow(float64(x), float64(k)))
}

// predictor is multistep_uni_p_bh_update.
func (u *UniPC) predictor(x []float32, order int) ([]float32, error) {
	i := u.cur.step
	alphaT, sigmaT := alphaSigma(u.sigmas[i+1])
	alphaS0, sigmaS0 := alphaSigma(u.sigmas[i])
	lt, l0 := lambdaOf(alphaT, sigmaT), lambdaOf(alphaS0, sigmaS0)
	h := lt - l0
	m0 := u.output(1)
	var rks []float32
	var D1s [][]float32
	for k := 1; k < order; k++ {
		si := i - k
		mi := u.output(k + 1)
		a, s := alphaSigma(u.sigmas[si])
		rk := (lambdaOf(a, s) - l0) / h
		rks = append(rks, rk)
		d := make([]float32, len(x))
		for j := range d {
			d[j] = (mi[j] - m0[j]) / rk
		}
		D1s = append(D1s, d)
	}
	rks = append(rks, 1)
	R, b, hPhi1, Bh := u.bhCoefficients(h, rks, order)
	var rhos []float32
	if len(D1s) > 0 {
		if order == 2 {
			rhos = []float32{0.5}
		} else {
			var err error
			if rhos, err = solve32(sub(R, order-1), b[:order-1]); err != nil {
				return nil, fmt.Errorf("%s: predictor: %w", u.p.Class, err)
			}
		}
	}
	out := make([]float32, len(x))
	if u.p.PredictX0 {
		c1 := sigmaT / sigmaS0
		c2 := alphaT * hPhi1
		c3 := alphaT * Bh
		for j := range out {
			xt := c1*x[j] - c2*m0[j]
			if D1s != nil {
				xt -= c3 * einsum(rhos, D1s, j)
			}
			out[j] = xt
		}
	} else {
		c1 := alphaT / alphaS0
		c2 := sigmaT * hPhi1
		c3 := sigmaT * Bh
		for j := range out {
			xt := c1*x[j] - c2*m0[j]
			if D1s != nil {
				xt -= c3 * einsum(rhos, D1s, j)
			}
			out[j] = xt
		}
	}
	return out, nil
}

// corrector is multistep_uni_c_bh_update: it refines thisSample (the
// predictor's result for the current step) using the new model output.
func (u *UniPC) corrector(modelT, last, thisSample []float32, order int) ([]float32, error) {
	i := u.cur.step
	alphaT, sigmaT := alphaSigma(u.sigmas[i])
	alphaS0, sigmaS0 := alphaSigma(u.sigmas[i-1])
	lt, l0 := lambdaOf(alphaT, sigmaT), lambdaOf(alphaS0, sigmaS0)
	h := lt - l0
	m0 := u.output(1)
	var rks []float32
	var D1s [][]float32
	for k := 1; k < order; k++ {
		si := i - (k + 1)
		mi := u.output(k + 1)
		a, s := alphaSigma(u.sigmas[si])
		rk := (lambdaOf(a, s) - l0) / h
		rks = append(rks, rk)
		d := make([]float32, len(last))
		for j := range d {
			d[j] = (mi[j] - m0[j]) / rk
		}
		D1s = append(D1s, d)
	}
	rks = append(rks, 1)
	R, b, hPhi1, Bh := u.bhCoefficients(h, rks, order)
	var rhos []float32
	if order == 1 {
		rhos = []float32{0.5}
	} else {
		var err error
		if rhos, err = solve32(R, b); err != nil {
			return nil, fmt.Errorf("%s: corrector: %w", u.p.Class, err)
		}
	}
	rLast := rhos[len(rhos)-1]
	out := make([]float32, len(last))
	var c1, c2, c3 float32
	if u.p.PredictX0 {
		c1, c2, c3 = sigmaT/sigmaS0, alphaT*hPhi1, alphaT*Bh
	} else {
		c1, c2, c3 = alphaT/alphaS0, sigmaT*hPhi1, sigmaT*Bh
	}
	for j := range out {
		xt := c1*last[j] - c2*m0[j]
		var corr float32
		if D1s != nil {
			corr = einsum(rhos[:len(rhos)-1], D1s, j)
		}
		d1t := modelT[j] - m0[j]
		out[j] = xt - c3*(corr+rLast*d1t)
	}
	return out, nil
}

// einsum is torch.einsum("k,bkc...->bc...", rhos, D1s) at element j.
func einsum(rhos []float32, D1s [][]float32, j int) float32 {
	var s float32
	for k, r := range rhos {
		s += r * D1s[k][j]
	}
	return s
}

// sub returns the leading n x n block of R.
func sub(R [][]float32, n int) [][]float32 {
	out := make([][]float32, n)
	for i := range out {
		out[i] = R[i][:n]
	}
	return out
}

// solve32 is torch.linalg.solve for a small float32 system: LAPACK's LU
// with partial pivoting (sgetrf scales the column below each pivot by the
// pivot's reciprocal), then forward and back substitution.
func solve32(A [][]float32, b []float32) ([]float32, error) {
	n := len(A)
	a := make([][]float32, n)
	for i := range a {
		if len(A[i]) != n {
			return nil, fmt.Errorf("linear solve: matrix is not square")
		}
		a[i] = append([]float32(nil), A[i]...)
	}
	x := append([]float32(nil), b...)
	for k := 0; k < n; k++ {
		p := k
		for i := k + 1; i < n; i++ {
			if abs32(a[i][k]) > abs32(a[p][k]) {
				p = i
			}
		}
		if a[p][k] == 0 {
			return nil, fmt.Errorf("linear solve: singular matrix")
		}
		a[k], a[p] = a[p], a[k]
		x[k], x[p] = x[p], x[k]
		r := 1 / a[k][k]
		for i := k + 1; i < n; i++ {
			a[i][k] *= r
			for j := k + 1; j < n; j++ {
				a[i][j] -= a[i][k] * a[k][j]
			}
		}
	}
	for i := 0; i < n; i++ {
		for j := 0; j < i; j++ {
			x[i] -= a[i][j] * x[j]
		}
	}
	for i := n - 1; i >= 0; i-- {
		for j := i + 1; j < n; j++ {
			x[i] -= a[i][j] * x[j]
		}
		x[i] /= a[i][i]
	}
	return x, nil
}

func abs32(x float32) float32 { return float32(math.Abs(float64(x))) }

func (u *UniPC) AddNoise(original, noise []float32, t float64) ([]float32, error) {
	return u.addNoiseAlphaSigma(original, noise, t)
}
