package sched

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/sched/torchrand"
)

// sdxlConfig is the SDXL base scheduler_config.json.
const sdxlConfig = `{
  "_class_name": "EulerDiscreteScheduler",
  "_diffusers_version": "0.19.0.dev0",
  "beta_end": 0.012,
  "beta_schedule": "scaled_linear",
  "beta_start": 0.00085,
  "clip_sample": false,
  "interpolation_type": "linear",
  "num_train_timesteps": 1000,
  "prediction_type": "epsilon",
  "sample_max_value": 1.0,
  "set_alpha_to_one": false,
  "skip_prk_steps": true,
  "steps_offset": 1,
  "timestep_spacing": "leading",
  "trained_betas": null,
  "use_karras_sigmas": false
}`

func sdxl(t testing.TB) Config {
	t.Helper()
	c, err := ParseConfig([]byte(sdxlConfig))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`{"lambda_min_clipped": -Infinity, "x": NaN, "s": "-Infinity", "unknown_key": [1, 2], "beta_start": 0.001}`))
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := c["s"].(string); s != "-Infinity" {
		t.Errorf("string value changed: %q", c["s"])
	}
	p, err := Resolve("DPMSolverMultistepScheduler", c)
	if err != nil {
		t.Fatal(err)
	}
	if !math.IsInf(p.LambdaMinClipped, -1) || p.BetaStart != 0.001 {
		t.Errorf("lambda_min_clipped %v beta_start %v", p.LambdaMinClipped, p.BetaStart)
	}
	for _, bad := range []string{`[1]`, `{"a":1} {}`, `{"a":`, `null`} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("ParseConfig(%s) accepted", bad)
		}
	}
	// A wrongly typed known key is an error naming it.
	_, err = New("euler", Config{"num_train_timesteps": "many"})
	if err == nil || !strings.Contains(err.Error(), "num_train_timesteps") {
		t.Errorf("bad num_train_timesteps: %v", err)
	}
	_, err = New("euler", Config{"timestep_type": "sideways"})
	if err == nil || !strings.Contains(err.Error(), "timestep_type") {
		t.Errorf("bad timestep_type: %v", err)
	}
}

// TestClassDefaults: absent keys take the defaults of the class being
// built, keys listed in _use_default_values are dropped, unknown keys are
// ignored.
func TestClassDefaults(t *testing.T) {
	cases := []struct {
		name      string
		cfg       Config
		betaStart float64
		spacing   string
	}{
		{"dpmpp_2m", Config{}, 0.0001, "linspace"},
		{"heun", Config{}, 0.00085, "linspace"},
		{"kdpm2", Config{"whatever": true}, 0.00085, "linspace"},
		{"ddim", Config{}, 0.0001, "leading"},
		{"euler_a", Config{"timestep_spacing": "trailing", "_use_default_values": []any{"timestep_spacing"}}, 0.0001, "linspace"},
		{"euler_a", Config{"timestep_spacing": "trailing"}, 0.0001, "trailing"},
	}
	for _, c := range cases {
		s, err := New(c.name, c.cfg)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		p := s.Config()
		if p.BetaStart != c.betaStart || p.TimestepSpacing != c.spacing {
			t.Errorf("%s: beta_start %v spacing %q, want %v %q", c.name, p.BetaStart, p.TimestepSpacing, c.betaStart, c.spacing)
		}
	}
}

func TestNames(t *testing.T) {
	base := sdxl(t)
	for _, n := range Names() {
		s, err := New(n, base)
		if err != nil {
			t.Errorf("New(%q): %v", n, err)
			continue
		}
		if err := s.SetTimesteps(12); err != nil {
			t.Errorf("%s: SetTimesteps: %v", n, err)
		}
	}
	for _, want := range []string{"euler", "euler_a", "heun", "ddim", "ddpm", "pndm", "lms", "dpmpp_2m",
		"dpmpp_2m_karras", "dpmpp_2m_sde", "dpmpp_2m_sde_karras", "dpm_single", "kdpm2", "kdpm2_a",
		"deis", "unipc", "edm_euler", "EulerDiscreteScheduler", "UniPCMultistepScheduler"} {
		if !slices.Contains(Names(), want) {
			t.Errorf("Names() lacks %q", want)
		}
	}
	_, err := New("dpmpp_3m_turbo", base)
	if err == nil || !strings.Contains(err.Error(), "dpmpp_2m_karras") || !strings.Contains(err.Error(), "EulerDiscreteScheduler") {
		t.Errorf("unknown name error should list the valid names: %v", err)
	}
	if _, err := New("euler_a", base, Karras()); err == nil || !strings.Contains(err.Error(), "Karras") {
		t.Errorf("Karras on euler_a: %v", err)
	}
	s, err := New("euler", base, Karras())
	if err != nil || !s.Config().UseKarrasSigmas {
		t.Fatalf("euler + Karras: %v", err)
	}
	// dpmpp_2m_karras is DPMSolverMultistepScheduler with Karras sigmas.
	s, err = New("dpmpp_2m_karras", base)
	if err != nil {
		t.Fatal(err)
	}
	if p := s.Config(); s.ClassName() != "DPMSolverMultistepScheduler" || !p.UseKarrasSigmas || p.AlgorithmType != "dpmsolver++" {
		t.Errorf("dpmpp_2m_karras resolved to %s %+v", s.ClassName(), p)
	}
	// _use_default_values in the file does not cancel a preset override.
	s, err = New("dpmpp_2m_karras", Config{"use_karras_sigmas": false, "_use_default_values": []any{"use_karras_sigmas"}})
	if err != nil || !s.Config().UseKarrasSigmas {
		t.Errorf("dpmpp_2m_karras over a file with defaulted use_karras_sigmas: %v", err)
	}
	// FromConfig uses _class_name.
	s, err = FromConfig(base)
	if err != nil || s.ClassName() != "EulerDiscreteScheduler" {
		t.Fatalf("FromConfig: %v %v", s, err)
	}
	if _, err := FromConfig(Config{}); err == nil {
		t.Error("FromConfig without _class_name accepted")
	}
	if _, err := New("DPMSolverSDEScheduler", base); err == nil {
		t.Error("DPMSolverSDEScheduler should be reported as unsupported")
	}
}

