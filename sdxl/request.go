package sdxl

import (
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/sdxl/vae"
)

// Weighting selects how prompt strings become conditioning (see
// Conditioner).
type Weighting string

const (
	// WeightingNone is diffusers' own encode_prompt: no syntax, prompts
	// truncated at 77 tokens.
	WeightingNone Weighting = "none"
	// WeightingCompel is Compel's syntax; long prompts are chunked and
	// padded like CompelForSDXL.
	WeightingCompel Weighting = "compel"
	// WeightingA1111 is AUTOMATIC1111's emphasis syntax.
	WeightingA1111 Weighting = "a1111"
)

// Request is one generation. Zero values mean diffusers' defaults where it
// has one. Which model runs which part follows from what the engine holds
// and what the request gives:
//
//	base only, no image       text to image
//	base + refiner, no image  ensemble of experts (base to HighNoiseFrac, then the refiner)
//	an input image            img2img with the base (then the refiner, if loaded),
//	                          or with the refiner alone
type Request struct {
	Prompt, Prompt2 string
	// NegativePrompt nil is diffusers' None (zeros for the base, since
	// force_zeros_for_empty_prompt); a pointer to "" encodes "".
	NegativePrompt, NegativePrompt2 *string
	Weighting                       Weighting
	ClipSkip                        int

	// Width and Height in pixels (multiples of 8); 0 means the UNet's
	// sample_size times the VAE scale factor (1024 for SDXL), each on its
	// own as diffusers' `height or default_sample_size * vae_scale_factor`.
	// With an input image 0 means the image's size (any other value must
	// equal it).
	Width, Height int
	Steps         int // 0 means 50
	// Guidance is guidance_scale. Classifier-free guidance is on only when
	// it is > 1; 0 (the zero value) and 1 both turn it off, and then no
	// negative conditioning is computed at all, as in diffusers. (The CLI
	// defaults to diffusers' 5.)
	Guidance float64
	// GuidanceRescale is guidance_rescale (0 = off).
	GuidanceRescale float64
	// Scheduler is a name of sched.Names or a diffusers class name ("" =
	// the model's own scheduler_config.json); Karras adds use_karras_sigmas.
	Scheduler string
	Karras    bool
	// Seed and RNG ("cpu" or "cuda") select the torch-compatible generator.
	Seed uint64
	RNG  string
	// NumImages is num_images_per_prompt (0 means 1). As in diffusers the
	// batch shares one draw: the initial noise is one [NumImages, 4, h, w]
	// tensor, so image k of a batch is not the image of a one-image run
	// with the same seed (image k is that run with InitNoise set to the
	// batch draw's k-th slice).
	NumImages int
	// InitNoise replaces the first random draw of a text-to-image run (the
	// latents before init_noise_sigma), shape [NumImages, 4, h, w]. It is
	// an error with an input image (img2img draws no initial latents).
	InitNoise []float32
	// InitNoiseShape, when set, is InitNoise's shape as its source gives
	// it, checked against the latents' (a transposed tensor of the right
	// size is an error, not noise in the wrong places).
	InitNoiseShape []int

	// Micro-conditioning; nil means diffusers' default. Sizes are
	// diffusers' (height, width) tuples; crops are (top, left).
	OriginalSize, TargetSize                 *[2]int
	CropsTopLeft                             [2]int
	NegativeOriginalSize, NegativeTargetSize *[2]int
	NegativeCropsTopLeft                     [2]int
	AestheticScore, NegativeAestheticScore   *float64

	// HighNoiseFrac splits the steps between base and refiner when both
	// are loaded (denoising_end / denoising_start; 0 means 0.8). It is an
	// error when the engine cannot run both.
	HighNoiseFrac float64
	// DenoisingEnd is denoising_end for a one-model run (text to image or
	// img2img): the steps below this fraction are skipped. As in diffusers
	// the partly denoised latents are still decoded unless OutputLatents
	// is set. With both models loaded use HighNoiseFrac instead.
	DenoisingEnd float64

	// InitImage is an img2img input as decoded pixels (imageio.Load or
	// imageio.Decode); it is resized to multiples of 8 as diffusers'
	// image processor does (a warning says so) and becomes Image.
	InitImage *imageio.RGB
	// Image is an img2img input as a tensor: NCHW [1, 3, H, W] in [-1, 1],
	// or, with ImageIsLatents, scaled latents [1, C, h, w] (C the UNet's
	// in_channels) used as they are, as diffusers does with a 4-channel
	// image tensor. Give InitImage or Image, not both.
	Image          []float32
	ImageShape     []int
	ImageIsLatents bool
	// Strength of img2img (0 means diffusers' default: 0.3, 0.8 with
	// ControlNets, DefaultInpaintStrength (0.9999) with a mask). Any other
	// value without an input image is an error.
	Strength float64

	// ControlNets steer the base model (see ControlNet); several are summed
	// as diffusers' MultiControlNetModel does. They need the base alone
	// (no refiner) and exclude GuidanceRescale, and DenoisingEnd with an
	// input image, which diffusers' ControlNet pipelines do not have.
	ControlNets []ControlNet
	// GuessMode is diffusers' guess_mode: the ControlNets see only the
	// text-conditioned half of the batch and their residuals ramp from 0.1
	// (first skip) to 1 (mid block). A ControlNet with
	// global_pool_conditions turns it on, as in diffusers.
	GuessMode bool

	// MaskImage makes the request inpainting (StableDiffusionXLInpaintPipeline,
	// see inpaint.go): the mask picture for the input image, white =
	// repaint, processed as diffusers' mask processor does (resized like
	// the image, grey, binarised at 0.5). With a mask, an InitImage is
	// resized to Width x Height (0: the model's default size, 1024 for
	// SDXL), as diffusers' inpainting pipeline does; an Image tensor keeps
	// its size. Not with ControlNets.
	MaskImage *imageio.RGB
	// Mask is an already processed mask instead: one value per pixel of
	// the input image, 1 = repaint, 0 = keep (imageio.ProcessMask). Give
	// MaskImage or Mask, not both.
	Mask []float32

	// LoRAs are merged into the models' weights for this request (see
	// LoRA); several add up. Prompt tags <lora:NAME:W> add more when the
	// engine has a LoRA folder (Options.LoRADir). None (nil) runs the
	// models as loaded: LoRAs of earlier requests are taken out.
	LoRAs []LoRA

	// VAETiling decodes (and encodes the input image) in tiles, diffusers'
	// AutoencoderKL.enable_tiling(): memory bounded by the tile size, the
	// tiles blended over their overlaps (the image differs slightly from an
	// untiled decode, as in diffusers).
	VAETiling bool
	// VAETileSize is the tile edge in pixels (0: the VAE config's
	// sample_size, 1024 for SDXL); it needs VAETiling.
	VAETileSize int

	// Embeds and RefinerEmbeds replace prompt encoding for the base (or
	// the only model) and the refiner: diffusers' prompt_embeds=,
	// pooled_prompt_embeds=, negative_... arguments.
	Embeds, RefinerEmbeds *PromptEmbeds

	// OutputLatents skips the VAE decode.
	OutputLatents bool
	// Watermark applies SDXL's invisible watermark to images >= 256 wide
	// (narrower ones are left alone, as in diffusers). Images at least 256
	// wide but under 256*256 pixels, where invisible-watermark itself
	// fails, are left alone too, with a warning.
	Watermark bool

	// Dump lists module-path patterns (sdxl/capture syntax) whose UNet
	// activations are recorded at every step; ControlNet modules are under
	// "controlnet." (several: "controlnet.nets.<k>.").
	Dump []string
	// KeepStepLatents records the latents after every scheduler step.
	KeepStepLatents bool
	// Progress, when set, is called at every stage boundary and after
	// every denoising step (see Event); returning an error stops the run
	// with that error.
	Progress func(Event) error
}

