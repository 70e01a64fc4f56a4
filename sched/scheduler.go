package sched

import (
	"errors"
	"fmt"
	"math"
)

// Scheduler is one diffusers noise scheduler. A pipeline calls SetTimesteps,
// scales the initial noise by InitNoiseSigma, and for every t of Timesteps
// calls ScaleModelInput before the model and Step after it, exactly like a
// diffusers pipeline loop. Samples and model outputs are flat float32
// slices (the latent tensor in its row-major order); a batch simply makes
// them longer, since every scheduler treats all elements alike.
//
// Methods that take a timestep t expect a value of Timesteps(); schedulers
// that track their position (sigma-based and multistep ones) locate t the
// way diffusers' index_for_timestep does on the first call, unless
// SetBeginIndex was called. Step never modifies its arguments and returns
// a new slice.
type Scheduler interface {
	// ClassName is the diffusers class this scheduler reproduces.
	ClassName() string
	// Config is the resolved configuration: every option the class reads,
	// with the class defaults filled in.
	Config() Params
	// Order is the number of model evaluations per solver step (2 for Heun
	// and KDPM2, whose timestep lists repeat every interior step).
	Order() int

	// SetTimesteps prepares numInferenceSteps steps.
	SetTimesteps(numInferenceSteps int) error
	// SetCustomTimesteps uses the given timesteps instead of a spacing
	// (diffusers' set_timesteps(timesteps=...)); it is an error for classes
	// that do not accept them.
	SetCustomTimesteps(timesteps []float64) error
	// SetCustomSigmas uses the given sigmas, the last one being the final
	// sigma (diffusers' set_timesteps(sigmas=...)); it is an error for
	// classes that do not accept them.
	SetCustomSigmas(sigmas []float64) error

	// Timesteps are the values to feed the model, in order, as float64
	// (diffusers stores them as int64 or float32; both convert exactly).
	Timesteps() []float64
	// Sigmas is the sigma schedule including its final value, or nil for
	// schedulers that have none (DDIM, DDPM, PNDM).
	Sigmas() []float32
	// InitNoiseSigma scales the initial noise (latents * init_noise_sigma).
	InitNoiseSigma() float64
	// SetBeginIndex makes the next step start at this index of Timesteps()
	// (diffusers' set_begin_index, used by img2img and the refiner). It is
	// a no-op for schedulers that find their position from t (DDIM, DDPM,
	// PNDM), as in diffusers.
	SetBeginIndex(i int)
	// StepIndex is the index of the next step, or -1 before the first one
	// (or for schedulers without a step index).
	StepIndex() int

	// ScaleModelInput returns the sample scaled for the model at t.
	ScaleModelInput(sample []float32, t float64) ([]float32, error)
	// Step advances sample by one step given the model output at t.
	// Stochastic schedulers draw their noise from noise, in the order and
	// sizes diffusers draws it from the step's generator; deterministic
	// ones ignore it (it may be nil).
	Step(modelOutput []float32, t float64, sample []float32, noise NoiseSource) ([]float32, error)
	// AddNoise noises original with noise to the level of timestep t
	// (img2img's starting latents).
	AddNoise(original, noise []float32, t float64) ([]float32, error)
}

// NoiseDType says in which dtype diffusers draws a step's noise.
type NoiseDType int

const (
	// NoiseModelDType is randn_tensor(..., dtype=model_output.dtype): the
	// model's dtype, float16 in a half-precision pipeline.
	NoiseModelDType NoiseDType = iota
	// NoiseFloat32 is an explicit torch.float32 draw (DPM-Solver multistep
	// SDE variants).
	NoiseFloat32
)

// NoiseSource supplies the random tensors a stochastic step draws, like the
// torch.Generator passed to diffusers' step(generator=...).
type NoiseSource interface {
	// Randn returns n standard normal values, continuing the stream.
	Randn(n int, dtype NoiseDType) ([]float32, error)
}

// Generator is a torch-compatible random stream (sched/torchrand's CPU and
// CUDA generators).
type Generator interface {
	Randn(n int) []float32
	RandnHalf(n int) []float32
}

// GeneratorNoise draws step noise from a torch-compatible generator. With
// ModelHalf set, draws in the model's dtype are made in float16 (what a
// half-precision diffusers pipeline does); float32 draws stay float32.
type GeneratorNoise struct {
	Gen       Generator
	ModelHalf bool
}

// Randn implements NoiseSource.
func (g GeneratorNoise) Randn(n int, dtype NoiseDType) ([]float32, error) {
	if g.Gen == nil {
		return nil, errors.New("noise source has no generator")
	}
	if g.ModelHalf && dtype == NoiseModelDType {
		return g.Gen.RandnHalf(n), nil
	}
	return g.Gen.Randn(n), nil
}

