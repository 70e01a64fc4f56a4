package sched

import (
	"fmt"
	"math"
)

// alphaSchedule is the state shared by the schedulers that work on
// cumulative alphas indexed by integer timesteps (DDIM, DDPM, PNDM): they
// have no sigmas and no step index; each step finds its place from t.
type alphaSchedule struct {
	p         Params
	tables    alphaTables
	timesteps []float64
	numSteps  int // num_inference_steps (0: not set)
}

func newAlphaSchedule(p Params, extraBetas ...string) (alphaSchedule, error) {
	t, err := newAlphaTables(&p, false, extraBetas...)
	if err != nil {
		return alphaSchedule{}, err
	}
	return alphaSchedule{p: p, tables: t}, nil
}

func (a *alphaSchedule) Config() Params          { return a.p }
func (a *alphaSchedule) Timesteps() []float64    { return append([]float64(nil), a.timesteps...) }
func (a *alphaSchedule) Sigmas() []float32       { return nil }
func (a *alphaSchedule) InitNoiseSigma() float64 { return 1.0 }
func (a *alphaSchedule) SetBeginIndex(int)       {}
func (a *alphaSchedule) StepIndex() int          { return -1 }
func (a *alphaSchedule) Order() int              { return 1 }

func (a *alphaSchedule) ScaleModelInput(sample []float32, t float64) ([]float32, error) {
	return append([]float32(nil), sample...), nil
}

// intSpacing is the int64 timestep spacing of DDIM and DDPM.
func intSpacing(p *Params, n int) ([]float64, error) {
	N := p.NumTrainTimesteps
	ts := make([]float64, 0, n)
	switch p.TimestepSpacing {
	case "linspace":
		l := npLinspace(0, float64(N-1), n)
		for i := n - 1; i >= 0; i-- {
			ts = append(ts, roundHalfEven(l[i]))
		}
	case "leading":
		ratio := N / n
		for i := n - 1; i >= 0; i-- {
			ts = append(ts, float64(i*ratio+p.StepsOffset))
		}
	case "trailing":
		for _, v := range npArange(float64(N), 0, -float64(N)/float64(n)) {
			ts = append(ts, roundHalfEven(v)-1)
		}
	default:
		return nil, fmt.Errorf("%s: timestep_spacing %q is not supported (want linspace, leading or trailing)", p.Class, p.TimestepSpacing)
	}
	return ts, nil
}

// alphaAt is alphas_cumprod[t] for an integral t.
func (a *alphaSchedule) alphaAt(t float64) (float32, error) {
	if !isInt(t, len(a.tables.alphasCumprod)) {
		return 0, fmt.Errorf("%s: timestep %v is not an integer training timestep in [0, %d)", a.p.Class, t, len(a.tables.alphasCumprod))
	}
	return a.tables.alphasCumprod[int(t)], nil
}

// addNoiseAlpha is sqrt(a_t) * original + sqrt(1 - a_t) * noise.
func (a *alphaSchedule) addNoiseAlpha(original, noise []float32, t float64) ([]float32, error) {
	if err := checkLen(a.p.Class, "noise", noise, original); err != nil {
		return nil, err
	}
	ac, err := a.alphaAt(t)
	if err != nil {
		return nil, err
	}
	sa, sb := sqrt32(ac), sqrt32(1-ac)
	out := make([]float32, len(original))
	for i := range out {
		out[i] = sa*original[i] + sb*noise[i]
	}
	return out, nil
}

// checkNoThreshold rejects dynamic thresholding, which needs the batch
// layout of the sample (a per-image quantile) that a flat slice lacks.
func checkNoThreshold(p *Params) error {
	if p.Thresholding {
		return fmt.Errorf("%s: thresholding (dynamic thresholding for pixel-space models) is not supported", p.Class)
	}
	return nil
}

// x0AndEps converts a model output into the predicted clean sample and
// noise for cumulative alpha ac (DDIM/DDPM parameterisations).
func x0AndEps(class, pt string, m, sample []float32, ac float32) (x0, eps []float32, err error) {
	bt := 1 - ac
	sa, sb := sqrt32(ac), sqrt32(bt)
	x0 = make([]float32, len(sample))
	eps = make([]float32, len(sample))
	switch pt {
	case "epsilon":
		for i := range x0 {
			x0[i] = (sample[i] - sb*m[i]) / sa
		}
		copy(eps, m)
	case "sample":
		copy(x0, m)
		for i := range eps {
			eps[i] = (sample[i] - sa*x0[i]) / sb
		}
	case "v_prediction":
		for i := range x0 {
			x0[i] = sa*sample[i] - sb*m[i]
			eps[i] = sa*m[i] + sb*sample[i]
		}
	default:
		return nil, nil, predictionError(class, pt, "epsilon, sample or v_prediction")
	}
	return x0, eps, nil
}

