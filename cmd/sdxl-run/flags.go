package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/sdxl-go/sdxl/sched"
	"github.com/sdxl-go/sdxl/sdxl"
)

// options are the generate command's flags.
type options struct {
	modelFlags
	prompt, prompt2                string
	negative, negative2            optString
	weighting                      string
	clipSkip                       int
	width, height, steps           int
	guidance, guidanceRescale      float64
	scheduler                      string
	karras                         bool
	seed                           optUint
	rng                            string
	highNoiseFrac, denoisingEnd    float64
	image, mask                    string
	strength                       float64
	vaeTiling                      bool
	vaeTileSize                    int
	aesthetic, negAesthetic        optFloat
	originalSize, targetSize       optSize
	negOriginalSize, negTargetSize optSize
	crop, negCrop                  optPair
	initNoise, saveLatents         string
	out                            string
	overwrite, noWatermark, quiet  bool
	numImages                      int
	dump                           multiString
	dumpTo                         string
	verifyWatermark                string
	control                        controlFlags
	loras                          loraFlags

	// set holds the names of the flags given on the command line.
	set map[string]bool
}

// optString distinguishes an absent flag from an empty value (diffusers'
// None vs "" for negative prompts).
type optString struct {
	v   string
	set bool
}

func (o *optString) String() string     { return o.v }
func (o *optString) Set(s string) error { o.v, o.set = s, true; return nil }
func (o *optString) ptr() *string {
	if !o.set {
		return nil
	}
	v := o.v
	return &v
}

type optUint struct {
	v   uint64
	set bool
}

func (o *optUint) String() string { return strconv.FormatUint(o.v, 10) }
func (o *optUint) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("want a non-negative integer")
	}
	o.v, o.set = v, true
	return nil
}

type optFloat struct {
	v   float64
	set bool
}

func (o *optFloat) String() string { return strconv.FormatFloat(o.v, 'g', -1, 64) }
func (o *optFloat) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("want a number")
	}
	o.v, o.set = v, true
	return nil
}
func (o *optFloat) ptr() *float64 {
	if !o.set {
		return nil
	}
	v := o.v
	return &v
}

// optSize is WIDTHxHEIGHT; diffusers' tuples are (height, width).
type optSize struct {
	w, h int
	set  bool
}

func (o *optSize) String() string {
	if !o.set {
		return ""
	}
	return fmt.Sprintf("%dx%d", o.w, o.h)
}
func (o *optSize) Set(s string) error {
	a, b, ok := strings.Cut(strings.ToLower(s), "x")
	w, err1 := strconv.Atoi(a)
	h, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || w <= 0 || h <= 0 {
		return fmt.Errorf("want WIDTHxHEIGHT, e.g. 1024x1024")
	}
	o.w, o.h, o.set = w, h, true
	return nil
}
func (o *optSize) hw() *[2]int {
	if !o.set {
		return nil
	}
	return &[2]int{o.h, o.w}
}

// optPair is TOP,LEFT (diffusers' crops_coords_top_left).
type optPair struct {
	a, b int
	set  bool
}

func (o *optPair) String() string {
	if !o.set {
		return ""
	}
	return fmt.Sprintf("%d,%d", o.a, o.b)
}
func (o *optPair) Set(s string) error {
	x, y, ok := strings.Cut(s, ",")
	a, err1 := strconv.Atoi(strings.TrimSpace(x))
	b, err2 := strconv.Atoi(strings.TrimSpace(y))
	if !ok || err1 != nil || err2 != nil || a < 0 || b < 0 {
		return fmt.Errorf("want TOP,LEFT, e.g. 0,0")
	}
	o.a, o.b, o.set = a, b, true
	return nil
}

type multiString []string

func (m *multiString) String() string { return strings.Join(*m, ",") }
func (m *multiString) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*m = append(*m, p)
		}
	}
	return nil
}

