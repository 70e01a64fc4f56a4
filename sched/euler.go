package sched

import (
	"fmt"
	"math"
)

// sigmaSchedule is the state shared by the k-diffusion style schedulers
// (Euler, Euler ancestral, Heun, LMS, KDPM2, EDM Euler): a timestep list, a
// float32 sigma list one longer, and the step cursor.
type sigmaSchedule struct {
	p         Params
	tables    alphaTables
	trainSig  []float32 // sigma of every training timestep, ascending t
	logSig    []float32 // np.log(trainSig), float32
	timesteps []float64
	sigmas    []float32
	cur       cursor
}

func newSigmaSchedule(p Params, extraBetas ...string) (sigmaSchedule, error) {
	t, err := newAlphaTables(&p, true, extraBetas...)
	if err != nil {
		return sigmaSchedule{}, err
	}
	s := sigmaSchedule{p: p, tables: t}
	s.trainSig = t.trainSigmas()
	s.logSig = logSigmas32(s.trainSig)
	s.cur.reset()
	return s, nil
}

func (s *sigmaSchedule) Config() Params       { return s.p }
func (s *sigmaSchedule) Timesteps() []float64 { return append([]float64(nil), s.timesteps...) }
func (s *sigmaSchedule) Sigmas() []float32    { return append([]float32(nil), s.sigmas...) }
func (s *sigmaSchedule) SetBeginIndex(i int)  { s.cur.begin = i }
func (s *sigmaSchedule) StepIndex() int       { return s.cur.step }
func (s *sigmaSchedule) maxSigma() float32 {
	m := float32(math.Inf(-1))
	for _, v := range s.sigmas {
		if v > m || v != v {
			m = v
		}
	}
	return m
}

// kInitNoiseSigma is the k-diffusion init_noise_sigma: the largest sigma
// for linspace/trailing spacing, else sqrt(sigma_max^2 + 1), in float32.
func (s *sigmaSchedule) kInitNoiseSigma() float64 {
	m := s.maxSigma()
	if s.p.TimestepSpacing == "linspace" || s.p.TimestepSpacing == "trailing" {
		return float64(m)
	}
	return float64(sqrt32(m*m + 1))
}

// ready checks that timesteps were set and locates the step.
func (s *sigmaSchedule) ready(t float64) error {
	if s.sigmas == nil {
		return fmt.Errorf("%s: SetTimesteps has not been called", s.p.Class)
	}
	if err := s.cur.init(s.p.Class, s.timesteps, t); err != nil {
		return err
	}
	return checkStepIndex(s.p.Class, s.cur.step, len(s.timesteps))
}

// scaleBySigma is sample / (sigma**2 + 1) ** 0.5.
func scaleBySigma(sample []float32, sigma float32) []float32 {
	d := sqrt32(sigma*sigma + 1)
	out := make([]float32, len(sample))
	for i, v := range sample {
		out[i] = v / d
	}
	return out
}

// predX0 converts a model output to the denoised sample the k-diffusion
// schedulers use, for noise level sigma (sigmaHat for epsilon).
func predX0(class, pt string, modelOutput, sample []float32, sigma float32, allowSample bool) ([]float32, error) {
	out := make([]float32, len(sample))
	switch pt {
	case "epsilon":
		for i := range out {
			out[i] = sample[i] - sigma*modelOutput[i]
		}
	case "v_prediction":
		// model_output * (-sigma / (sigma**2 + 1) ** 0.5) + sample / (sigma**2 + 1)
		s2 := sigma*sigma + 1
		c := -sigma / sqrt32(s2)
		for i := range out {
			out[i] = modelOutput[i]*c + sample[i]/s2
		}
	case "sample", "original_sample":
		if !allowSample {
			return nil, predictionError(class, pt, "epsilon or v_prediction")
		}
		copy(out, modelOutput)
	default:
		return nil, predictionError(class, pt, "epsilon, v_prediction or sample")
	}
	return out, nil
}

// addNoiseSigma is original + noise * sigma at the step add_noise picks:
// the begin index (or current step) when set, else the index of t.
func (s *sigmaSchedule) addNoiseSigma(original, noise []float32, t float64) ([]float32, error) {
	if err := checkLen(s.p.Class, "noise", noise, original); err != nil {
		return nil, err
	}
	if s.sigmas == nil {
		return nil, fmt.Errorf("%s: SetTimesteps has not been called", s.p.Class)
	}
	idx := s.noiseIndex(t)
	if idx < 0 || idx >= len(s.sigmas) {
		return nil, fmt.Errorf("%s: timestep %v is not in the schedule", s.p.Class, t)
	}
	sigma := s.sigmas[idx]
	out := make([]float32, len(original))
	for i := range out {
		out[i] = original[i] + noise[i]*sigma
	}
	return out, nil
}

// noiseIndex is the schedule index add_noise uses for t.
func (s *sigmaSchedule) noiseIndex(t float64) int {
	switch {
	case s.cur.begin < 0:
		return indexOf(s.timesteps, t)
	case s.cur.step >= 0:
		return s.cur.step
	default:
		return s.cur.begin
	}
}

// EulerDiscrete is diffusers' EulerDiscreteScheduler (the SDXL default).
type EulerDiscrete struct {
	sigmaSchedule
}

func newEulerDiscrete(p Params) (Scheduler, error) {
	if n := boolCount(p.UseKarrasSigmas, p.UseExponentialSigmas, p.UseBetaSigmas); n > 1 {
		return nil, fmt.Errorf("%s: only one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas can be set", p.Class)
	}
	if p.FinalSigmasType != "zero" && p.FinalSigmasType != "sigma_min" {
		return nil, fmt.Errorf("%s: final_sigmas_type %q (want zero or sigma_min)", p.Class, p.FinalSigmasType)
	}
	s, err := newSigmaSchedule(p)
	if err != nil {
		return nil, err
	}
	return &EulerDiscrete{s}, nil
}