// Activation is one recorded tensor of a dump.
type Activation struct {
	Name  string // "<stage>.step<k>.<module path>"
	Shape []int
	Data  []float32
}

// Result is the outcome of Generate.
type Result struct {
	// Latents are the final latents [N, 4, h, w] (before VAE scaling).
	Latents     []float32
	LatentShape [4]int
	// BaseLatents are the base's output in an ensemble run.
	BaseLatents []float32
	// Images are the decoded (and watermarked) images, NCHW in [-1, 1]
	// (nil with OutputLatents).
	Images     []float32
	ImageShape [4]int
	// StepLatents holds the latents after every step (KeepStepLatents).
	StepLatents [][]float32
	// Dumps holds the recorded activations (Dump).
	Dumps []Activation
	// Timesteps are the timesteps run, per stage in order.
	Timesteps []float64
	// Scheduler is the scheduler class used by the first stage.
	Scheduler string
	// Warnings are Check's warnings for the request.
	Warnings []Warning
	// LoRAs are the LoRAs the run applied: the request's, then those of
	// its prompt tags (Tag set), with their names.
	LoRAs []LoRA
}

// defaults fills diffusers' defaults into zero fields.
func (r *Request) defaults() {
	if r.Steps == 0 {
		r.Steps = 50
	}
	if r.NumImages == 0 {
		r.NumImages = 1
	}
	if r.Weighting == "" {
		r.Weighting = WeightingNone
	}
	if r.RNG == "" {
		r.RNG = "cpu"
	}
	if r.HighNoiseFrac == 0 {
		r.HighNoiseFrac = 0.8
	}
	if r.Strength == 0 {
		r.Strength = 0.3
		switch {
		case r.inpainting():
			r.Strength = DefaultInpaintStrength
		case len(r.ControlNets) > 0:
			r.Strength = 0.8 // StableDiffusionXLControlNetImg2ImgPipeline's
		}
	}
	r.controlDefaults()
}

// inpainting reports a mask in either form.
func (r *Request) inpainting() bool { return r.Mask != nil || r.MaskImage != nil }

// tiling is the request's VAE tiling, nil when off.
func (r *Request) tiling() *vae.Tiling {
	if !r.VAETiling {
		return nil
	}
	return &vae.Tiling{TileSize: r.VAETileSize}
}

// hasImage reports an img2img input in either form.
func (r *Request) hasImage() bool { return r.Image != nil || r.InitImage != nil }

// prompts are the request's text inputs for one stage.
func (r *Request) prompts(cfg bool) Prompts {
	return Prompts{Prompt: r.Prompt, Prompt2: r.Prompt2, Negative: r.NegativePrompt, Negative2: r.NegativePrompt2,
		ClipSkip: r.ClipSkip, NumImages: r.NumImages, Guidance: cfg}
}
