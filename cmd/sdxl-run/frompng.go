package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/sdxl-go/sdxl/sdxl/bundled"
	"github.com/sdxl-go/sdxl/sdxl/hashes"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/sdxl/infotext"
)

// --from-png FILE repeats the run that made FILE. It is a pre-pass over
// the arguments: the PNG's settings become flags placed before the command
// line, which the flag package then parses as usual, so flags given on the
// command line override the PNG's and every check applies unchanged. Our
// own sdxl-run chunk (the exact flags) is used when present, otherwise the
// A1111 parameters text of any program.
const fromPNGFlag = "from-png"

func addFromPNGFlag(fs *flag.FlagSet) {
	fs.String(fromPNGFlag, "", "repeat the run that made this PNG (sdxl-run's record, else the A1111 \"parameters\" text); flags on the command line override its settings")
}

// notCarried are the flags of a recorded run that describe its outputs,
// not the image: a repeat writes where the new command line says.
var notCarried = map[string]bool{
	"out": true, "overwrite": true, "quiet": true, "save-latents": true, "dump": true, "dump-to": true,
	"verify-watermark": true, fromPNGFlag: true,
}

// setting is one flag value taken from a PNG.
type setting struct{ name, value string }

// applyFromPNG returns args with --from-png removed and the PNG's settings
// in front, minus the flags the command line gives itself.
func applyFromPNG(fs *flag.FlagSet, args []string, stderr io.Writer) ([]string, error) {
	path, rest, given := scanArgs(fs, args)
	if path == "" {
		return args, nil
	}
	m, err := imageio.ReadPNGMetadata(path)
	if err != nil {
		return nil, usageErr("--from-png %v", err)
	}
	var settings []setting
	var notes []string
	switch {
	case m.Run != "" && isCLIRecord(m.Run):
		settings, notes, err = runSettings(path, m.Run)
	case m.Parameters != "":
		settings, notes, err = parametersSettings(path, m.Parameters, given)
	default:
		err = fmt.Errorf("%s has neither an %q nor a %q text chunk", path, imageio.RunKey, imageio.ParametersKey)
	}
	if err != nil {
		return nil, usageErr("--from-png %v", err)
	}
	var pre []string
	for _, s := range settings {
		if given[s.name] || (given["controlnet"] && controlGroupFlags[s.name]) {
			continue // a --controlnet (--lora) on the command line replaces the recorded ones
		}
		if fs.Lookup(s.name) == nil {
			notes = append(notes, fmt.Sprintf("flag --%s=%s of the recorded run does not exist in this version; ignored", s.name, s.value))
			continue
		}
		pre = append(pre, "--"+s.name+"="+s.value)
	}
	for _, n := range notes {
		fmt.Fprintf(stderr, "note: --from-png %s: %s\n", path, n)
	}
	return append(pre, rest...), nil
}