func clampAll(x []float32, r float64) {
	lim := float32(r)
	for i, v := range x {
		x[i] = min(max(v, -lim), lim)
	}
}

// DDIM is diffusers' DDIMScheduler. Params.Eta is step()'s eta: 0 (the
// pipelines' default) is deterministic; eta > 0 adds noise drawn at every
// step.
type DDIM struct {
	alphaSchedule
	finalAlpha float32
}

func newDDIM(p Params) (Scheduler, error) {
	if err := checkNoThreshold(&p); err != nil {
		return nil, err
	}
	if p.Eta < 0 || math.IsNaN(p.Eta) {
		return nil, fmt.Errorf("%s: eta = %v, want >= 0", p.Class, p.Eta)
	}
	a, err := newAlphaSchedule(p)
	if err != nil {
		return nil, err
	}
	d := &DDIM{alphaSchedule: a, finalAlpha: 1}
	if !p.SetAlphaToOne {
		d.finalAlpha = a.tables.alphasCumprod[0]
	}
	return d, nil
}

func (d *DDIM) ClassName() string { return "DDIMScheduler" }

func (d *DDIM) SetTimesteps(n int) error {
	if err := checkSteps(d.p.Class, n, d.p.NumTrainTimesteps); err != nil {
		return err
	}
	ts, err := intSpacing(&d.p, n)
	if err != nil {
		return err
	}
	d.timesteps, d.numSteps = ts, n
	return nil
}

func (d *DDIM) SetCustomTimesteps([]float64) error {
	return errNotSupported(d.p.Class, "custom timesteps")
}

func (d *DDIM) SetCustomSigmas([]float64) error { return errNotSupported(d.p.Class, "custom sigmas") }

func (d *DDIM) Step(modelOutput []float32, t float64, sample []float32, noise NoiseSource) ([]float32, error) {
	if err := checkLen(d.p.Class, "model output", modelOutput, sample); err != nil {
		return nil, err
	}
	if d.numSteps == 0 {
		return nil, fmt.Errorf("%s: SetTimesteps has not been called", d.p.Class)
	}
	prevT := t - float64(d.p.NumTrainTimesteps/d.numSteps)
	at, err := d.alphaAt(t)
	if err != nil {
		return nil, err
	}
	aPrev := d.finalAlpha
	if prevT >= 0 {
		if aPrev, err = d.alphaAt(prevT); err != nil {
			return nil, err
		}
	}
	x0, eps, err := x0AndEps(d.p.Class, d.p.PredictionType, modelOutput, sample, at)
	if err != nil {
		return nil, err
	}
	if d.p.ClipSample {
		clampAll(x0, d.p.ClipSampleRange)
	}
	// _get_variance: beta_prev / beta_t * (1 - a_t / a_prev)
	variance := (1 - aPrev) / (1 - at) * (1 - at/aPrev)
	std := float32(d.p.Eta) * sqrt32(variance)
	dirCoeff := sqrt32(1 - aPrev - std*std)
	xCoeff := sqrt32(aPrev)
	out := make([]float32, len(sample))
	for i := range out {
		out[i] = xCoeff*x0[i] + dirCoeff*eps[i]
	}
	if d.p.Eta > 0 {
		z, err := drawNoise(d.p.Class, noise, len(sample), NoiseModelDType)
		if err != nil {
			return nil, err
		}
		for i := range out {
			out[i] += std * z[i]
		}
	}
	return out, nil
}

func (d *DDIM) AddNoise(original, noise []float32, t float64) ([]float32, error) {
	return d.addNoiseAlpha(original, noise, t)
}

// DDPM is diffusers' DDPMScheduler (ancestral sampling; noise is drawn at
// every step with t > 0).
type DDPM struct {
	alphaSchedule
	custom bool
}

