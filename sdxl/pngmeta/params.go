package pngmeta

import (
	"strconv"
	"strings"

	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/sdxl/infotext"
)

// Options are what Params cannot read from the request.
type Options struct {
	// Version is the "Version" value ("sdxl-run v1.2.0").
	Version string
	// Extra pairs go after the run's own extra pairs and before the Lora
	// hashes (e.g. the command line's "ControlNet <i>" fields).
	Extra []infotext.Field
}

// Params describes a run in AUTOMATIC1111's terms: req is the request as
// given to Generate (its zero values are the engine's defaults), res its
// result, models the engine's models with their hashes.
func Params(req sdxl.Request, res *sdxl.Result, models []ModelRef, opt Options) infotext.Params {
	sampler, schedule, err := infotext.Sampler(req.Scheduler, req.Karras)
	if err != nil {
		sampler, schedule = req.Scheduler, ""
	}
	steps := req.Steps
	if steps == 0 {
		steps = 50
	}
	p := infotext.Params{
		Prompt: promptWithTags(req), NegativePrompt: deref(req.NegativePrompt), Steps: steps, Sampler: sampler,
		ScheduleType: schedule, CFGScale: req.Guidance, Seed: req.Seed, Width: res.ImageShape[3], Height: res.ImageShape[2],
		ClipSkip: infotext.ClipSkipFor(req.ClipSkip), Version: opt.Version,
	}
	if req.RNG == "" || req.RNG == "cpu" {
		// A1111's default noise source, "GPU", is torch's CUDA stream:
		// RNG "cuda".
		p.RNG = "CPU"
	}
	if req.InitImage != nil || req.Image != nil {
		p.DenoisingStrength = strength(req)
	}
	if req.VAETiling {
		size := "default"
		if req.VAETileSize != 0 {
			size = strconv.Itoa(req.VAETileSize)
		}
		p.Extra = append(p.Extra, infotext.Field{Key: "VAE tile size", Value: size})
	}
	setModels(&p, req, models)
	for _, e := range []struct{ key, value string }{
		{"Prompt 2", req.Prompt2}, {"Negative prompt 2", deref(req.NegativePrompt2)},
		{"CFG rescale", formatNonZero(req.GuidanceRescale)}, {"Denoising end", formatNonZero(req.DenoisingEnd)},
	} {
		if e.value != "" {
			p.Extra = append(p.Extra, infotext.Field{Key: e.key, Value: e.value})
		}
	}
	if req.Weighting != "" && req.Weighting != sdxl.WeightingNone {
		p.Extra = append(p.Extra, infotext.Field{Key: "Prompt weighting", Value: string(req.Weighting)})
	}
	p.Extra = append(p.Extra, opt.Extra...)
	p.Extra = append(p.Extra, LoraHashes(res.LoRAs)...)
	return p
}

// setModels names the models: the base as Model, a refiner that ran after
// it as A1111's Refiner with its switch point.
func setModels(p *infotext.Params, req sdxl.Request, models []ModelRef) {
	for _, m := range models {
		if m.Role == "refiner" && len(models) > 1 {
			// A1111's refiner short_title, "name [shorthash]".
			p.Refiner, p.RefinerSwitchAt = m.Name, req.HighNoiseFrac
			if p.RefinerSwitchAt == 0 {
				p.RefinerSwitchAt = 0.8
			}
			if m.Hash != "" {
				p.Refiner += " [" + m.Hash + "]"
			}
			continue
		}
		p.Model, p.ModelHash = m.Name, m.Hash
	}
}

// strength is the img2img strength the engine uses for req: the
// request's, or its default (0.3; 0.8 with ControlNets; 0.9999 with a
// mask).
func strength(req sdxl.Request) float64 {
	switch {
	case req.Strength != 0:
		return req.Strength
	case req.MaskImage != nil || req.Mask != nil:
		return sdxl.DefaultInpaintStrength
	case len(req.ControlNets) > 0:
		return 0.8
	}
	return 0.3
}