// Params is a resolved scheduler configuration: the union of the options
// the supported classes read, each with the default of the class it was
// resolved for. Fields a class does not use keep that class's defaults and
// are ignored.
type Params struct {
	Class string // diffusers class name

	NumTrainTimesteps   int
	BetaStart, BetaEnd  float64
	BetaSchedule        string // linear, scaled_linear, squaredcos_cap_v2 (+ exp, sigmoid, laplace where the class has them)
	TrainedBetas        []float64
	PredictionType      string // epsilon, v_prediction, sample
	TimestepSpacing     string // linspace, leading, trailing
	StepsOffset         int
	RescaleBetasZeroSNR bool

	InterpolationType    string // Euler: linear, log_linear
	TimestepType         string // Euler: discrete, continuous
	UseKarrasSigmas      bool
	UseExponentialSigmas bool
	UseBetaSigmas        bool
	UseLuLambdas         bool
	UseFlowSigmas        bool
	// SigmaMin and SigmaMax bound Karras/exponential/beta schedules when
	// set (any class: diffusers reads them from the config whenever the
	// key is present); for EDM they are the schedule's ends.
	SigmaMin, SigmaMax *float64
	FinalSigmasType    string // zero, sigma_min

	ClipSample               bool
	ClipSampleRange          float64
	SetAlphaToOne            bool
	Thresholding             bool
	DynamicThresholdingRatio float64
	SampleMaxValue           float64
	VarianceType             string // DDPM: fixed_small...; DPM: "" (None), learned, learned_range
	SkipPRKSteps             bool   // PNDM

	SolverOrder      int
	AlgorithmType    string // DPM: dpmsolver++, sde-dpmsolver++, dpmsolver, sde-dpmsolver; DEIS: deis
	SolverType       string // midpoint, heun; logrho; bh1, bh2
	LowerOrderFinal  bool
	EulerAtFinal     bool
	LambdaMinClipped float64
	PredictX0        bool  // UniPC
	DisableCorrector []int // UniPC

	SigmaData     float64 // EDM
	SigmaSchedule string  // EDM: karras, exponential
	Rho           float64 // EDM

	// Keys lists the configuration keys the class reads (its diffusers
	// __init__ options, plus sigma_min/sigma_max and "eta" where used).
	Keys []string

	// Eta is DDIM's step(eta=...) argument, not a diffusers config key:
	// 0 is deterministic DDIM (the pipeline default), 1 is DDPM-like.
	// Set it with the config key "eta".
	Eta float64
}

// errNotSupported formats the error for an option a class does not take.
func errNotSupported(class, what string) error {
	return fmt.Errorf("%s does not support %s", class, what)
}

// checkLen verifies that two flat tensors match.
func checkLen(class, what string, a, b []float32) error {
	if len(a) != len(b) {
		return fmt.Errorf("%s: %s has %d elements, sample has %d", class, what, len(a), len(b))
	}
	if len(a) == 0 {
		return fmt.Errorf("%s: empty sample", class)
	}
	return nil
}

// drawNoise draws n values and checks the source's answer.
func drawNoise(class string, src NoiseSource, n int, dt NoiseDType) ([]float32, error) {
	if src == nil {
		return nil, fmt.Errorf("%s is stochastic: Step needs a noise source", class)
	}
	v, err := src.Randn(n, dt)
	if err != nil {
		return nil, fmt.Errorf("%s: drawing step noise: %w", class, err)
	}
	if len(v) != n {
		return nil, fmt.Errorf("%s: noise source returned %d values, want %d", class, len(v), n)
	}
	return v, nil
}

// cursor is the step_index / begin_index bookkeeping shared by the
// schedulers that track their position.
type cursor struct {
	step  int // -1: None
	begin int // -1: None
}

func (c *cursor) reset() { c.step, c.begin = -1, -1 }

// init is _init_step_index: begin_index if set, else the index of t.
func (c *cursor) init(class string, timesteps []float64, t float64) error {
	if c.step >= 0 {
		return nil
	}
	if c.begin >= 0 {
		c.step = c.begin
		return nil
	}
	i := indexOf(timesteps, t)
	if i < 0 {
		return fmt.Errorf("%s: timestep %v is not in the schedule", class, t)
	}
	c.step = i
	return nil
}

// checkSteps validates a requested step count.
func checkSteps(class string, n, trainSteps int) error {
	if n < 1 {
		return fmt.Errorf("%s: num_inference_steps = %d, need at least 1", class, n)
	}
	if n > trainSteps {
		return fmt.Errorf("%s: num_inference_steps = %d exceeds num_train_timesteps = %d", class, n, trainSteps)
	}
	return nil
}

// checkStepIndex guards against stepping past the end of the schedule.
func checkStepIndex(class string, i, nTimesteps int) error {
	if i < 0 || i >= nTimesteps {
		return fmt.Errorf("%s: step %d is outside the %d-step schedule (call SetTimesteps again)", class, i, nTimesteps)
	}
	return nil
}

// predictionError is the error for an unsupported prediction type.
func predictionError(class, pt string, allowed string) error {
	return fmt.Errorf("%s: prediction_type %q is not supported (want %s)", class, pt, allowed)
}

// isInt reports whether t is an integral value usable as a table index.
func isInt(t float64, n int) bool {
	return t == math.Trunc(t) && t >= 0 && t < float64(n)
}

// checkCustomTimesteps is the validation every set_timesteps(timesteps=...)
// shares: a non-empty list, and no converted sigma schedule (Karras, Lu,
// exponential, beta), which would replace the given timesteps.
func (p *Params) checkCustomTimesteps(timesteps []float64) error {
	if len(timesteps) == 0 {
		return fmt.Errorf("%s: empty custom timesteps", p.Class)
	}
	if p.UseKarrasSigmas || p.UseLuLambdas || p.UseExponentialSigmas || p.UseBetaSigmas {
		return fmt.Errorf("%s: custom timesteps cannot be combined with Karras, Lu, exponential or beta sigmas", p.Class)
	}
	return nil
}