func newDDPM(p Params) (Scheduler, error) {
	if err := checkNoThreshold(&p); err != nil {
		return nil, err
	}
	switch p.VarianceType {
	case "fixed_small", "fixed_small_log", "fixed_large":
	default:
		return nil, fmt.Errorf("%s: variance_type %q is not supported (want fixed_small, fixed_small_log or fixed_large)", p.Class, p.VarianceType)
	}
	a, err := newAlphaSchedule(p, "sigmoid", "laplace")
	if err != nil {
		return nil, err
	}
	return &DDPM{alphaSchedule: a}, nil
}

func (d *DDPM) ClassName() string { return "DDPMScheduler" }

func (d *DDPM) SetTimesteps(n int) error {
	if err := checkSteps(d.p.Class, n, d.p.NumTrainTimesteps); err != nil {
		return err
	}
	ts, err := intSpacing(&d.p, n)
	if err != nil {
		return err
	}
	d.timesteps, d.numSteps, d.custom = ts, n, false
	return nil
}

func (d *DDPM) SetCustomTimesteps(timesteps []float64) error {
	if len(timesteps) == 0 {
		return fmt.Errorf("%s: empty custom timesteps", d.p.Class)
	}
	ts := make([]float64, len(timesteps))
	for i, t := range timesteps {
		if t != math.Trunc(t) {
			return fmt.Errorf("%s: custom timestep %v is not an integer", d.p.Class, t)
		}
		if i > 0 && t >= timesteps[i-1] {
			return fmt.Errorf("%s: custom timesteps must be in descending order (%v after %v)", d.p.Class, t, timesteps[i-1])
		}
		ts[i] = t
	}
	if ts[0] >= float64(d.p.NumTrainTimesteps) {
		return fmt.Errorf("%s: custom timesteps must start below num_train_timesteps = %d", d.p.Class, d.p.NumTrainTimesteps)
	}
	d.timesteps, d.custom = ts, true
	return nil
}

func (d *DDPM) SetCustomSigmas([]float64) error { return errNotSupported(d.p.Class, "custom sigmas") }

// previousTimestep is previous_timestep: the next entry of the schedule
// (or -1 after the last) once timesteps are set, else t - 1.
func (d *DDPM) previousTimestep(t float64) (float64, error) {
	if !d.custom && d.numSteps == 0 {
		return t - 1, nil
	}
	for i, v := range d.timesteps {
		if v == t {
			if i == len(d.timesteps)-1 {
				return -1, nil
			}
			return d.timesteps[i+1], nil
		}
	}
	return 0, fmt.Errorf("%s: timestep %v is not in the schedule", d.p.Class, t)
}

func (d *DDPM) Step(modelOutput []float32, t float64, sample []float32, noise NoiseSource) ([]float32, error) {
	if err := checkLen(d.p.Class, "model output", modelOutput, sample); err != nil {
		return nil, err
	}
	prevT, err := d.previousTimestep(t)
	if err != nil {
		return nil, err
	}
	at, err := d.alphaAt(t)
	if err != nil {
		return nil, err
	}
	aPrev := float32(1)
	if prevT >= 0 {
		if aPrev, err = d.alphaAt(prevT); err != nil {
			return nil, err
		}
	}
	bt, bPrev := 1-at, 1-aPrev
	curAlpha := at / aPrev
	curBeta := 1 - curAlpha
	x0, _, err := x0AndEps(d.p.Class, d.p.PredictionType, modelOutput, sample, at)
	if err != nil {
		return nil, err
	}
	if d.p.ClipSample {
		clampAll(x0, d.p.ClipSampleRange)
	}
	c0 := sqrt32(aPrev) * curBeta / bt
	c1 := sqrt32(curAlpha) * bPrev / bt
	out := make([]float32, len(sample))
	for i := range out {
		out[i] = c0*x0[i] + c1*sample[i]
	}
	if t > 0 {
		z, err := drawNoise(d.p.Class, noise, len(sample), NoiseModelDType)
		if err != nil {
			return nil, err
		}
		// _get_variance recomputes current_beta_t from the same alphas.
		beta := 1 - at/aPrev
		v := (1 - aPrev) / (1 - at) * beta
		v = max(v, 1e-20)
		var scale float32
		switch d.p.VarianceType {
		case "fixed_small":
			scale = sqrt32(v)
		case "fixed_small_log":
			scale = exp32(0.5 * log32(v))
		case "fixed_large":
			scale = sqrt32(beta)
		}
		for i := range out {
			out[i] += scale * z[i]
		}
	}
	return out, nil
}