// promptWithTags is the prompt as AUTOMATIC1111 would have it: the
// request's own LoRAs as <lora:NAME:SCALE> tags after the text (tags typed
// in the prompt are in it already).
func promptWithTags(req sdxl.Request) string {
	prompt := req.Prompt
	for _, l := range req.LoRAs {
		name := l.Name
		if name == "" && l.File != nil {
			name = l.File.Name()
		}
		w := strconv.FormatFloat(l.Scale, 'g', -1, 64)
		if l.TextScale != nil && *l.TextScale != l.Scale {
			// <lora:NAME:TE:UNET>, the Lora extension's two strengths.
			w = strconv.FormatFloat(*l.TextScale, 'g', -1, 64) + ":" + w
		}
		prompt += " <lora:" + name + ":" + w + ">"
	}
	return prompt
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func formatNonZero(v float64) string {
	if v == 0 {
		return ""
	}
	return infotext.FormatFloat(v)
}

// LoraHashes is AUTOMATIC1111's "Lora hashes" field: "NAME: HASH, ..." with
// HASH the first 12 hex digits of the file's addnet hash (SHA-256 after the
// safetensors header) and ":" and "," taken out of NAME, each name once.
func LoraHashes(loras []sdxl.LoRA) []infotext.Field {
	var parts []string
	seen := map[string]bool{}
	for _, l := range loras {
		if l.File == nil {
			continue
		}
		name := strings.NewReplacer(":", "", ",", "").Replace(l.Name)
		if seen[name] {
			continue
		}
		seen[name] = true
		parts = append(parts, name+": "+l.File.AddnetHash()[:12])
	}
	if len(parts) == 0 {
		return nil
	}
	return []infotext.Field{{Key: "Lora hashes", Value: strings.Join(parts, ", ")}}
}

// LoRARecord is one applied LoRA in a run record.
type LoRARecord struct {
	Path string `json:"path"`
	Name string `json:"name"`
	// Tag is the prompt tag it came from ("" for one of the request).
	Tag       string  `json:"tag,omitempty"`
	Scale     float64 `json:"scale"`
	TextScale float64 `json:"text_scale"`
	Format    string  `json:"format"`
	SHA256    string  `json:"sha256"`
	// AddnetHash is AUTOMATIC1111's LoRA hash (see LoraHashes), whole.
	AddnetHash string `json:"addnet_hash"`
}

// LoRARecords describes the LoRAs a run applied (Result.LoRAs).
func LoRARecords(loras []sdxl.LoRA) []LoRARecord {
	var out []LoRARecord
	for _, l := range loras {
		if l.File == nil {
			continue
		}
		r := LoRARecord{Path: l.File.Path, Name: l.Name, Tag: l.Tag, Scale: l.Scale, TextScale: l.Scale,
			Format: l.File.Format(), SHA256: l.File.SHA256(), AddnetHash: l.File.AddnetHash()}
		if l.TextScale != nil {
			r.TextScale = *l.TextScale
		}
		out = append(out, r)
	}
	return out
}

// Chunks returns the text chunks of image i of a batch of n images: the
// parameters (with "Batch size" and "Batch pos" when n > 1, the names of
// A1111 before 1.6: every image of an engine batch has the same seed, its
// position selects its noise slice) and the run record.
func Chunks(p infotext.Params, record any, n, i int) ([]imageio.TextChunk, error) {
	run, err := imageio.RunChunk(record)
	if err != nil {
		return nil, err
	}
	if n > 1 {
		p.Extra = append([]infotext.Field{
			{Key: "Batch size", Value: strconv.Itoa(n)},
			{Key: "Batch pos", Value: strconv.Itoa(i)},
		}, p.Extra...)
	}
	return []imageio.TextChunk{{Key: imageio.ParametersKey, Value: infotext.Format(p)}, run}, nil
}