// scanArgs finds --from-png (-from-png, =FILE or FILE) among the flags as
// the flag package would read them (up to "--" or the first non-flag), and
// the names of the other flags given.
func scanArgs(fs *flag.FlagSet, args []string) (path string, rest []string, given map[string]bool) {
	given = map[string]bool{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || len(a) < 2 || a[0] != '-' {
			return path, append(rest, args[i:]...), given
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		takesValue := f != nil && !isBoolFlag(f)
		if name == fromPNGFlag {
			if !hasValue && i+1 < len(args) {
				i++
				value = args[i]
			}
			path = value
			continue
		}
		given[name] = true
		rest = append(rest, a)
		if takesValue && !hasValue && i+1 < len(args) {
			i++
			rest = append(rest, args[i])
		}
	}
	return path, rest, given
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// isCLIRecord reports a run record of the command line (the server's
// records hold a job, not flags: its images repeat from their parameters).
func isCLIRecord(runJSON string) bool {
	var rec struct {
		Tool string `json:"tool"`
	}
	return json.Unmarshal([]byte(runJSON), &rec) != nil || rec.Tool == "sdxl-run"
}

// runSettings takes the flags of our own record.
func runSettings(path, runJSON string) ([]setting, []string, error) {
	var rec runRecord
	if err := json.Unmarshal([]byte(runJSON), &rec); err != nil {
		return nil, nil, fmt.Errorf("%s: %s chunk: %v", path, imageio.RunKey, err)
	}
	var notes []string
	if rec.Version != version() {
		notes = append(notes, fmt.Sprintf("made by sdxl-run %s, this is %s: the image may differ", rec.Version, version()))
	}
	var out []setting
	for name, v := range rec.Flags {
		// The ControlNet groups come from rec.ControlNets, in order.
		if !notCarried[name] && !controlGroupFlags[name] && name != "lora" {
			out = append(out, setting{name, v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	out = append(out, controlSettings(rec.ControlNets)...)
	return append(out, loraSettings(rec.LoRAs)...), notes, nil
}

// parametersSettings turns an A1111 infotext into flags. Models and input
// images are named, not stored: a model other than the bundled one, a
// refiner and an img2img input must come from the command line.
func parametersSettings(path, text string, given map[string]bool) ([]setting, []string, error) {
	p, err := infotext.Parse(text)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %v", path, err)
	}
	_, _, fields := infotext.Split(text)
	has := map[string]bool{}
	for _, f := range fields {
		has[f.Key] = true
	}
	var out []setting
	var notes []string
	add := func(name, value string) { out = append(out, setting{name, value}) }
	add("prompt", p.Prompt)
	if p.NegativePrompt != "" {
		// An empty negative prompt is A1111's and SDXL's zeros (diffusers'
		// None): no flag.
		add("negative-prompt", p.NegativePrompt)
	}
	if err := needModels(p, given); err != nil {
		return nil, nil, fmt.Errorf("%s %v", path, err)
	}
	if p.Steps > 0 {
		add("steps", strconv.Itoa(p.Steps))
	}
	if has["CFG scale"] {
		add("guidance", infotext.FormatFloat(p.CFGScale))
	}
	if has["Seed"] {
		add("seed", strconv.FormatUint(p.Seed, 10))
	}
	if p.Width > 0 && p.Height > 0 {
		add("width", strconv.Itoa(p.Width))
		add("height", strconv.Itoa(p.Height))
	}
	if p.Sampler != "" && !given["scheduler"] {
		c, err := infotext.Scheduler(p.Sampler, p.ScheduleType)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %v; choose one with --scheduler", path, err)
		}
		add("scheduler", c.Scheduler)
		add("karras", strconv.FormatBool(c.Karras))
		if c.Note != "" {
			notes = append(notes, c.Note)
		}
	}
	if cs := infotext.DiffusersClipSkip(p.ClipSkip); cs > 0 {
		add("clip-skip", strconv.Itoa(cs))
	}
	switch strings.ToLower(p.RNG) {
	case "cpu":
		add("rng", "cpu")
	case "gpu", "nv", "cuda":
		// A1111's GPU source is torch's CUDA stream; NV reproduces it on
		// the CPU.
		add("rng", "cuda")
	default:
		notes = append(notes, fmt.Sprintf("noise source %q is not available; using --rng cpu", p.RNG))
	}
	s, n, err := imageSettings(p, has, given)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %v", path, err)
	}
	out, notes = append(out, s...), append(notes, n...)
	s, n = extraSettings(p)
	return append(out, s...), append(notes, n...), nil
}

// needModels asks for the model files an infotext names but cannot hold.
func needModels(p infotext.Params, given map[string]bool) error {
	if !given["model"] && !isBundled(p) {
		if p.Model == "" && p.ModelHash == "" {
			return fmt.Errorf("does not name its model; give one with --model PATH")
		}
		name := strings.TrimSpace(fmt.Sprintf("%q", p.Model) + " (model hash " + p.ModelHash + ")")
		return fmt.Errorf("was made with model %s; give it with --model PATH", name)
	}
	if p.Refiner != "" && !given["refiner"] {
		return fmt.Errorf("was made with refiner %s; give it with --refiner PATH", p.Refiner)
	}
	return nil
}

// isBundled reports an infotext of the bundled model: its name, and its
// model hash when the text has one (the golden small model shares the
// name, not the weights).
func isBundled(p infotext.Params) bool {
	if p.Model != bundled.Name || !bundled.Available() {
		return false
	}
	if p.ModelHash == "" {
		return true
	}
	dir, err := bundled.Dir()
	if err != nil {
		return false
	}
	sum, _ := hashes.Default().SHA256(context.Background(), filepath.Join(dir, "unet", "diffusion_pytorch_model.safetensors"))
	return sum != "" && hashes.ModelHash(sum) == p.ModelHash
}

// imageSettings handles img2img and the refiner split.
func imageSettings(p infotext.Params, has, given map[string]bool) ([]setting, []string, error) {
	var out []setting
	var notes []string
	hires := has["Hires upscale"] || has["Hires resize"]
	if hires {
		notes = append(notes, "hires fix is not available; repeating the first pass")
	}
	if p.DenoisingStrength != 0 && !hires {
		if !given["image"] {
			return nil, nil, fmt.Errorf("was made by img2img (Denoising strength %s) from an input image a PNG does not hold; give it with --image PATH", infotext.FormatFloat(p.DenoisingStrength))
		}
		out = append(out, setting{"strength", infotext.FormatFloat(p.DenoisingStrength)})
	}
	if p.Refiner != "" && p.RefinerSwitchAt > 0 && p.RefinerSwitchAt < 1 {
		out = append(out, setting{"high-noise-frac", infotext.FormatFloat(p.RefinerSwitchAt)})
	}
	return out, notes, nil
}

// ourExtras are the pairs sdxl-run adds (see options.infotext), read back
// into their flags.
var ourExtras = map[string]string{
	"Prompt 2": "prompt-2", "Negative prompt 2": "negative-prompt-2", "CFG rescale": "guidance-rescale",
	"Denoising end": "denoising-end", "Prompt weighting": "prompt-weighting",
}

// informational are pairs that describe the image without changing it.
var informational = map[string]bool{
	"Batch pos": true, "Created Date": true, "Civitai resources": true, "Civitai metadata": true,
	"TI hashes": true, "Emphasis": true, "Hires upscaler": true, "Hires steps": true,
}

func extraSettings(p infotext.Params) ([]setting, []string) {
	var out []setting
	var ignored []string
	ours := strings.HasPrefix(p.Version, "sdxl-run ")
	for _, f := range p.Extra {
		switch {
		case ourExtras[f.Key] != "":
			out = append(out, setting{ourExtras[f.Key], f.Value})
		case f.Key == "VAE tile size" && ours:
			out = append(out, setting{"vae-tiling", "true"})
			if f.Value != "default" {
				out = append(out, setting{"vae-tile-size", f.Value})
			}
		case f.Key == "Batch size" && ours:
			// Our batches share one seed; A1111's count seeds up.
			out = append(out, setting{"num-images", f.Value})
		case !informational[f.Key]:
			ignored = append(ignored, f.Key)
		}
	}
	var notes []string
	if len(p.LoraHashes) > 0 {
		var names []string
		for _, l := range p.LoraHashes {
			names = append(names, l.Name)
		}
		notes = append(notes, "the image used LoRAs ("+strings.Join(names, ", ")+"); their <lora:...> tags stay in the prompt")
	}
	if len(ignored) > 0 {
		notes = append(notes, "settings not available here, ignored: "+strings.Join(ignored, ", "))
	}
	return out, notes
}