func (d *DDPM) AddNoise(original, noise []float32, t float64) ([]float32, error) {
	return d.addNoiseAlpha(original, noise, t)
}

// PNDM is diffusers' PNDMScheduler: Runge-Kutta warm-up steps (unless
// skip_prk_steps, as in the SDXL config) followed by the pseudo linear
// multistep method.
type PNDM struct {
	alphaSchedule
	finalAlpha     float32
	prkTimesteps   []float64
	ets            [][]float32
	counter        int
	curModelOutput []float32 // nil stands for the Python int 0
	curSample      []float32
}

func newPNDM(p Params) (Scheduler, error) {
	if p.PredictionType != "epsilon" && p.PredictionType != "v_prediction" {
		return nil, predictionError(p.Class, p.PredictionType, "epsilon or v_prediction")
	}
	a, err := newAlphaSchedule(p)
	if err != nil {
		return nil, err
	}
	s := &PNDM{alphaSchedule: a, finalAlpha: 1}
	if !p.SetAlphaToOne {
		s.finalAlpha = a.tables.alphasCumprod[0]
	}
	return s, nil
}

func (s *PNDM) ClassName() string { return "PNDMScheduler" }

const pndmOrder = 4

func (s *PNDM) SetTimesteps(n int) error {
	if err := checkSteps(s.p.Class, n, s.p.NumTrainTimesteps); err != nil {
		return err
	}
	N := s.p.NumTrainTimesteps
	var base []float64 // _timesteps, ascending
	switch s.p.TimestepSpacing {
	case "linspace":
		for _, v := range npLinspace(0, float64(N-1), n) {
			base = append(base, roundHalfEven(v))
		}
	case "leading":
		ratio := N / n
		for i := 0; i < n; i++ {
			base = append(base, float64(i*ratio+s.p.StepsOffset))
		}
	case "trailing":
		a := npArange(float64(N), 0, -float64(N)/float64(n))
		for i := len(a) - 1; i >= 0; i-- {
			base = append(base, roundHalfEven(a[i])-1)
		}
	default:
		return fmt.Errorf("%s: timestep_spacing %q is not supported (want linspace, leading or trailing)", s.p.Class, s.p.TimestepSpacing)
	}
	var prk, plms []float64
	if s.p.SkipPRKSteps {
		// concat(_t[:-1], _t[-2:-1], _t[-1:]) reversed
		m := len(base)
		seq := append(append(append([]float64{}, base[:m-1]...), base[max(m-2, 0):m-1]...), base[m-1])
		for i := len(seq) - 1; i >= 0; i-- {
			plms = append(plms, seq[i])
		}
	} else {
		if len(base) < pndmOrder {
			return fmt.Errorf("%s: PRK warm-up needs at least %d steps, got %d (set skip_prk_steps)", s.p.Class, pndmOrder, len(base))
		}
		half := float64(N / n / 2)
		var p []float64
		for _, v := range base[len(base)-pndmOrder:] {
			p = append(p, v, v+half)
		}
		p = p[:len(p)-1]
		var rep []float64
		for _, v := range p {
			rep = append(rep, v, v)
		}
		rep = rep[1 : len(rep)-1]
		for i := len(rep) - 1; i >= 0; i-- {
			prk = append(prk, rep[i])
		}
		for i := len(base) - 4; i >= 0; i-- {
			plms = append(plms, base[i])
		}
	}
	s.prkTimesteps = prk
	s.timesteps = append(append([]float64{}, prk...), plms...)
	s.numSteps = n
	s.ets, s.counter, s.curModelOutput, s.curSample = nil, 0, nil, nil
	return nil
}

func (s *PNDM) SetCustomTimesteps([]float64) error {
	return errNotSupported(s.p.Class, "custom timesteps")
}

func (s *PNDM) SetCustomSigmas([]float64) error { return errNotSupported(s.p.Class, "custom sigmas") }

func (s *PNDM) Step(modelOutput []float32, t float64, sample []float32, _ NoiseSource) ([]float32, error) {
	if err := checkLen(s.p.Class, "model output", modelOutput, sample); err != nil {
		return nil, err
	}
	if s.numSteps == 0 {
		return nil, fmt.Errorf("%s: SetTimesteps has not been called", s.p.Class)
	}
	if s.counter < len(s.prkTimesteps) && !s.p.SkipPRKSteps {
		return s.stepPRK(modelOutput, t, sample)
	}
	return s.stepPLMS(modelOutput, t, sample)
}

