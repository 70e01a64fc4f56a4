package infotext

import (
	"fmt"
	"strings"

	"github.com/sdxl-go/sdxl/sched"
)

// sampler is one row of the name table: our scheduler name, A1111's
// sampler name, and the schedule A1111 uses for that sampler when the
// schedule type is "Automatic" (the 'scheduler' option of its entry in
// modules/sd_samplers_kdiffusion.py samplers_k_diffusion; none means the
// model's own sigmas, A1111's "Uniform").
type sampler struct {
	ours, a1111, automatic string
	// aliases are other spellings seen in infotexts (A1111's k_ names,
	// sd.cpp's sample method names), compared after normalizeName.
	aliases []string
}

// samplers maps every scheduler of sched.Names() (class names through
// their presets) to A1111's names. A1111 (modules/sd_samplers_kdiffusion.py
// and sd_samplers_timesteps.py) has no DDPM, DEIS, single-step DPM-Solver
// or EDM Euler; those keep descriptive names that other programs show but
// cannot run. PNDM with skip_prk_steps is A1111's PLMS.
var samplers = []sampler{
	{"euler", "Euler", "", []string{"k_euler"}},
	{"euler_a", "Euler a", "", []string{"k_euler_a", "k_euler_ancestral", "euler ancestral"}},
	{"heun", "Heun", "", []string{"k_heun"}},
	{"lms", "LMS", "", []string{"k_lms"}},
	{"kdpm2", "DPM2", "", []string{"k_dpm_2", "dpm2"}},
	{"kdpm2_a", "DPM2 a", "", []string{"k_dpm_2_a", "dpm2_a"}},
	{"dpmpp_2m", "DPM++ 2M", "Karras", []string{"k_dpmpp_2m", "dpm++2m"}},
	{"dpmpp_2m_sde", "DPM++ 2M SDE", "Exponential", []string{"k_dpmpp_2m_sde"}},
	{"dpm_single", "DPM++ 2S", "", nil},
	{"ddim", "DDIM", "", []string{"ddim_trailing"}},
	{"ddpm", "DDPM", "", nil},
	{"pndm", "PLMS", "", []string{"pndm"}},
	{"deis", "DEIS", "", nil},
	{"unipc", "UniPC", "", nil},
	{"edm_euler", "Euler EDM", "", nil},
}

// karrasPresets are the presets that are another preset plus Karras
// sigmas.
var karrasPresets = map[string]string{"dpmpp_2m_karras": "dpmpp_2m", "dpmpp_2m_sde_karras": "dpmpp_2m_sde"}

// scheduleLabels are A1111's schedule types (modules/sd_schedulers.py
// schedulers: name, label, aliases) and sd.cpp's schedule names, as they
// appear at the end of old sampler names; the label is what Parse keeps.
var scheduleLabels = []string{
	"Automatic", "Uniform", "Karras", "Exponential", "Polyexponential",
	"SGM Uniform", "SGMUniform", "sgm_uniform", "KL Optimal", "kl_optimal",
	"Align Your Steps", "align_your_steps", "ays", "Simple", "Normal",
	"DDIM", "Beta", "discrete", "gits", "smoothstep",
}

// splitSampler splits a schedule off the end of a sampler name the way
// get_sampler_and_scheduler does ("DPM++ 2M Karras" is "DPM++ 2M" with
// "Karras"), case-insensitively so that sd.cpp's "euler_a karras" splits
// too. The schedule comes back in A1111's spelling when it has one.
func splitSampler(name string) (base, schedule string) {
	for _, label := range scheduleLabels {
		suffix := " " + label
		if len(name) > len(suffix) && strings.EqualFold(name[len(name)-len(suffix):], suffix) {
			return name[:len(name)-len(suffix)], canonicalSchedule(label)
		}
	}
	return name, ""
}

// canonicalSchedule returns A1111's label for a schedule name or alias.
func canonicalSchedule(s string) string {
	switch strings.ToLower(strings.NewReplacer(" ", "", "_", "").Replace(s)) {
	case "automatic":
		return "Automatic"
	case "uniform":
		return "Uniform"
	case "karras":
		return "Karras"
	case "exponential":
		return "Exponential"
	case "sgmuniform":
		return "SGM Uniform"
	case "kloptimal":
		return "KL Optimal"
	case "alignyoursteps", "ays":
		return "Align Your Steps"
	case "simple":
		return "Simple"
	case "normal":
		return "Normal"
	case "beta":
		return "Beta"
	}
	return s
}

// Sampler returns A1111's sampler and schedule type for one of our
// scheduler names (sched.Names(): CLI names and diffusers class names) and
// the --karras flag. Without Karras sigmas the schedule is "Automatic",
// or "Uniform" for the samplers whose A1111 default is another schedule
// (DPM++ 2M defaults to Karras there, DPM++ 2M SDE to Exponential).
func Sampler(scheduler string, karras bool) (samplerName, schedule string, err error) {
	name, err := presetName(scheduler)
	if err != nil {
		return "", "", err
	}
	if base, ok := karrasPresets[name]; ok {
		name, karras = base, true
	}
	for _, s := range samplers {
		if s.ours != name {
			continue
		}
		switch {
		case karras:
			return s.a1111, "Karras", nil
		case s.automatic != "":
			return s.a1111, "Uniform", nil
		}
		return s.a1111, "Automatic", nil
	}
	return "", "", fmt.Errorf("infotext: scheduler %q has no sampler name", scheduler)
}

