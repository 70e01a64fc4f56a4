package sched

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"testing"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/internal/jsonobj"
	"github.com/sdxl-go/sdxl/sched/torchrand"
)

// schedTol is DESIGN.md's tolerance for schedulers.
const schedTol = 1e-6

const schedGolden = "tiny/goldens/schedulers.safetensors"

// goldenParams is the __params__ metadata of schedulers.safetensors.
type goldenParams struct {
	BaseConfig Config `json:"base_config"`
	NumSteps   int    `json:"num_inference_steps"`
	Seeds      struct {
		Generator uint64 `json:"sched_generator"`
		XUnit     uint64 `json:"sched_x_unit"`
		AddX0     uint64 `json:"sched_add_noise_x0"`
		AddNoise  uint64 `json:"sched_add_noise_noise"`
	} `json:"seeds"`
	Variants map[string]struct {
		Class         string         `json:"class"`
		Config        Config         `json:"config"`
		Overrides     Config         `json:"overrides"`
		StepKwargs    map[string]any `json:"step_kwargs"`
		NoiseDraws    int            `json:"noise_draws"`
		Order         int            `json:"order"`
		AddNoiseIndex int            `json:"add_noise_index"`
	} `json:"variants"`
}

func loadGoldenParams(t *testing.T, f *golden.File) goldenParams {
	t.Helper()
	var gp goldenParams
	if err := jsonobj.Unmarshal([]byte(f.Metadata["__params__"]), &gp); err != nil {
		t.Fatalf("%s: __params__: %v", schedGolden, err)
	}
	return gp
}

// variantPreset maps each golden variant to the CLI name and options that
// must reproduce it, so the test covers the name table as well.
var variantPreset = map[string]struct {
	name string
	opts []Option
}{
	"euler":               {"euler", nil},
	"euler_karras":        {"euler", []Option{Karras()}},
	"euler_trailing":      {"euler", []Option{Set("timestep_spacing", "trailing")}},
	"euler_ancestral":     {"euler_a", nil},
	"heun":                {"heun", nil},
	"ddim":                {"ddim", nil},
	"ddim_eta1":           {"ddim", []Option{Set("eta", 1.0)}},
	"ddpm":                {"ddpm", nil},
	"pndm":                {"pndm", nil},
	"lms":                 {"lms", nil},
	"dpmpp_2m":            {"dpmpp_2m", nil},
	"dpmpp_2m_karras":     {"dpmpp_2m_karras", nil},
	"dpmpp_2m_sde":        {"dpmpp_2m_sde", nil},
	"dpmpp_2m_sde_karras": {"dpmpp_2m_sde_karras", nil},
	"dpm_singlestep":      {"dpm_single", nil},
	"kdpm2":               {"kdpm2", nil},
	"kdpm2_ancestral":     {"kdpm2_a", nil},
	"deis":                {"deis", nil},
	"unipc":               {"unipc", nil},
	"edm_euler":           {"edm_euler", nil},
}

// replayNoise feeds recorded draws back in order.
type replayNoise struct {
	draws [][]float32
	next  int
}

func (r *replayNoise) Randn(n int, _ NoiseDType) ([]float32, error) {
	if r.next >= len(r.draws) {
		return nil, fmt.Errorf("draw %d: only %d recorded", r.next, len(r.draws))
	}
	d := r.draws[r.next]
	r.next++
	if len(d) != n {
		return nil, fmt.Errorf("draw of %d values, recorded %d", n, len(d))
	}
	return d, nil
}

// maxRel tracks the worst relative error of a variant.
type maxRel struct {
	v    float64
	what string
}

func (m *maxRel) add(what string, e float64) {
	if e > m.v || math.IsNaN(e) {
		m.v, m.what = e, what
	}
}

func rows(data []float32, n int) [][]float32 {
	if n == 0 {
		return nil
	}
	step := len(data) / n
	out := make([][]float32, n)
	for i := range out {
		out[i] = data[i*step : (i+1)*step]
	}
	return out
}

func f64to32(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}

