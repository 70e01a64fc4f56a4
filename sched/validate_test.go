package sched

import (
	"math"
	"strings"
	"testing"
)

// TestConfigValidation: configurations whose noise schedule would be NaN
// or infinite (and so give an all-black image without an error) are
// refused by New with an error naming the key.
func TestConfigValidation(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"euler", Config{"beta_start": 2.0, "beta_end": 3.0}, "beta_start = 2"},
		{"euler", Config{"beta_end": math.NaN()}, "beta_end = NaN"},
		{"ddim", Config{"beta_start": 0.0}, "beta_start = 0"},
		{"euler", Config{"trained_betas": []any{0.5, 1.5}, "num_train_timesteps": 2}, "trained_betas[1] = 1.5"},
		{"euler", Config{"beta_start": 0.5, "beta_end": 0.9, "beta_schedule": "linear"}, "alphas_cumprod"},
		{"euler", Config{"num_train_timesteps": 1}, "num_train_timesteps = 1"},
		{"euler", Config{"steps_offset": 1000}, "steps_offset = 1000"},
		{"euler", Config{"steps_offset": -1}, "steps_offset = -1"},
		{"edm_euler", Config{"sigma_data": 0.0}, "sigma_data = 0"},
		{"edm_euler", Config{"rho": math.Inf(1)}, "rho = +Inf"},
		{"edm_euler", Config{"sigma_min": 5.0, "sigma_max": 1.0}, "sigma_min 5 is above sigma_max 1"},
		{"euler", Config{"sigma_max": 1e30}, "sigma_max = 1e+30"},
		{"ddim", Config{"eta": -1.0}, "eta = -1"},
		{"ddim", Config{"clip_sample_range": 0.0}, "clip_sample_range = 0"},
		{"ddpm", Config{"thresholding": true, "dynamic_thresholding_ratio": 2.0}, "dynamic_thresholding_ratio = 2"},
		{"dpmpp_2m", Config{"lambda_min_clipped": math.NaN()}, "lambda_min_clipped = NaN"},
	} {
		_, err := New(c.name, c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: %v, want %q", c.name, c.cfg, err, c.want)
		}
	}
	// The same from a file: Python's json writes NaN as a bare literal.
	cfg, err := ParseConfig([]byte(`{"_class_name": "EulerDiscreteScheduler", "beta_start": NaN}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FromConfig(cfg); err == nil || !strings.Contains(err.Error(), "EulerDiscreteScheduler: beta_start = NaN") {
		t.Errorf("NaN beta_start from a file: %v", err)
	}
	// Legitimate extremes still build: zero terminal SNR, -Infinity
	// lambda_min_clipped, cosine betas.
	for _, cfg := range []Config{{"rescale_betas_zero_snr": true, "timestep_spacing": "trailing"},
		{"lambda_min_clipped": math.Inf(-1)}, {"beta_schedule": "squaredcos_cap_v2", "beta_start": 5.0}} {
		if _, err := New("dpmpp_2m", cfg); err != nil {
			t.Errorf("%v: %v", cfg, err)
		}
	}
}
