// Package jobspec is the JSON form of one generation job, shared by every
// front end that takes jobs as data: the HTTP server's native job API
// (POST /v1/jobs), its AUTOMATIC1111 endpoints (/sdapi/v1/txt2img and
// img2img), `sdxl-run batch` input lines and the queue workers.
//
// Field names are AUTOMATIC1111's txt2img names where one exists (prompt,
// negative_prompt, seed, steps, cfg_scale, width, height, sampler_name,
// scheduler, batch_size, n_iter, denoising_strength, init_images, mask,
// refiner_switch_at), plus this project's for the rest (prompt_2,
// refiner, loras, prompt_weighting, guidance_rescale, vae_tiling, rng,
// watermark). Decode reads the native form strictly: a wrong type, a bad
// value or an unknown field is a *FieldError naming the field. DecodeA1111
// reads A1111's request bodies, which carry many fields this engine does
// not have: unknown fields are ignored, but a feature that would change the
// image (hires fix, scripts, face restoration...) is refused by name.
//
// Spec.Request maps a job to an sdxl.Request (decoding its images);
// FromEngine maps the engine's *sdxl.FieldError back to the JSON field.
package jobspec

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Spec is one job. Decode fills the defaults of absent fields; Normalize
// fills those of zero fields and draws a random seed, so that a normalized
// Spec says exactly what runs.
type Spec struct {
	Prompt string `json:"prompt"`
	// NegativePrompt "" is no negative prompt: zeros for the base model
	// (diffusers' None with force_zeros_for_empty_prompt), as A1111's
	// empty negative prompt is read by this project.
	NegativePrompt  string `json:"negative_prompt,omitempty"`
	Prompt2         string `json:"prompt_2,omitempty"`
	NegativePrompt2 string `json:"negative_prompt_2,omitempty"`
	// Seed -1 draws a random seed (Normalize).
	Seed int64 `json:"seed"`
	// Steps are the denoising steps (50 when absent).
	Steps int `json:"steps"`
	// CFGScale is the guidance scale (5 when absent, diffusers' and
	// sdxl-run's default; A1111's endpoints default to its 7).
	CFGScale float64 `json:"cfg_scale"`
	// Width and Height in pixels, multiples of 8; 0 is the model's size
	// (or, with an input image, the image's).
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
	// SamplerName is an A1111 sampler ("Euler", "DPM++ 2M", "Euler a") or
	// one of this project's scheduler names ("euler", "dpmpp_2m_karras");
	// Scheduler is A1111's schedule type ("Automatic", "Karras",
	// "Uniform").
	SamplerName string `json:"sampler_name"`
	Scheduler   string `json:"scheduler"`
	// BatchSize images share one noise draw and seed (the engine's
	// NumImages); NIter batches run one after another with seeds Seed,
	// Seed+BatchSize, ... as A1111 counts them.
	BatchSize int `json:"batch_size"`
	NIter     int `json:"n_iter"`
	// DenoisingStrength is img2img's strength (0: the engine's default).
	DenoisingStrength float64 `json:"denoising_strength,omitempty"`
	// InitImages holds one input image (base64 PNG or JPEG, a data: URL
	// prefix allowed) for img2img; with Width and Height it is resized to
	// that size first (A1111's "just resize").
	InitImages []string `json:"init_images,omitempty"`
	// Mask (base64, white = repaint) makes the job inpainting.
	Mask string `json:"mask,omitempty"`
	// Refiner says whether a loaded refiner runs (nil: when loaded);
	// RefinerSwitchAt is the fraction of the steps the base runs (0.8).
	Refiner         *bool   `json:"refiner,omitempty"`
	RefinerSwitchAt float64 `json:"refiner_switch_at,omitempty"`
	// LoRAs name files of the server's LoRA folder; they become
	// <lora:NAME:WEIGHT> prompt tags, as A1111 writes them.
	LoRAs []LoRA `json:"loras,omitempty"`
	// PromptWeighting is none (diffusers), compel or a1111.
	PromptWeighting string `json:"prompt_weighting,omitempty"`
	// ClipSkip is A1111's "Clip skip" (1 and 2: SDXL's default layer).
	ClipSkip        int     `json:"clip_skip,omitempty"`
	GuidanceRescale float64 `json:"guidance_rescale,omitempty"`
	VAETiling       bool    `json:"vae_tiling,omitempty"`
	// Watermark applies SDXL's invisible watermark (nil: yes).
	Watermark *bool `json:"watermark,omitempty"`
	// RNG is the noise generator: cpu (default) or cuda.
	RNG string `json:"rng,omitempty"`
}

// LoRA is one LoRA of a job, by name in the server's LoRA folder.
type LoRA struct {
	Name   string  `json:"name"`
	Weight float64 `json:"weight"`
}

// Defaults are the values of absent fields that differ between the native
// form and A1111's.
type Defaults struct {
	Steps    int
	CFGScale float64
}

// Native are the native form's defaults (sdxl-run's).
var Native = Defaults{Steps: 50, CFGScale: 5}

// A1111 are AUTOMATIC1111's API defaults.
var A1111 = Defaults{Steps: 50, CFGScale: 7}

// New returns a Spec with the defaults of every field.
func New(d Defaults) Spec {
	return Spec{Seed: -1, Steps: d.Steps, CFGScale: d.CFGScale, SamplerName: DefaultSampler,
		Scheduler: "Automatic", BatchSize: 1, NIter: 1}
}

// DefaultSampler is the sampler of a job that names none: diffusers'
// SDXL scheduler (EulerDiscreteScheduler), sdxl-run's default.
const DefaultSampler = "Euler"

// Images is the number of images the job makes.
func (s *Spec) Images() int { return max(s.BatchSize, 1) * max(s.NIter, 1) }

// IterationSeed is the seed of batch k (0-based): Seed + k*BatchSize, as
// A1111 numbers the seeds of its batches.
func (s *Spec) IterationSeed(k int) uint64 {
	return uint64(s.Seed) + uint64(k)*uint64(max(s.BatchSize, 1))
}

// Record is the Spec as a run record keeps it: input images replaced by
// their SHA-256 ("sha256:<hex>"), so that the record stays small and still
// identifies them.
func (s Spec) Record() Spec {
	if len(s.InitImages) > 0 {
		imgs := make([]string, len(s.InitImages))
		for i, b := range s.InitImages {
			imgs[i] = digest(b)
		}
		s.InitImages = imgs
	}
	if s.Mask != "" {
		s.Mask = digest(s.Mask)
	}
	return s
}

func digest(b64 string) string {
	sum := sha256.Sum256([]byte(b64))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// FieldError is a problem with one JSON field of a job.
type FieldError struct {
	// Field is the JSON field ("width", "init_images[0]", "loras[1].name",
	// "override_settings.sd_vae").
	Field string
	// Message says what is wrong and what would be right.
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

func fieldErr(field, format string, a ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, a...)}
}

// quote shows a string value in an error, shortened.
func quote(s string) string {
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// knownList joins names for an error message.
func knownList(names []string) string { return strings.Join(names, ", ") }