// TestSchedulersGolden replays every variant of schedulers.safetensors:
// timesteps, sigmas, init_noise_sigma, the 10-step trajectory (scaled model
// inputs and step outputs, with the recorded model outputs and noise) and
// add_noise, each within 1e-6 relative error, and logs the worst error per
// variant.
func TestSchedulersGolden(t *testing.T) {
	f := golden.Open(t, schedGolden)
	gp := loadGoldenParams(t, f)
	xUnit, _ := f.Get("common.x_unit")
	addX0, _ := f.Get("common.add_noise_original")
	addNoise, _ := f.Get("common.add_noise_noise")

	names := make([]string, 0, len(gp.Variants))
	for v := range gp.Variants {
		names = append(names, v)
	}
	sort.Strings(names)
	if len(names) < 20 {
		t.Errorf("golden has %d variants, expected at least 20", len(names))
	}
	for _, v := range names {
		info := gp.Variants[v]
		t.Run(v, func(t *testing.T) {
			preset, ok := variantPreset[v]
			if !ok {
				t.Fatalf("no CLI mapping for golden variant %q", v)
			}
			build := func() Scheduler {
				s, err := New(preset.name, gp.BaseConfig, preset.opts...)
				if err != nil {
					t.Fatalf("New(%q): %v", preset.name, err)
				}
				if s.ClassName() != info.Class {
					t.Fatalf("New(%q) built %s, golden used %s", preset.name, s.ClassName(), info.Class)
				}
				return s
			}
			s := build()
			if s.Order() != info.Order {
				t.Errorf("order %d, want %d", s.Order(), info.Order)
			}
			var worst maxRel
			check := func(what string, got, want []float32) {
				t.Helper()
				if len(got) != len(want) {
					t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
				}
				e := golden.RelErr(got, want)
				worst.add(what, e)
				if !(e <= schedTol) {
					t.Errorf("%s: relative error %.3g > %.3g (max abs %.3g)", what, e, schedTol, golden.MaxAbs(got, want))
				}
			}
			if err := s.SetTimesteps(gp.NumSteps); err != nil {
				t.Fatal(err)
			}
			// After set_timesteps: DPM-Solver singlestep registers
			// lower_order_final there, as the golden's config shows.
			checkResolved(t, s.Config(), info.Config)
			wantTS, _ := f.Get(v + ".timesteps")
			check("timesteps", f64to32(s.Timesteps()), wantTS)
			if f.Has(v + ".sigmas") {
				wantSig, _ := f.Get(v + ".sigmas")
				check("sigmas", s.Sigmas(), wantSig)
			}
			wantInit, _ := f.Get(v + ".init_noise_sigma")
			init := s.InitNoiseSigma()
			check("init_noise_sigma", []float32{float32(init)}, wantInit)

			// Trajectory, fed with the recorded model outputs and noise.
			stepT, _ := f.Get(v + ".step_t")
			nSteps := len(stepT)
			wantIn, _ := f.Get(v + ".model_input")
			modelOut, _ := f.Get(v + ".model_output")
			wantPrev, _ := f.Get(v + ".prev_sample")
			in, mo, prev := rows(wantIn, nSteps), rows(modelOut, nSteps), rows(wantPrev, nSteps)
			noise := &replayNoise{}
			if info.NoiseDraws > 0 {
				draws, _ := f.Get(v + ".noise_draws")
				noise.draws = rows(draws, info.NoiseDraws)
				checkDrawsFromSeed(t, gp.Seeds.Generator, noise.draws)
			}
			x := make([]float32, len(xUnit))
			for i, u := range xUnit {
				x[i] = u * float32(init)
			}
			s.SetBeginIndex(0)
			ours := s.Timesteps()
			if len(ours) != nSteps {
				t.Fatalf("%d timesteps, golden made %d step calls", len(ours), nSteps)
			}
			check("step_t", f64to32(ours), stepT)
			for i := 0; i < nSteps; i++ {
				ts := ours[i] // what a pipeline passes: our own schedule
				mi, err := s.ScaleModelInput(x, ts)
				if err != nil {
					t.Fatal(err)
				}
				check(fmt.Sprintf("model_input[%d]", i), mi, in[i])
				x, err = s.Step(mo[i], ts, x, noise)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				check(fmt.Sprintf("prev_sample[%d]", i), x, prev[i])
			}
			if noise.next != info.NoiseDraws {
				t.Errorf("drew noise %d times, diffusers drew %d", noise.next, info.NoiseDraws)
			}

			// add_noise at the recorded begin index.
			a := build()
			if err := a.SetTimesteps(gp.NumSteps); err != nil {
				t.Fatal(err)
			}
			a.SetBeginIndex(info.AddNoiseIndex)
			wantT, _ := f.Get(v + ".add_noise.timestep")
			at := a.Timesteps()[info.AddNoiseIndex]
			check("add_noise.timestep", []float32{float32(at)}, wantT)
			got, err := a.AddNoise(addX0, addNoise, at)
			if err != nil {
				t.Fatal(err)
			}
			wantAdd, _ := f.Get(v + ".add_noise.out")
			check("add_noise", got, wantAdd)
			t.Logf("%s (%s): worst relative error %.3g (%s)", v, info.Class, worst.v, worst.what)
		})
	}
}

// checkDrawsFromSeed confirms that the recorded step noise is what a
// torch.Generator("cpu").manual_seed(seed) produces draw after draw, i.e.
// that the pipeline can back NoiseSource with torchrand.
func checkDrawsFromSeed(t *testing.T, seed uint64, draws [][]float32) {
	t.Helper()
	g := torchrand.NewCPU(seed)
	src := GeneratorNoise{Gen: g}
	for i, d := range draws {
		got, err := src.Randn(len(d), NoiseModelDType)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, d) {
			t.Errorf("noise draw %d differs from torch.Generator('cpu').manual_seed(%d) (rel err %.3g)", i, seed, golden.RelErr(got, d))
			return
		}
	}
}