func boolCount(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

func (e *EulerDiscrete) ClassName() string { return "EulerDiscreteScheduler" }
func (e *EulerDiscrete) Order() int        { return 1 }

func (e *EulerDiscrete) InitNoiseSigma() float64 { return e.kInitNoiseSigma() }

func (e *EulerDiscrete) SetTimesteps(n int) error {
	if err := checkSteps(e.p.Class, n, e.p.NumTrainTimesteps); err != nil {
		return err
	}
	ts, err := spacing(&e.p, n)
	if err != nil {
		return err
	}
	return e.fromTimesteps(ts, len(ts))
}

func (e *EulerDiscrete) SetCustomTimesteps(timesteps []float64) error {
	if err := e.p.checkCustomTimesteps(timesteps); err != nil {
		return err
	}
	if e.continuousV() {
		return fmt.Errorf("%s: custom timesteps cannot be combined with timestep_type continuous and v_prediction", e.p.Class)
	}
	ts := make([]float64, len(timesteps))
	for i, t := range timesteps {
		ts[i] = float64(float32(t))
	}
	return e.fromTimesteps(ts, len(ts))
}

func (e *EulerDiscrete) SetCustomSigmas(sigmas []float64) error {
	if len(sigmas) < 2 {
		return fmt.Errorf("%s: custom sigmas need at least two values (the last is the final sigma)", e.p.Class)
	}
	sig := make([]float32, len(sigmas))
	for i, v := range sigmas {
		sig[i] = float32(v)
	}
	ts := make([]float64, len(sig)-1)
	for i := range ts {
		ts[i] = sigmaToT(float64(sig[i]), e.logSig)
	}
	e.install(ts, sig)
	return nil
}

func (e *EulerDiscrete) continuousV() bool {
	return e.p.TimestepType == "continuous" && e.p.PredictionType == "v_prediction"
}

// fromTimesteps is set_timesteps after the timesteps are chosen.
func (e *EulerDiscrete) fromTimesteps(ts []float64, n int) error {
	var sig64 []float64
	switch e.p.InterpolationType {
	case "linear":
		sig64 = make([]float64, len(ts))
		for i, t := range ts {
			sig64[i] = npInterp(t, e.trainSig)
		}
	case "log_linear":
		// torch.linspace(log(sigma[-1]), log(sigma[0]), n + 1).exp(): n+1
		// values, as diffusers builds them.
		l := torchLinspace32(float64(log32(e.trainSig[len(e.trainSig)-1])), float64(log32(e.trainSig[0])), n+1)
		sig64 = make([]float64, len(l))
		for i, v := range l {
			sig64[i] = float64(exp32(v))
		}
	default:
		return fmt.Errorf("%s: interpolation_type %q is not implemented (want linear or log_linear)", e.p.Class, e.p.InterpolationType)
	}
	if conv, cts, ok := sigmaConversion(&e.p, sig64, e.logSig, n); ok {
		sig64, ts = conv, cts
	}
	var last float32
	if e.p.FinalSigmasType == "sigma_min" {
		ac := e.tables.alphasCumprod[0]
		last = sqrt32((1 - ac) / ac)
	}
	sig := make([]float32, len(sig64)+1)
	for i, v := range sig64 {
		sig[i] = float32(v)
	}
	sig[len(sig64)] = last
	out := make([]float64, len(ts))
	for i, t := range ts {
		out[i] = float64(float32(t))
	}
	e.install(out, sig)
	return nil
}

func (e *EulerDiscrete) install(ts []float64, sig []float32) {
	if e.continuousV() {
		ts = make([]float64, len(sig)-1)
		for i := range ts {
			ts[i] = float64(0.25 * log32(sig[i]))
		}
	}
	e.timesteps, e.sigmas = ts, sig
	e.cur.reset()
}

func (e *EulerDiscrete) ScaleModelInput(sample []float32, t float64) ([]float32, error) {
	if err := e.ready(t); err != nil {
		return nil, err
	}
	return scaleBySigma(sample, e.sigmas[e.cur.step]), nil
}

func (e *EulerDiscrete) Step(modelOutput []float32, t float64, sample []float32, _ NoiseSource) ([]float32, error) {
	if err := checkLen(e.p.Class, "model output", modelOutput, sample); err != nil {
		return nil, err
	}
	if err := e.ready(t); err != nil {
		return nil, err
	}
	i := e.cur.step
	sigma := e.sigmas[i]
	sigmaHat := sigma // s_churn = 0: gamma = 0
	var pred []float32
	var err error
	if e.p.PredictionType == "v_prediction" {
		pred, err = predX0(e.p.Class, e.p.PredictionType, modelOutput, sample, sigma, true)
	} else {
		pred, err = predX0(e.p.Class, e.p.PredictionType, modelOutput, sample, sigmaHat, true)
	}
	if err != nil {
		return nil, err
	}
	dt := e.sigmas[i+1] - sigmaHat
	out := make([]float32, len(sample))
	for k := range out {
		derivative := (sample[k] - pred[k]) / sigmaHat
		out[k] = sample[k] + derivative*dt
	}
	e.cur.step++
	return out, nil
}

func (e *EulerDiscrete) AddNoise(original, noise []float32, t float64) ([]float32, error) {
	return e.addNoiseSigma(original, noise, t)
}