func newFlagSet(o *options, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sdxl-run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.modelFlags.register(fs)
	fs.StringVar(&o.prompt, "prompt", "", "the prompt")
	fs.StringVar(&o.prompt2, "prompt-2", "", "prompt for the second text encoder (default: --prompt)")
	fs.Var(&o.negative, "negative-prompt", "negative prompt; absent is diffusers' None (zeros for the base), \"\" encodes the empty string")
	fs.Var(&o.negative2, "negative-prompt-2", "negative prompt for the second text encoder")
	fs.StringVar(&o.weighting, "prompt-weighting", "none", "prompt syntax: none (diffusers, truncates at 77 tokens), compel (Compel weights, long prompts) or a1111")
	fs.IntVar(&o.clipSkip, "clip-skip", 0, "layers to skip at the end of the text encoders (diffusers' clip_skip)")
	fs.IntVar(&o.width, "width", 0, "image width, a multiple of 8 (default: the model's, 1024 for SDXL)")
	fs.IntVar(&o.height, "height", 0, "image height, a multiple of 8 (default: the model's)")
	fs.IntVar(&o.steps, "steps", 50, "denoising steps")
	fs.Float64Var(&o.guidance, "guidance", 5.0, "classifier-free guidance scale (1 turns it off)")
	fs.Float64Var(&o.guidanceRescale, "guidance-rescale", 0, "guidance_rescale in [0, 1]")
	fs.StringVar(&o.scheduler, "scheduler", "euler", "scheduler: "+strings.Join(cliSchedulers(), ", ")+", or a diffusers class name")
	fs.BoolVar(&o.karras, "karras", false, "use Karras sigmas")
	fs.Var(&o.seed, "seed", "random seed (default: a random one, printed)")
	fs.StringVar(&o.rng, "rng", "cpu", "noise generator: cpu (torch.Generator(\"cpu\")) or cuda (torch.Generator(\"cuda\"))")
	fs.Float64Var(&o.highNoiseFrac, "high-noise-frac", 0.8, "with --model and --refiner: fraction of the steps the base runs (denoising_end/denoising_start)")
	fs.Float64Var(&o.denoisingEnd, "denoising-end", 0, "one-model runs: stop at this fraction of the denoising (diffusers' denoising_end); the partly denoised image is decoded as diffusers does, --save-latents keeps the latents")
	fs.StringVar(&o.image, "image", "", "input image for img2img (PNG or JPEG)")
	fs.Float64Var(&o.strength, "strength", 0.3, "img2img strength in (0, 1] (with --mask: 0.9999, diffusers' inpainting default; with --controlnet: 0.8, diffusers' ControlNet img2img default)")
	fs.StringVar(&o.mask, "mask", "", "inpainting mask for --image (PNG or JPEG, white = repaint); the image and mask are resized to --width x --height (default: the model's size, as diffusers)")
	fs.BoolVar(&o.vaeTiling, "vae-tiling", false, "decode (and encode --image) in overlapping tiles, diffusers' enable_tiling(): bounded memory for large images")
	fs.IntVar(&o.vaeTileSize, "vae-tile-size", 0, "tile edge in pixels for --vae-tiling, a multiple of 8 (default: the VAE's sample_size, 1024 for SDXL)")
	fs.Var(&o.aesthetic, "aesthetic-score", "refiner aesthetic score (default 6.0)")
	fs.Var(&o.negAesthetic, "negative-aesthetic-score", "refiner negative aesthetic score (default 2.5)")
	fs.Var(&o.originalSize, "original-size", "micro-conditioning original size WIDTHxHEIGHT (default: the output size)")
	fs.Var(&o.targetSize, "target-size", "micro-conditioning target size WIDTHxHEIGHT (default: the output size)")
	fs.Var(&o.negOriginalSize, "negative-original-size", "negative micro-conditioning original size WIDTHxHEIGHT (text to image: used only with --negative-target-size, as in diffusers)")
	fs.Var(&o.negTargetSize, "negative-target-size", "negative micro-conditioning target size WIDTHxHEIGHT (text to image: used only with --negative-original-size)")
	fs.Var(&o.crop, "crop", "micro-conditioning crop top-left TOP,LEFT (default 0,0)")
	fs.Var(&o.negCrop, "negative-crop", "negative micro-conditioning crop top-left TOP,LEFT")
	fs.StringVar(&o.initNoise, "init-noise", "", "safetensors file whose tensor \"latents\" [N, 4, H/8, W/8] replaces the initial noise (text to image)")
	fs.StringVar(&o.saveLatents, "save-latents", "", "write the final latents to this safetensors file (tensor \"latents\")")
	fs.StringVar(&o.out, "out", "", "output PNG (default: sdxl-<seed>.png); with --num-images N, -1, -2, ... are appended")
	fs.BoolVar(&o.overwrite, "overwrite", false, "replace existing output files")
	fs.BoolVar(&o.noWatermark, "no-watermark", false, "do not apply SDXL's invisible watermark")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress output")
	fs.IntVar(&o.numImages, "num-images", 1, "images per prompt")
	fs.Var(&o.dump, "dump", "record UNet activations of modules matching these patterns (e.g. 'down_blocks.1.**.attn2'; repeatable)")
	fs.StringVar(&o.dumpTo, "dump-to", "", "safetensors file for --dump activations and per-step latents")
	o.control.register(fs)
	fs.Var(&o.loras, "lora", "LoRA .safetensors file, PATH or PATH:SCALE (default scale 1; only a trailing :number is a scale); repeatable, their effects add up")
	fs.StringVar(&o.verifyWatermark, "verify-watermark", "", "decode the invisible watermark of a PNG and report it, then exit")
	addFromPNGFlag(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sdxl-run [flags]            generate an image\n       sdxl-run tokenize [--model PATH] TEXT\n       sdxl-run bench --random-weights [--device cuda] [--size 1024] [--steps 30]\n       sdxl-run serve [--listen 127.0.0.1:7860] [--model PATH]\n       sdxl-run batch --in jobs.jsonl --out DIR [--model PATH]\n       sdxl-run worker --nats URL [--model PATH] [--device cuda]\n\nflags:")
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, keeping a mistake to the one line the flag
// package prints (naming the flag, the value and why) plus a pointer to
// --help, instead of the whole flag list; --help prints the list.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	usage := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = usage
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		usage()
		return &exitError{code: 0}
	default:
		return &exitError{code: 2}
	}
}