// presetName maps a diffusers class name to the CLI name of its plain
// preset; CLI names pass through.
func presetName(scheduler string) (string, error) {
	var byClass string
	for _, p := range sched.Presets() {
		if p.Name == scheduler {
			return scheduler, nil
		}
		if p.Class == scheduler && len(p.Overrides) == 0 && byClass == "" {
			byClass = p.Name
		}
	}
	if byClass == "" {
		return "", fmt.Errorf("infotext: unknown scheduler %q", scheduler)
	}
	return byClass, nil
}

// Choice is a scheduler of ours for an A1111 sampler and schedule type.
type Choice struct {
	// Scheduler is a CLI name of sched.Names().
	Scheduler string
	// Karras turns on Karras sigmas (--karras).
	Karras bool
	// Note, when set, says how the choice differs from what the image's
	// program ran (a schedule this project does not have).
	Note string
}

// Scheduler maps an A1111 (or sd.cpp) sampler and schedule type back to
// one of our schedulers. An empty schedule is "Automatic": A1111's default
// for that sampler. Schedules we do not have (Exponential, Align Your
// Steps, ...) fall back to diffusers' default sigmas with a Note; a
// sampler we do not have is an error naming it. Karras is dropped, with a
// Note, for schedulers that have no Karras option (Euler a).
func Scheduler(samplerName, schedule string) (Choice, error) {
	base, suffix := splitSampler(samplerName)
	if suffix != "" {
		schedule = suffix
	}
	s, exact, ok := lookupSampler(base)
	if !ok {
		var known []string
		for _, s := range samplers {
			known = append(known, s.a1111)
		}
		return Choice{}, fmt.Errorf("infotext: sampler %q has no equivalent here (known: %s)", samplerName, strings.Join(known, ", "))
	}
	schedule = canonicalSchedule(schedule)
	if (schedule == "" || schedule == "Automatic") && exact {
		// Only A1111's own spelling implies A1111's defaults; sd.cpp's
		// "dpm++2m" means its discrete schedule.
		schedule = s.automatic
	}
	c := Choice{Scheduler: s.ours}
	switch schedule {
	case "", "Automatic", "Uniform", "Normal", "Simple", "SGM Uniform", "DDIM", "discrete":
	case "Karras":
		c.Karras = true
		if _, err := sched.New(s.ours, sched.Config{}, sched.Karras()); err != nil {
			c.Karras = false
			c.Note = fmt.Sprintf("%s has no Karras sigmas here; using its default sigmas", s.ours)
		}
	default:
		c.Note = fmt.Sprintf("schedule type %q is not available here; using %s's default sigmas", schedule, s.ours)
	}
	if c.Karras {
		for preset, plain := range karrasPresets {
			if plain == c.Scheduler {
				c.Scheduler, c.Karras = preset, false
			}
		}
	}
	return c, nil
}

// lookupSampler finds a sampler by A1111 name (exact is true), our name or
// an alias.
func lookupSampler(name string) (s sampler, exact, ok bool) {
	for _, s := range samplers {
		if s.a1111 == name {
			return s, true, true
		}
	}
	n := normalizeName(name)
	for _, s := range samplers {
		if normalizeName(s.ours) == n || normalizeName(s.a1111) == n {
			return s, false, true
		}
		for _, a := range s.aliases {
			if normalizeName(a) == n {
				return s, false, true
			}
		}
	}
	for _, p := range sched.Presets() {
		if p.Class == name && len(p.Overrides) == 0 {
			return lookupSampler(p.Name)
		}
	}
	return sampler{}, false, false
}

// normalizeName folds case, spaces, '_' and '+' so that "Euler a",
// "euler_a" and "EULER A" compare equal.
func normalizeName(s string) string {
	return strings.ToLower(strings.NewReplacer(" ", "", "_", "", "+", "p").Replace(s))
}

// ClipSkipFor converts between diffusers' SDXL clip_skip (the pipeline
// uses hidden_states[-(clip_skip+2)], pipeline_stable_diffusion_xl.py
// encode_prompt) and A1111's "Clip skip" (hidden_states[-N],
// sd_hijack_clip.py FrozenCLIPEmbedderForSDXLWithCustomWords with
// sdxl_clip_l_skip). A1111's default 1 leaves SDXL's penultimate layer,
// diffusers' 0.
func ClipSkipFor(diffusersClipSkip int) int {
	if diffusersClipSkip <= 0 {
		return 1
	}
	return diffusersClipSkip + 2
}

// DiffusersClipSkip is the inverse of ClipSkipFor: A1111's 1 and 2 both
// mean SDXL's default penultimate layer (clip_skip 0).
func DiffusersClipSkip(a1111ClipSkip int) int {
	if a1111ClipSkip <= 2 {
		return 0
	}
	return a1111ClipSkip - 2
}