// TestSigmaMinFromConfig: a sigma_min key bounds the Karras schedule of
// any class (diffusers reads config.sigma_min whenever the key exists).
func TestSigmaMinFromConfig(t *testing.T) {
	s, err := New("dpmpp_2m_karras", sdxl(t).With("sigma_min", 0.1).With("sigma_max", 10.0))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetTimesteps(10); err != nil {
		t.Fatal(err)
	}
	sig := s.Sigmas()
	if sig[0] != 10 || math.Abs(float64(sig[9])-0.1) > 1e-7 || sig[10] != 0 {
		t.Errorf("sigmas %v", sig)
	}
}

// syntheticModel is a stand-in denoiser: a linear function of the input
// and the timestep, like the goldens' fake model.
func syntheticModel(x []float32, t float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = 0.1*v + float32(0.05*t/1000)
	}
	return out
}

// run drives a scheduler through its whole schedule, with or without
// SetBeginIndex(0), returning the final sample.
func run(t *testing.T, s Scheduler, x []float32, seed uint64, begin bool) []float32 {
	t.Helper()
	noise := GeneratorNoise{Gen: torchrand.NewCPU(seed)}
	x = slices.Clone(x)
	for i := range x {
		x[i] *= float32(s.InitNoiseSigma())
	}
	if begin {
		s.SetBeginIndex(0)
	}
	for _, ts := range s.Timesteps() {
		in, err := s.ScaleModelInput(x, ts)
		if err != nil {
			t.Fatal(err)
		}
		if x, err = s.Step(syntheticModel(in, ts), ts, x, noise); err != nil {
			t.Fatalf("%s at t=%v: %v", s.ClassName(), ts, err)
		}
	}
	return x
}

// TestLocateByTimestep: without SetBeginIndex every scheduler finds its
// position from t (index_for_timestep) and gives the same trajectory; the
// result is deterministic and finite.
func TestLocateByTimestep(t *testing.T) {
	base := sdxl(t)
	x := torchrand.NewCPU(7).Randn(64)
	for _, p := range Presets() {
		for _, steps := range []int{7, 20} {
			a, err := New(p.Name, base)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := New(p.Name, base)
			if err := a.SetTimesteps(steps); err != nil {
				t.Fatal(err)
			}
			if err := b.SetTimesteps(steps); err != nil {
				t.Fatal(err)
			}
			ra := run(t, a, x, 3, true)
			rb := run(t, b, x, 3, false)
			if !slices.Equal(ra, rb) {
				t.Errorf("%s (%d steps): trajectory depends on SetBeginIndex", p.Name, steps)
			}
			for _, v := range ra {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("%s (%d steps): non-finite result", p.Name, steps)
				}
			}
			// Stepping past the end is an error, not a panic.
			ts := a.Timesteps()
			if _, err := a.Step(x, ts[len(ts)-1], x, nil); err == nil && a.StepIndex() >= 0 {
				t.Errorf("%s: step past the end accepted", p.Name)
			}
		}
	}
}

func TestStepErrors(t *testing.T) {
	base := sdxl(t)
	x := make([]float32, 16)
	e, _ := New("euler", base)
	if _, err := e.Step(x, 999, x, nil); err == nil {
		t.Error("Step before SetTimesteps accepted")
	}
	if err := e.SetTimesteps(0); err == nil {
		t.Error("0 steps accepted")
	}
	if err := e.SetTimesteps(2000); err == nil {
		t.Error("more steps than training timesteps accepted")
	}
	_ = e.SetTimesteps(10)
	if _, err := e.Step(x[:8], e.Timesteps()[0], x, nil); err == nil {
		t.Error("length mismatch accepted")
	}
	if _, err := e.ScaleModelInput(x, 12.5); err == nil {
		t.Error("timestep outside the schedule accepted")
	}
	a, _ := New("euler_a", base)
	_ = a.SetTimesteps(10)
	if _, err := a.Step(x, a.Timesteps()[0], x, nil); err == nil || !strings.Contains(err.Error(), "noise") {
		t.Errorf("stochastic step without noise: %v", err)
	}
	d, _ := New("ddim", base)
	_ = d.SetTimesteps(10)
	if _, err := d.Step(x, 500.5, x, nil); err == nil {
		t.Error("DDIM non-integer timestep accepted")
	}
	if _, err := New("ddim", base.With("thresholding", true)); err == nil {
		t.Error("thresholding accepted")
	}
	if err := d.SetCustomTimesteps([]float64{999, 500}); err == nil {
		t.Error("DDIM custom timesteps accepted")
	}
}