// cliSchedulers are the short names (sched.Names minus the class names).
func cliSchedulers() []string {
	cls := map[string]bool{}
	for _, c := range sched.ClassNames() {
		cls[c] = true
	}
	var out []string
	for _, n := range sched.Names() {
		if !cls[n] {
			out = append(out, n)
		}
	}
	return out
}

// fieldFlags names the flag of each sdxl.Request field, so that the
// engine's errors and warnings name what the user typed.
var fieldFlags = map[string]string{
	"Prompt": "--prompt", "Prompt2": "--prompt-2", "NegativePrompt": "--negative-prompt",
	"NegativePrompt2": "--negative-prompt-2", "Weighting": "--prompt-weighting", "ClipSkip": "--clip-skip",
	"Width": "--width", "Height": "--height", "Steps": "--steps", "Guidance": "--guidance",
	"GuidanceRescale": "--guidance-rescale", "Scheduler": "--scheduler", "Karras": "--karras", "Seed": "--seed",
	"RNG": "--rng", "NumImages": "--num-images", "InitNoise": "--init-noise", "OriginalSize": "--original-size",
	"TargetSize": "--target-size", "CropsTopLeft": "--crop", "NegativeOriginalSize": "--negative-original-size",
	"NegativeTargetSize": "--negative-target-size", "NegativeCropsTopLeft": "--negative-crop",
	"AestheticScore": "--aesthetic-score", "NegativeAestheticScore": "--negative-aesthetic-score",
	"HighNoiseFrac": "--high-noise-frac", "DenoisingEnd": "--denoising-end", "InitImage": "--image",
	"Image": "--image", "Strength": "--strength", "Watermark": "--no-watermark", "Dump": "--dump",
	"MaskImage": "--mask", "Mask": "--mask", "VAETiling": "--vae-tiling", "VAETileSize": "--vae-tile-size",
	"ControlNets": "--controlnet", "GuessMode": "--guess-mode", "LoRAs": "--lora",
}

// flagOf names a request field's flag.
func flagOf(field string) string {
	if f, ok := fieldFlags[field]; ok {
		return f
	}
	return sdxl.FieldLabel(field)
}

// cliError turns the engine's errors into the CLI's: a *sdxl.FieldError
// becomes a usage error (exit 2) naming the flag.
func cliError(err error) error {
	var fe *sdxl.FieldError
	if errors.As(err, &fe) {
		if fe.Value == nil {
			return usageErr("%s: %s", flagOf(fe.Field), fe.Reason)
		}
		if s, ok := fe.Value.(string); ok {
			return usageErr("%s %q: %s", flagOf(fe.Field), s, fe.Reason)
		}
		return usageErr("%s %v: %s", flagOf(fe.Field), fe.Value, fe.Reason)
	}
	var me *sdxl.ModelError
	if errors.As(err, &me) {
		flag := "--model"
		if me.Role == "refiner" {
			flag = "--refiner"
		}
		return usageErr("%s %s %s", flag, me.Path, me.Reason)
	}
	return err
}