func scaled(c float32, x []float32) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = c * v
	}
	return out
}

func (s *PNDM) stepPRK(m []float32, t float64, sample []float32) ([]float32, error) {
	diff := float64(s.p.NumTrainTimesteps / s.numSteps / 2)
	if s.counter%2 != 0 {
		diff = 0
	}
	prevT := t - diff
	t = s.prkTimesteps[s.counter/4*4]
	const sixth, third = float32(1.0 / 6), float32(1.0 / 3)
	switch s.counter % 4 {
	case 0:
		s.curModelOutput = addOrInit(s.curModelOutput, scaled(sixth, m))
		s.ets = append(s.ets, m)
		s.curSample = sample
	case 1, 2:
		s.curModelOutput = addOrInit(s.curModelOutput, scaled(third, m))
	case 3:
		m = addOrInit(s.curModelOutput, scaled(sixth, m))
		s.curModelOutput = nil
	}
	cur := s.curSample
	if cur == nil {
		cur = sample
	}
	out, err := s.prevSample(cur, t, prevT, m)
	if err != nil {
		return nil, err
	}
	s.counter++
	return out, nil
}

// addOrInit is acc + x where a nil acc is the Python int 0.
func addOrInit(acc, x []float32) []float32 {
	if acc == nil {
		return append([]float32(nil), x...)
	}
	out := make([]float32, len(x))
	for i := range out {
		out[i] = acc[i] + x[i]
	}
	return out
}

func (s *PNDM) stepPLMS(m []float32, t float64, sample []float32) ([]float32, error) {
	if !s.p.SkipPRKSteps && len(s.ets) < 3 {
		return nil, fmt.Errorf("%s: PLMS steps need the PRK warm-up first", s.p.Class)
	}
	stride := float64(s.p.NumTrainTimesteps / s.numSteps)
	prevT := t - stride
	if s.counter != 1 {
		if len(s.ets) > 3 {
			s.ets = s.ets[len(s.ets)-3:]
		}
		s.ets = append(s.ets, m)
	} else {
		prevT = t
		t += stride
	}
	e := s.ets
	n := len(e)
	eps := make([]float32, len(m))
	switch {
	case n == 1 && s.counter == 0:
		copy(eps, m)
		s.curSample = sample
	case n == 1 && s.counter == 1:
		for i := range eps {
			eps[i] = (m[i] + e[n-1][i]) / 2
		}
		sample = s.curSample
		s.curSample = nil
	case n == 2:
		for i := range eps {
			eps[i] = (3*e[n-1][i] - e[n-2][i]) / 2
		}
	case n == 3:
		for i := range eps {
			eps[i] = (23*e[n-1][i] - 16*e[n-2][i] + 5*e[n-3][i]) / 12
		}
	default:
		c := float32(1.0 / 24)
		for i := range eps {
			eps[i] = c * (55*e[n-1][i] - 59*e[n-2][i] + 37*e[n-3][i] - 9*e[n-4][i])
		}
	}
	out, err := s.prevSample(sample, t, prevT, eps)
	if err != nil {
		return nil, err
	}
	s.counter++
	return out, nil
}

// prevSample is _get_prev_sample (formula (9) of the PNDM paper).
func (s *PNDM) prevSample(sample []float32, t, prevT float64, eps []float32) ([]float32, error) {
	at, err := s.alphaAt(t)
	if err != nil {
		return nil, err
	}
	aPrev := s.finalAlpha
	if prevT >= 0 {
		if aPrev, err = s.alphaAt(prevT); err != nil {
			return nil, err
		}
	}
	bt, bPrev := 1-at, 1-aPrev
	if s.p.PredictionType == "v_prediction" {
		sa, sb := sqrt32(at), sqrt32(bt)
		v := eps
		eps = make([]float32, len(v))
		for i := range eps {
			eps[i] = sa*v[i] + sb*sample[i]
		}
	}
	sc := sqrt32(aPrev / at)
	denom := at*sqrt32(bPrev) + sqrt32(at*bt*aPrev)
	d := aPrev - at
	out := make([]float32, len(sample))
	for i := range out {
		out[i] = sc*sample[i] - d*eps[i]/denom
	}
	return out, nil
}

func (s *PNDM) AddNoise(original, noise []float32, t float64) ([]float32, error) {
	return s.addNoiseAlpha(original, noise, t)
}