// TestCustomSchedules: custom timesteps and sigmas where diffusers takes
// them.
func TestCustomSchedules(t *testing.T) {
	base := sdxl(t)
	// The AYS SDXL sigmas from diffusers' scheduling_utils.
	ays := []float64{14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.38, 0.234, 0.113, 0.0}
	e, _ := New("euler", base)
	if err := e.SetCustomSigmas(ays); err != nil {
		t.Fatal(err)
	}
	sig := e.Sigmas()
	if len(sig) != len(ays) || len(e.Timesteps()) != len(ays)-1 {
		t.Fatalf("%d sigmas, %d timesteps", len(sig), len(e.Timesteps()))
	}
	for i, v := range ays {
		if sig[i] != float32(v) {
			t.Errorf("sigma %d = %v, want %v", i, sig[i], float32(v))
		}
	}
	ts := e.Timesteps()
	if ts[0] < 990 || ts[0] > 999 || !slices.IsSortedFunc(ts, func(a, b float64) int { return int(math.Copysign(1, b-a)) }) {
		t.Errorf("AYS timesteps %v", ts)
	}
	ayst := []float64{999, 845, 730, 587, 443, 310, 193, 116, 53, 13}
	for _, name := range []string{"euler", "heun", "dpmpp_2m", "dpm_single", "ddpm"} {
		s, _ := New(name, base)
		if err := s.SetCustomTimesteps(ayst); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		got := s.Timesteps()
		if got[0] != 999 || got[len(got)-1] != 13 {
			t.Errorf("%s: timesteps %v", name, got)
		}
	}
	k, _ := New("euler", base, Karras())
	if err := k.SetCustomTimesteps(ayst); err == nil {
		t.Error("custom timesteps with Karras sigmas accepted")
	}
}

func TestGeneratorNoiseDTypes(t *testing.T) {
	g := torchrand.NewCPU(1)
	half := GeneratorNoise{Gen: g, ModelHalf: true}
	a, _ := half.Randn(32, NoiseModelDType)
	g.ManualSeed(1)
	if want := g.RandnHalf(32); !slices.Equal(a, want) {
		t.Error("model-dtype draw of a half pipeline is not a float16 draw")
	}
	g.ManualSeed(1)
	b, _ := half.Randn(32, NoiseFloat32)
	g.ManualSeed(1)
	if want := g.Randn(32); !slices.Equal(b, want) {
		t.Error("forced float32 draw is not a float32 draw")
	}
}

func FuzzConfig(f *testing.F) {
	f.Add([]byte(sdxlConfig), uint8(3), uint8(10))
	f.Add([]byte(`{"solver_order": 3, "use_karras_sigmas": true, "lambda_min_clipped": -5.1}`), uint8(7), uint8(25))
	f.Add([]byte(`{"timestep_spacing": "trailing", "rescale_betas_zero_snr": true, "prediction_type": "v_prediction"}`), uint8(0), uint8(4))
	f.Add([]byte(`{"beta_schedule": "squaredcos_cap_v2", "final_sigmas_type": "sigma_min", "algorithm_type": "sde-dpmsolver++"}`), uint8(9), uint8(3))
	f.Add([]byte(`{"use_exponential_sigmas": true, "skip_prk_steps": false, "num_train_timesteps": 50}`), uint8(5), uint8(11))
	f.Add([]byte(`{"beta_start": 2, "beta_end": 3}`), uint8(0), uint8(5))
	f.Add([]byte(`{"beta_start": NaN, "sigma_max": Infinity, "rho": 0, "steps_offset": -4}`), uint8(16), uint8(5))
	f.Add([]byte(`{"trained_betas": [0.5, 0.9, 2], "num_train_timesteps": 3}`), uint8(1), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, which, steps uint8) {
		cfg, err := ParseConfig(data)
		if err != nil {
			return
		}
		names := Names()
		s, err := New(names[int(which)%len(names)], cfg)
		if err != nil {
			return
		}
		n := int(steps)%30 + 1
		if err := s.SetTimesteps(n); err != nil {
			return
		}
		x := make([]float32, 16)
		for i := range x {
			x[i] = float32(i%5) - 2
		}
		noise := GeneratorNoise{Gen: torchrand.NewCPU(uint64(which))}
		for _, ts := range s.Timesteps() {
			in, err := s.ScaleModelInput(x, ts)
			if err != nil {
				return
			}
			if x, err = s.Step(syntheticModel(in, ts), ts, x, noise); err != nil {
				return
			}
		}
	})
}
