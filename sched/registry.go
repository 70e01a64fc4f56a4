package sched

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/sdxl-go/sdxl/internal/jsonobj"
)

// class describes one supported diffusers scheduler class: how to resolve
// its options (with its own defaults) and how to build it.
type class struct {
	read  func(r *jsonobj.Object, p *Params)
	build func(Params) (Scheduler, error)
}

// readBetaKeys reads the options every beta-based class shares.
func readBetaKeys(r *jsonobj.Object, p *Params, start, end float64, prediction, spacing string) {
	p.NumTrainTimesteps = r.Int("num_train_timesteps", 1000)
	p.BetaStart = r.Float("beta_start", start)
	p.BetaEnd = r.Float("beta_end", end)
	p.BetaSchedule = r.Str("beta_schedule", "linear")
	p.TrainedBetas = r.Floats("trained_betas")
	p.PredictionType = r.Str("prediction_type", prediction)
	if spacing == "" { // the class has no timestep_spacing option: always linspace
		p.TimestepSpacing = "linspace"
		return
	}
	p.TimestepSpacing = r.Str("timestep_spacing", spacing)
	p.StepsOffset = r.Int("steps_offset", 0)
}

func readSigmaKinds(r *jsonobj.Object, p *Params) {
	p.UseKarrasSigmas = r.Bool("use_karras_sigmas", false)
	p.UseExponentialSigmas = r.Bool("use_exponential_sigmas", false)
	p.UseBetaSigmas = r.Bool("use_beta_sigmas", false)
}

func readThreshold(r *jsonobj.Object, p *Params) {
	p.Thresholding = r.Bool("thresholding", false)
	p.DynamicThresholdingRatio = r.Float("dynamic_thresholding_ratio", 0.995)
	p.SampleMaxValue = r.Float("sample_max_value", 1.0)
}

func readSolver(r *jsonobj.Object, p *Params, algorithm, solver string, lowerOrderFinal bool) {
	p.SolverOrder = r.Int("solver_order", 2)
	p.AlgorithmType = r.Str("algorithm_type", algorithm)
	p.SolverType = r.Str("solver_type", solver)
	p.LowerOrderFinal = r.Bool("lower_order_final", lowerOrderFinal)
	p.UseFlowSigmas = r.Bool("use_flow_sigmas", false)
}

