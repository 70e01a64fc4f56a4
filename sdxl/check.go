package sdxl

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sdxl-go/sdxl/sched"
	"github.com/sdxl-go/sdxl/sdxl/capture"
	"github.com/sdxl-go/sdxl/sdxl/prompt"
)

// FieldError is a request error that names the Request field at fault, so
// that each front end can name it in its own terms (a CLI flag, a JSON
// field) and answer with a usage error rather than a failure.
type FieldError struct {
	// Field is the Request field's Go name ("Width", "NegativePrompt").
	Field string
	// Value is the offending value (nil when the field's absence or its
	// combination with others is the problem).
	Value any
	// Reason says what is wrong and what would be right.
	Reason string
}

func (e *FieldError) Error() string {
	if e.Value == nil {
		return fmt.Sprintf("%s: %s", FieldLabel(e.Field), e.Reason)
	}
	return fmt.Sprintf("%s %v: %s", FieldLabel(e.Field), e.Value, e.Reason)
}

// FieldLabel spells a field name in words: "GuidanceRescale" → "guidance
// rescale".
func FieldLabel(field string) string {
	if field == "LoRAs" {
		return "LoRAs" // "lo r as" otherwise
	}
	var b strings.Builder
	for i, r := range field {
		if unicode.IsUpper(r) && i > 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

func fieldErr(field string, value any, format string, a ...any) *FieldError {
	return &FieldError{Field: field, Value: value, Reason: fmt.Sprintf(format, a...)}
}

// Warning is something a request asks for that the run will not do, or
// will do differently than the user may expect (diffusers would silently
// ignore most of these). The run still goes ahead.
type Warning struct {
	Field   string // the Request field concerned, "" for none
	Message string
}

func (w Warning) String() string { return w.Message }

// Roles are what a request will run with, known before anything is loaded:
// which models the engine has and whether the request gives an input image.
type Roles struct {
	Base, Refiner, Image bool
}

// CheckRequest validates everything about req that needs no loaded model
// or file: its values and their combination with roles. Front ends call it
// to answer mistakes before loading gigabytes; Check and Generate run the
// same checks again with the real models.
func CheckRequest(req Request, roles Roles) error {
	return checkRequest(&req, roles)
}

// checkRequest is CheckRequest on r in place: it applies the defaults.
func checkRequest(r *Request, roles Roles) error {
	if err := checkRaw(r, roles); err != nil {
		return err
	}
	r.defaults()
	if err := checkValues(r); err != nil {
		return err
	}
	if err := checkControlValues(r, roles); err != nil {
		return err
	}
	if err := checkLoRAValues(r); err != nil {
		return err
	}
	if r.Weighting != WeightingNone {
		if err := checkWeighted(r.prompts(false)); err != nil {
			return err
		}
		if err := checkPromptSyntax(r); err != nil {
			return err
		}
		if r.Weighting == WeightingA1111 && roles.Refiner {
			return fieldErr("Weighting", r.Weighting, "needs the base's two text encoders and the refiner has one: use none or compel")
		}
	}
	return nil
}

// checkRaw validates what only the request as given can tell: fields set
// to something other than their zero value where that means nothing.
func checkRaw(r *Request, roles Roles) error {
	if !roles.Base && !roles.Refiner {
		return errors.New("no model loaded")
	}
	if r.Strength != 0 && !roles.Image {
		return fieldErr("Strength", r.Strength, "applies to img2img only: give an input image")
	}
	if r.HighNoiseFrac != 0 && !(roles.Base && roles.Refiner) {
		return fieldErr("HighNoiseFrac", r.HighNoiseFrac, "splits the steps between a base and a refiner: give both")
	}
	if !roles.Image && !roles.Base {
		return fieldErr("InitImage", nil, "text-to-image needs a base model: the refiner alone only refines an existing image (give one)")
	}
	if validFrac(r.DenoisingEnd) && roles.Base && roles.Refiner {
		return fieldErr("DenoisingEnd", r.DenoisingEnd, "is for a one-model run; with base and refiner the split is the high-noise fraction")
	}
	if r.inpainting() && !roles.Image {
		return fieldErr(maskField(r), nil, "a mask says which part of an input image to repaint: give the image")
	}
	if r.inpainting() && len(r.ControlNets) > 0 {
		return fieldErr("ControlNets", nil, "inpainting with ControlNets (diffusers' StableDiffusionXLControlNetInpaintPipeline) is not supported: give either")
	}
	if r.inpainting() && r.HighNoiseFrac != 0 {
		return fieldErr("HighNoiseFrac", r.HighNoiseFrac, "inpainting runs one model, without a refiner stage")
	}
	if r.VAETileSize != 0 && !r.VAETiling {
		return fieldErr("VAETileSize", r.VAETileSize, "applies to tiled VAE decoding: turn VAETiling on")
	}
	if r.InitNoise != nil && roles.Image {
		return fieldErr("InitNoise", nil, "initial noise applies to text-to-image only: img2img starts from the image, not from noise")
	}
	return nil
}

// checkValues validates the request's own values. Defaults must have been
// applied.
func checkValues(r *Request) error {
	for _, c := range []struct {
		field string
		ok    bool
		value any
		why   string
	}{
		{"Width", r.Width%8 == 0 && r.Width >= 0, r.Width, "must be a positive multiple of 8"},
		{"Height", r.Height%8 == 0 && r.Height >= 0, r.Height, "must be a positive multiple of 8"},
		{"Steps", r.Steps >= 1, r.Steps, "must be at least 1"},
		{"NumImages", r.NumImages >= 1, r.NumImages, "must be at least 1"},
		{"Guidance", !math.IsNaN(r.Guidance) && !math.IsInf(r.Guidance, 0), r.Guidance, "must be a finite number (1 or less turns guidance off)"},
		{"GuidanceRescale", r.GuidanceRescale >= 0 && r.GuidanceRescale <= 1, r.GuidanceRescale, "must be in [0, 1]"},
		{"Strength", r.Strength > 0 && r.Strength <= 1, r.Strength, "must be in (0, 1]"},
		{"HighNoiseFrac", validFrac(r.HighNoiseFrac), r.HighNoiseFrac, "must be in (0, 1)"},
		{"DenoisingEnd", r.DenoisingEnd == 0 || validFrac(r.DenoisingEnd), r.DenoisingEnd, "must be in (0, 1)"},
		{"ClipSkip", r.ClipSkip >= 0, r.ClipSkip, "must be >= 0"},
		{"RNG", r.RNG == "cpu" || r.RNG == "cuda", r.RNG, "want cpu or cuda"},
	} {
		if !c.ok {
			return fieldErr(c.field, c.value, "%s", c.why)
		}
	}
	if _, err := r.Weighting.Conditioner(); err != nil {
		return fieldErr("Weighting", r.Weighting, "want none, compel or a1111")
	}
	if r.Scheduler != "" && !slices.Contains(sched.Names(), r.Scheduler) {
		return fieldErr("Scheduler", r.Scheduler, "unknown; choose one of %s", strings.Join(sched.Names(), ", "))
	}
	if err := checkTexts(r); err != nil {
		return err
	}
	if len(r.Dump) > 0 {
		if _, err := capture.New(r.Dump...); err != nil {
			return fieldErr("Dump", strings.Join(r.Dump, ","), "%v", err)
		}
	}
	return checkInputs(r)
}

// checkTexts refuses prompts that are not UTF-8 (they would fail only when
// the PNG's text chunk is written, after all the work).
func checkTexts(r *Request) error {
	texts := []struct {
		field string
		s     *string
	}{{"Prompt", &r.Prompt}, {"Prompt2", &r.Prompt2}, {"NegativePrompt", r.NegativePrompt}, {"NegativePrompt2", r.NegativePrompt2}}
	for _, t := range texts {
		if t.s != nil && !utf8.ValidString(*t.s) {
			return fieldErr(t.field, nil, "is not valid UTF-8 text")
		}
	}
	return nil
}

// checkInputs validates the tensors a request may carry.
func checkInputs(r *Request) error {
	if r.InitImage != nil && r.Image != nil {
		return fieldErr("InitImage", nil, "give the input image once: as pixels (InitImage) or as a tensor (Image)")
	}
	if r.MaskImage != nil && r.Mask != nil {
		return fieldErr("MaskImage", nil, "give the mask once: as a picture (MaskImage) or processed (Mask)")
	}
	if i := firstNonFinite(r.Mask); i >= 0 {
		return fieldErr("Mask", nil, "value %d is %v: the mask must be finite (1 = repaint, 0 = keep)", i, r.Mask[i])
	}
	if r.VAETileSize < 0 {
		return fieldErr("VAETileSize", r.VAETileSize, "must be a positive number of pixels (0: the VAE's sample_size)")
	}
	if r.InitNoise != nil {
		if i := firstNonFinite(r.InitNoise); i >= 0 {
			return fieldErr("InitNoise", nil, "value %d is %v: the initial noise must be finite", i, r.InitNoise[i])
		}
	}
	return nil
}

// firstNonFinite returns the index of the first NaN or infinity, or -1.
func firstNonFinite(x []float32) int { return sched.FirstNonFinite(x) }

// checkPromptSyntax parses the prompts in the request's weighting syntax,
// so that a syntax error or an overflowing weight (Compel's "cat" and
// 1000 "+") is a field error before any work.
func checkPromptSyntax(r *Request) error {
	var parse func(string) error
	switch r.Weighting {
	case WeightingCompel:
		parse = func(s string) error { _, err := prompt.ParseCompel(s); return err }
	case WeightingA1111:
		parse = func(s string) error { _, err := prompt.ParseA1111(s); return err }
	default:
		return nil
	}
	texts := []struct {
		field string
		s     *string
	}{{"Prompt", &r.Prompt}, {"NegativePrompt", r.NegativePrompt}}
	for _, t := range texts {
		if t.s == nil {
			continue
		}
		if err := parse(*t.s); err != nil && !errors.Is(err, prompt.ErrEmptyPrompt) {
			return fieldErr(t.field, nil, "%v", err)
		}
	}
	return nil
}

// validFrac is diffusers' denoising_value_valid: a float strictly inside
// (0, 1); other values mean "not given".
func validFrac(f float64) bool { return f > 0 && f < 1 }
