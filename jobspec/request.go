package jobspec

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/sdxl-go/sdxl/sched"
	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/sdxl/infotext"
)

// Env is what the serving side knows that a job needs.
type Env struct {
	Limits Limits
	// LoRAs reports a LoRA folder: without one a job naming LoRAs is
	// refused.
	LoRAs bool
}

// Request maps a normalized, checked job to the engine's request for its
// first batch (set Seed to IterationSeed(k) for batch k), decoding its
// images. Warnings say what runs differently than the job asked.
func (s *Spec) Request(env Env) (sdxl.Request, []string, error) {
	l := env.Limits.WithDefaults()
	if err := s.Check(l); err != nil {
		return sdxl.Request{}, nil, err
	}
	if len(s.LoRAs) > 0 && !env.LoRAs {
		return sdxl.Request{}, nil, fieldErr("loras", "no LoRA folder was given (start sdxl-run serve, worker or batch with --lora-dir)")
	}
	name, karras, note, err := s.schedulerChoice()
	if err != nil {
		return sdxl.Request{}, nil, err
	}
	var warnings []string
	if note != "" {
		warnings = append(warnings, note)
	}
	req := sdxl.Request{
		Prompt: s.promptWithLoRAs(), Prompt2: s.Prompt2,
		NegativePrompt: nonEmpty(s.NegativePrompt), NegativePrompt2: nonEmpty(s.NegativePrompt2),
		Weighting: sdxl.Weighting(s.PromptWeighting), ClipSkip: infotext.DiffusersClipSkip(s.ClipSkip),
		Width: s.Width, Height: s.Height, Steps: s.Steps, Guidance: s.CFGScale, GuidanceRescale: s.GuidanceRescale,
		Scheduler: name, Karras: karras, Seed: uint64(max(s.Seed, 0)), RNG: s.RNG, NumImages: s.BatchSize,
		HighNoiseFrac: s.RefinerSwitchAt, Strength: s.DenoisingStrength, VAETiling: s.VAETiling,
		Watermark: s.Watermark == nil || *s.Watermark,
	}
	if req.Weighting == "" {
		req.Weighting = sdxl.WeightingNone
	}
	if req.RNG == "" {
		req.RNG = "cpu"
	}
	if err := s.images(&req, l.MaxPixels); err != nil {
		return sdxl.Request{}, nil, err
	}
	return req, warnings, nil
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// promptWithLoRAs appends the job's LoRAs as A1111 prompt tags, which the
// engine loads from its LoRA folder.
func (s *Spec) promptWithLoRAs() string {
	p := s.Prompt
	for _, l := range s.LoRAs {
		p += " <lora:" + l.Name + ":" + strconv.FormatFloat(l.Weight, 'g', -1, 64) + ">"
	}
	return p
}

// images decodes the input image and mask into req. An input image is
// resized to Width × Height when both are given and differ (A1111's
// "just resize", Lanczos); with a mask the engine resizes both itself.
func (s *Spec) images(req *sdxl.Request, maxPixels int) error {
	if len(s.InitImages) == 0 {
		return nil
	}
	img, err := DecodeImage("init_images[0]", s.InitImages[0], maxPixels)
	if err != nil {
		return err
	}
	if s.Mask != "" {
		if req.MaskImage, err = DecodeImage("mask", s.Mask, maxPixels); err != nil {
			return err
		}
	} else if s.Width > 0 && s.Height > 0 && (img.W != s.Width || img.H != s.Height) {
		if img, err = imageio.ResizeLanczos(img, s.Width, s.Height); err != nil {
			return fieldErr("init_images[0]", "resizing to %dx%d: %v", s.Width, s.Height, err)
		}
	}
	req.InitImage = img
	return nil
}

// DecodeImage decodes a base64 PNG or JPEG (a "data:image/...;base64,"
// prefix allowed) of at most maxPixels pixels; field names it in errors.
func DecodeImage(field, b64 string, maxPixels int) (*imageio.RGB, error) {
	b, err := DecodeBase64(field, b64)
	if err != nil {
		return nil, err
	}
	img, err := imageio.DecodeLimit(b, maxPixels)
	if err != nil {
		var tl *imageio.TooLargeError
		if errors.As(err, &tl) {
			return nil, fieldErr(field, "%v", err)
		}
		return nil, fieldErr(field, "not a PNG or JPEG image (%v)", err)
	}
	return img, nil
}

// DecodeBase64 decodes standard base64 with or without padding, after an
// optional data: URL prefix, as A1111's decode_base64_to_image accepts.
func DecodeBase64(field, s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "data:") {
		_, rest, ok := strings.Cut(s, ",")
		if !ok {
			return nil, fieldErr(field, "a data: URL without a comma")
		}
		s = rest
	}
	if s == "" {
		return nil, fieldErr(field, "empty: want a base64 PNG or JPEG")
	}
	if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
		return nil, fieldErr(field, "image URLs are not fetched: send the image as base64")
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if b, err = base64.RawStdEncoding.DecodeString(s); err != nil {
			return nil, fieldErr(field, "not base64 (%v)", err)
		}
	}
	return b, nil
}