// classes maps every supported diffusers class name to its resolver and
// constructor. Defaults are those of the class's __init__ in diffusers
// 0.40.
var classes = map[string]class{
	"EulerDiscreteScheduler": {func(r *jsonobj.Object, p *Params) {
		readBetaKeys(r, p, 0.0001, 0.02, "epsilon", "linspace")
		readSigmaKinds(r, p)
		p.InterpolationType = r.Str("interpolation_type", "linear")
		p.TimestepType = r.Str("timestep_type", "discrete", "discrete", "continuous")
		p.RescaleBetasZeroSNR = r.Bool("rescale_betas_zero_snr", false)
		p.FinalSigmasType = r.Str("final_sigmas_type", "zero")
	}, newEulerDiscrete},
	"EulerAncestralDiscreteScheduler": {func(r *jsonobj.Object, p *Params) {
		readBetaKeys(r, p, 0.0001, 0.02, "epsilon", "linspace")
		p.RescaleBetasZeroSNR = r.Bool("rescale_betas_zero_snr", false)
	}, newEulerAncestral},
	"HeunDiscreteScheduler": {func(r *jsonobj.Object, p *Params) {
		readBetaKeys(r, p, 0.00085, 0.012, "epsilon", "linspace")
		readSigmaKinds(r, p)
		p.ClipSample = r.Bool("clip_sample", false)
		p.ClipSampleRange = r.Float("clip_sample_range", 1.0)
	}, newHeun},
	"DDIMScheduler": {func(r *jsonobj.Object, p *Params) {
		readBetaKeys(r, p, 0.0001, 0.02, "epsilon", "leading")
		p.ClipSample = r.Bool("clip_sample", true)
		p.SetAlphaToOne = r.Bool("set_alpha_to_one", true)
		readThreshold(r, p)
		p.ClipSampleRange = r.Float("clip_sample_range", 1.0)
		p.RescaleBetasZeroSNR = r.Bool("rescale_betas_zero_snr", false)
		p.Eta = r.Float("eta", 0)
	}, newDDIM},
	"DDPMScheduler": {func(r *jsonobj.Object, p *Params) {
		readBetaKeys(r, p, 0.0001, 0.02, "epsilon", "leading")
		p.VarianceType = r.Str("variance_type", "fixed_small")
		p.ClipSample = r.Bool("clip_sample", true)
		readThreshold(r, p)
		p.ClipSampleRange = r.Float("clip_sample_range", 1.0)
		p.RescaleBetasZeroSNR = r.Bool("rescale_betas_zero_snr", false)
	}, newDDPM},
	"PNDMScheduler": {func(r *jsonobj.Object, p *Params) {
		readBetaKeys(r, p, 0.0001, 0.02, "epsilon", "leading")
		p.SkipPRKSteps = r.Bool("skip_prk_steps", false)
		p.SetAlphaToOne = r.Bool("set_alpha_to_one", false)
	}, newPNDM},
	"LMSDiscreteScheduler": {func(r *jsonobj.Object, p *Params) {
		readBetaKeys(r, p, 0.0001, 0.02, "epsilon", "linspace")
		readSigmaKinds(r, p)
	}, newLMS},
	"DPMSolverMultistepScheduler": {func(r *jsonobj.Object, p *Params) {
		readBetaKeys(r, p, 0.0001, 0.02, "epsilon", "linspace")
		readSolver(r, p, "dpmsolver++", "midpoint", true)
		readThreshold(r, p)
		readSigmaKinds(r, p)
		p.EulerAtFinal = r.Bool("euler_at_final", false)
		p.UseLuLambdas = r.Bool("use_lu_lambdas", false)
		p.FinalSigmasType = r.Str("final_sigmas_type", "zero")
		p.LambdaMinClipped = r.Float("lambda_min_clipped", math.Inf(-1))
		p.VarianceType = r.Str("variance_type", "")
		p.RescaleBetasZeroSNR = r.Bool("rescale_betas_zero_snr", false)
	}, newDPMMultistep},
	"DPMSolverSinglestepScheduler": {func(r *jsonobj.Object, p *Params) {
		readBetaKeys(r, p, 0.0001, 0.02, "epsilon", "")
		readSolver(r, p, "dpmsolver++", "midpoint", false)
		readThreshold(r, p)
		readSigmaKinds(r, p)
		p.FinalSigmasType = r.Str("final_sigmas_type", "zero")
		p.LambdaMinClipped = r.Float("lambda_min_clipped", math.Inf(-1))
		p.VarianceType = r.Str("variance_type", "")
	}, newDPMSinglestep},
	"KDPM2DiscreteScheduler": {func(r *jsonobj.Object, p *Params) {
		readBetaKeys(r, p, 0.00085, 0.012, "epsilon", "linspace")
		readSigmaKinds(r, p)
	}, newKDPM2},
	"KDPM2AncestralDiscreteScheduler": {func(r *jsonobj.Object, p *Params) {
		readBetaKeys(r, p, 0.00085, 0.012, "epsilon", "linspace")
		readSigmaKinds(r, p)
	}, newKDPM2Ancestral},
	"DEISMultistepScheduler": {func(r *jsonobj.Object, p *Params) {
		readBetaKeys(r, p, 0.0001, 0.02, "epsilon", "linspace")
		readSolver(r, p, "deis", "logrho", true)
		readThreshold(r, p)
		readSigmaKinds(r, p)
	}, newDEIS},
	"UniPCMultistepScheduler": {func(r *jsonobj.Object, p *Params) {
		readBetaKeys(r, p, 0.0001, 0.02, "epsilon", "linspace")
		readSolver(r, p, "", "bh2", true)
		readThreshold(r, p)
		readSigmaKinds(r, p)
		p.PredictX0 = r.Bool("predict_x0", true)
		p.DisableCorrector = r.Ints("disable_corrector", nil)
		p.FinalSigmasType = r.Str("final_sigmas_type", "zero")
		p.RescaleBetasZeroSNR = r.Bool("rescale_betas_zero_snr", false)
	}, newUniPC},
	"EDMEulerScheduler": {func(r *jsonobj.Object, p *Params) {
		p.NumTrainTimesteps = r.Int("num_train_timesteps", 1000)
		p.PredictionType = r.Str("prediction_type", "epsilon")
		p.SigmaData = r.Float("sigma_data", 0.5)
		p.SigmaSchedule = r.Str("sigma_schedule", "karras", "karras", "exponential")
		p.Rho = r.Float("rho", 7.0)
		p.FinalSigmasType = r.Str("final_sigmas_type", "zero")
		// EDM's sigma_min/sigma_max are its schedule's ends, with defaults
		// (a null from another class's config means the default too).
		lo, hi := r.Float("sigma_min", 0.002), r.Float("sigma_max", 80.0)
		p.SigmaMin, p.SigmaMax = &lo, &hi
		p.TimestepSpacing = "linspace"
	}, newEDMEuler},
}

