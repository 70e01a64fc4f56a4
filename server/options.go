package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
)

// options are A1111's settings (/sdapi/v1/options). The few that mean
// something here are checked and used (sd_model_checkpoint: the loaded
// model only; CLIP_stop_at_last_layers: the default clip skip; sd_vae:
// the model's own; samples_format: png); the rest are kept and echoed, as
// clients post back what they read.
type options struct {
	mu     sync.Mutex
	values map[string]any
}

func newOptions() *options {
	return &options{values: map[string]any{
		"CLIP_stop_at_last_layers": 1, "sd_vae": "Automatic", "samples_format": "png",
		"outdir_samples": "", "save_images_add_number": true, "eta_noise_seed_delta": 0,
		"randn_source": "CPU", "live_previews_enable": true, "show_progress_every_n_steps": 1,
	}}
}

// clipSkip is the default A1111 clip skip.
func (o *options) clipSkip() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if v, ok := o.values["CLIP_stop_at_last_layers"].(int); ok {
		return v
	}
	return 1
}

func (o *options) snapshot(checkpoint, hash string) map[string]any {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]any, len(o.values)+2)
	for k, v := range o.values {
		out[k] = v
	}
	out["sd_model_checkpoint"], out["sd_checkpoint_hash"] = checkpoint, hash
	return out
}

// set applies posted options: all are checked before any is kept.
func (o *options) set(raw map[string]json.RawMessage, checkModel func(string) error) error {
	parsed := map[string]any{}
	for k, v := range raw {
		switch k {
		case "sd_model_checkpoint":
			var name string
			if err := json.Unmarshal(v, &name); err != nil {
				return fmt.Errorf("sd_model_checkpoint: want a string")
			}
			if err := checkModel(name); err != nil {
				return err
			}
		case "sd_checkpoint_hash":
		case "CLIP_stop_at_last_layers":
			var n int
			if err := json.Unmarshal(v, &n); err != nil || n < 1 || n > 12 {
				return fmt.Errorf("CLIP_stop_at_last_layers: want an integer from 1 to 12")
			}
			parsed[k] = n
		case "sd_vae":
			var name string
			if json.Unmarshal(v, &name) != nil || (name != "" && !strings.EqualFold(name, "automatic") && !strings.EqualFold(name, "none")) {
				return fmt.Errorf("sd_vae: only the model's own VAE is available (Automatic)")
			}
			parsed[k] = name
		case "samples_format":
			var f string
			if json.Unmarshal(v, &f) != nil || !strings.EqualFold(f, "png") {
				return fmt.Errorf("samples_format: images are PNG")
			}
			parsed[k] = f
		default:
			var x any
			if err := json.Unmarshal(v, &x); err != nil {
				return fmt.Errorf("%s: %v", k, err)
			}
			parsed[k] = x
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, v := range parsed {
		o.values[k] = v
	}
	return nil
}