// checkResolved compares our resolved options with the configuration
// diffusers reports for the scheduler it built (its defaults included).
func checkResolved(t *testing.T, p Params, want Config) {
	t.Helper()
	r := newReader(want, p.Class)
	type cmp struct {
		key  string
		got  any
		want any
	}
	var cs []cmp
	add := func(key string, got any, read func() any) {
		if _, ok := want[key]; ok && slices.Contains(p.Keys, key) {
			cs = append(cs, cmp{key, got, read()})
		}
	}
	add("num_train_timesteps", p.NumTrainTimesteps, func() any { return r.Int("num_train_timesteps", 0) })
	add("beta_start", p.BetaStart, func() any { return r.Float("beta_start", 0) })
	add("beta_end", p.BetaEnd, func() any { return r.Float("beta_end", 0) })
	add("beta_schedule", p.BetaSchedule, func() any { return r.Str("beta_schedule", "") })
	add("prediction_type", p.PredictionType, func() any { return r.Str("prediction_type", "") })
	add("timestep_spacing", p.TimestepSpacing, func() any { return r.Str("timestep_spacing", "") })
	add("steps_offset", p.StepsOffset, func() any { return r.Int("steps_offset", 0) })
	add("use_karras_sigmas", p.UseKarrasSigmas, func() any { return r.Bool("use_karras_sigmas", false) })
	add("final_sigmas_type", p.FinalSigmasType, func() any { return r.Str("final_sigmas_type", "") })
	add("clip_sample", p.ClipSample, func() any { return r.Bool("clip_sample", false) })
	add("set_alpha_to_one", p.SetAlphaToOne, func() any { return r.Bool("set_alpha_to_one", false) })
	add("solver_order", p.SolverOrder, func() any { return r.Int("solver_order", 0) })
	add("algorithm_type", p.AlgorithmType, func() any { return r.Str("algorithm_type", "") })
	add("solver_type", p.SolverType, func() any { return r.Str("solver_type", "") })
	add("lower_order_final", p.LowerOrderFinal, func() any { return r.Bool("lower_order_final", false) })
	add("euler_at_final", p.EulerAtFinal, func() any { return r.Bool("euler_at_final", false) })
	add("lambda_min_clipped", p.LambdaMinClipped, func() any { return r.Float("lambda_min_clipped", 0) })
	add("skip_prk_steps", p.SkipPRKSteps, func() any { return r.Bool("skip_prk_steps", false) })
	add("predict_x0", p.PredictX0, func() any { return r.Bool("predict_x0", false) })
	add("sigma_data", p.SigmaData, func() any { return r.Float("sigma_data", 0) })
	add("rho", p.Rho, func() any { return r.Float("rho", 0) })
	add("timestep_type", p.TimestepType, func() any { return r.Str("timestep_type", "") })
	add("interpolation_type", p.InterpolationType, func() any { return r.Str("interpolation_type", "") })
	if p.Class == "DDPMScheduler" {
		add("variance_type", p.VarianceType, func() any { return r.Str("variance_type", "") })
	}
	if r.Err() != nil {
		t.Fatalf("golden config: %v", r.Err())
	}
	for _, c := range cs {
		if c.got != c.want {
			t.Errorf("resolved %s = %v, diffusers used %v", c.key, c.got, c.want)
		}
	}
}

// TestLMSCoefficientsGolden compares the exactly integrated LMS
// coefficients with the ones diffusers got from scipy.integrate.quad.
func TestLMSCoefficientsGolden(t *testing.T) {
	f := golden.Open(t, schedGolden)
	gp := loadGoldenParams(t, f)
	s, err := New("lms", gp.BaseConfig)
	if err != nil {
		t.Fatal(err)
	}
	l := s.(*LMS)
	if err := l.SetTimesteps(gp.NumSteps); err != nil {
		t.Fatal(err)
	}
	coeffs, _ := f.Get("lms.lms_coeffs")
	orders, _ := f.Get("lms.lms_order")
	mo, _ := f.Get("lms.model_output")
	xUnit, _ := f.Get("common.x_unit")
	outs := rows(mo, gp.NumSteps)
	x := append([]float32(nil), xUnit...)
	var got, want []float32
	for i, ts := range l.Timesteps() {
		if _, err := l.ScaleModelInput(x, ts); err != nil {
			t.Fatal(err)
		}
		if x, err = l.Step(outs[i], ts, x, nil); err != nil {
			t.Fatal(err)
		}
		if len(l.lastCoeffs) != int(orders[i]) {
			t.Fatalf("step %d: order %d, want %v", i, len(l.lastCoeffs), orders[i])
		}
		for c, v := range l.lastCoeffs {
			got = append(got, float32(v))
			want = append(want, coeffs[i*4+c])
		}
	}
	golden.Check(t, "lms coefficients", got, want, schedTol)
}