// maxTrainTimesteps bounds num_train_timesteps (real models use 1000; the
// tables are O(N) per step conversion).
const maxTrainTimesteps = 1 << 16

// Resolve resolves cfg for a diffusers class without building a scheduler.
func Resolve(className string, cfg Config) (Params, error) {
	c, ok := classes[className]
	if !ok {
		return Params{}, fmt.Errorf("unknown scheduler class %q (known: %s)", className, strings.Join(ClassNames(), ", "))
	}
	r := newReader(cfg.effective(), className)
	p := Params{Class: className}
	if className != "EDMEulerScheduler" {
		p.SigmaMin, p.SigmaMax = r.OptFloat("sigma_min", nil), r.OptFloat("sigma_max", nil)
	}
	c.read(r, &p)
	if r.Err() != nil {
		return Params{}, r.Err()
	}
	p.Keys = r.Read()
	if err := p.validate(); err != nil {
		return Params{}, err
	}
	return p, nil
}

// ClassNames lists the supported diffusers classes, sorted.
func ClassNames() []string {
	out := make([]string, 0, len(classes))
	for k := range classes {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// FromConfig builds the class named by cfg's "_class_name" from cfg, like
// SchedulerClass.from_config(cfg).
func FromConfig(cfg Config) (Scheduler, error) {
	name := cfg.ClassName()
	if name == "" {
		return nil, fmt.Errorf("scheduler config has no _class_name")
	}
	return NewClass(name, cfg)
}

// NewClass builds a diffusers class from cfg, like
// Class.from_config(cfg): keys the class does not take are ignored, absent
// keys take the class defaults.
func NewClass(className string, cfg Config) (Scheduler, error) {
	p, err := Resolve(className, cfg)
	if err != nil {
		return nil, err
	}
	return classes[className].build(p)
}

// Preset is a CLI scheduler name: a diffusers class plus config overrides.
type Preset struct {
	Name      string
	Class     string
	Overrides Config
}

// presets is the one table of CLI names. The overrides follow
// golden/small/index.json "scheduler_names" (dpmpp_2m_karras is
// DPMSolverMultistepScheduler with use_karras_sigmas and dpmsolver++) and
// the usual diffusers recipes for the others.
var presets = []Preset{
	{"euler", "EulerDiscreteScheduler", Config{}},
	{"euler_a", "EulerAncestralDiscreteScheduler", Config{}},
	{"heun", "HeunDiscreteScheduler", Config{}},
	{"ddim", "DDIMScheduler", Config{}},
	{"ddpm", "DDPMScheduler", Config{}},
	{"pndm", "PNDMScheduler", Config{}},
	{"lms", "LMSDiscreteScheduler", Config{}},
	{"dpmpp_2m", "DPMSolverMultistepScheduler", Config{}},
	{"dpmpp_2m_karras", "DPMSolverMultistepScheduler", Config{"use_karras_sigmas": true, "algorithm_type": "dpmsolver++"}},
	{"dpmpp_2m_sde", "DPMSolverMultistepScheduler", Config{"algorithm_type": "sde-dpmsolver++"}},
	{"dpmpp_2m_sde_karras", "DPMSolverMultistepScheduler", Config{"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": true}},
	{"dpm_single", "DPMSolverSinglestepScheduler", Config{}},
	{"kdpm2", "KDPM2DiscreteScheduler", Config{}},
	{"kdpm2_a", "KDPM2AncestralDiscreteScheduler", Config{}},
	{"deis", "DEISMultistepScheduler", Config{}},
	{"unipc", "UniPCMultistepScheduler", Config{}},
	{"edm_euler", "EDMEulerScheduler", Config{}},
}

// Presets returns the CLI name table.
func Presets() []Preset {
	out := make([]Preset, len(presets))
	for i, p := range presets {
		out[i] = Preset{p.Name, p.Class, p.Overrides.Clone()}
	}
	return out
}

// Names lists every name New accepts: the CLI names, then the diffusers
// class names.
func Names() []string {
	var out []string
	for _, p := range presets {
		out = append(out, p.Name)
	}
	return append(out, ClassNames()...)
}

// karrasClasses are the classes with a use_karras_sigmas option.
var karrasClasses = []string{
	"EulerDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler",
	"DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler",
	"KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler",
	"DEISMultistepScheduler", "UniPCMultistepScheduler",
}

// New builds the scheduler called name (a CLI name such as
// "dpmpp_2m_karras" or a diffusers class name such as
// "EulerDiscreteScheduler") from a base configuration, normally the
// model's scheduler/scheduler_config.json. The preset's overrides replace
// the base's values, like from_config(base, **overrides). Options are
// further overrides applied last (see Karras).
func New(name string, base Config, opts ...Option) (Scheduler, error) {
	className, overrides := "", Config{}
	for _, p := range presets {
		if p.Name == name {
			className, overrides = p.Class, p.Overrides
		}
	}
	if className == "" {
		if _, ok := classes[name]; ok {
			className = name
		}
	}
	if className == "" {
		return nil, fmt.Errorf("unknown scheduler %q; valid names: %s", name, strings.Join(Names(), ", "))
	}
	// Overrides are from_config keyword arguments: "_use_default_values"
	// in the file must not drop them, so it is applied to the file first.
	cfg := base.effective()
	for k, v := range overrides {
		cfg[k] = v
	}
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.karras {
		if !slices.Contains(karrasClasses, className) {
			return nil, fmt.Errorf("scheduler %q (%s) has no Karras sigma option; Karras works with: %s",
				name, className, strings.Join(karrasClasses, ", "))
		}
		cfg["use_karras_sigmas"] = true
		cfg["use_exponential_sigmas"] = false
		cfg["use_beta_sigmas"] = false
	}
	for k, v := range o.set {
		cfg[k] = v
	}
	return NewClass(className, cfg)
}

// Option adjusts the configuration New builds from.
type Option func(*options)

type options struct {
	karras bool
	set    Config
}

// Karras turns on Karras sigmas (use_karras_sigmas) for any class that has
// the option; New fails for the others.
func Karras() Option { return func(o *options) { o.karras = true } }

// Set overrides one configuration key.
func Set(key string, value any) Option {
	return func(o *options) {
		if o.set == nil {
			o.set = Config{}
		}
		o.set[key] = value
	}
}