// schedulerChoice maps sampler_name and scheduler to one of the engine's
// schedulers. This project's own names ("euler_a", "dpmpp_2m_karras")
// pass through; A1111's go through infotext.Scheduler. A schedule type
// asked for by name that this engine does not have is an error; one that
// A1111 would pick by itself ("Automatic") becomes a note.
func (s *Spec) schedulerChoice() (name string, karras bool, note string, err error) {
	sampler, schedule := s.SamplerName, s.Scheduler
	if sampler == "" {
		sampler = DefaultSampler
	}
	explicit := schedule != "" && !strings.EqualFold(schedule, "automatic")
	for _, n := range sched.Names() {
		if n == sampler {
			return sampler, strings.EqualFold(schedule, "karras"), "", nil
		}
	}
	c, err := infotext.Scheduler(sampler, schedule)
	if err != nil {
		return "", false, "", fieldErr("sampler_name", "%s is not available (samplers: %s)", quote(sampler), knownList(SamplerNames()))
	}
	if c.Note != "" && explicit {
		return "", false, "", fieldErr("scheduler", "%s: %s (schedulers: %s)", quote(schedule), c.Note, knownList(SchedulerLabels()))
	}
	return c.Scheduler, c.Karras, c.Note, nil
}

// SamplerNames lists A1111's names of the samplers this engine runs.
func SamplerNames() []string {
	var out []string
	for _, n := range sched.Names() {
		if name, _, err := infotext.Sampler(n, false); err == nil && !contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// SchedulerLabels lists the A1111 schedule types this engine runs.
func SchedulerLabels() []string { return []string{"Automatic", "Uniform", "Karras"} }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// requestFields names the JSON field of each sdxl.Request field.
var requestFields = map[string]string{
	"Prompt": "prompt", "Prompt2": "prompt_2", "NegativePrompt": "negative_prompt",
	"NegativePrompt2": "negative_prompt_2", "Weighting": "prompt_weighting", "ClipSkip": "clip_skip",
	"Width": "width", "Height": "height", "Steps": "steps", "Guidance": "cfg_scale",
	"GuidanceRescale": "guidance_rescale", "Scheduler": "sampler_name", "Karras": "scheduler", "Seed": "seed",
	"RNG": "rng", "NumImages": "batch_size", "HighNoiseFrac": "refiner_switch_at", "DenoisingEnd": "denoising_end",
	"InitImage": "init_images", "Image": "init_images", "Strength": "denoising_strength",
	"MaskImage": "mask", "Mask": "mask", "LoRAs": "loras", "VAETiling": "vae_tiling", "VAETileSize": "vae_tile_size",
	"Watermark": "watermark", "ControlNets": "controlnets",
}

// FieldName is the JSON field of an sdxl.Request field.
func FieldName(requestField string) string {
	if f, ok := requestFields[requestField]; ok {
		return f
	}
	return sdxl.FieldLabel(requestField)
}

// FromEngine turns the engine's *sdxl.FieldError into a *FieldError
// naming the JSON field; other errors pass through.
func FromEngine(err error) error {
	var fe *sdxl.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	msg := fe.Reason
	switch v := fe.Value.(type) {
	case nil:
	case string:
		msg = quote(v) + ": " + msg
	default:
		msg = fmt.Sprint(v) + ": " + msg
	}
	return &FieldError{Field: FieldName(fe.Field), Message: msg}
}

func formatInt(v int64) string     { return strconv.FormatInt(v, 10) }
func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
