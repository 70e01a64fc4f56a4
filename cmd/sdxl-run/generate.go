package main

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/sched"
	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/bundled"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/tensor"
)

// options are the generate command's flags.
type options struct {
	model, config, refiner, variant string
	prompt, prompt2                 string
	negative, negative2             optString
	weighting                       string
	clipSkip                        int
	width, height, steps            int
	guidance, guidanceRescale       float64
	scheduler                       string
	karras                          bool
	seed                            optUint
	rng                             string
	highNoiseFrac, denoisingEnd     float64
	image                           string
	strength                        float64
	aesthetic, negAesthetic         optFloat
	originalSize, targetSize        optSize
	negOriginalSize, negTargetSize  optSize
	crop, negCrop                   optPair
	initNoise, saveLatents          string
	out                             string
	overwrite, noWatermark, quiet   bool
	offload                         bool
	device, dtype                   string
	numImages                       int
	dump                            multiString
	dumpTo                          string
	verifyWatermark                 string

	// initShape is the --init-noise tensor's shape, checked against the
	// latents once the model (and so the latent size) is known.
	initShape []int
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
	fs.StringVar(&o.model, "model", "", "diffusers folder or single .safetensors checkpoint (default: the bundled small random-weight test model)")
	fs.StringVar(&o.config, "config", "", "diffusers folder whose configs and tokenizers describe a single-file --model (default: the real SDXL 1.0 configs)")
	fs.StringVar(&o.refiner, "refiner", "", "refiner model (folder or single file): with --model, an ensemble of experts; alone, refines --image")
	fs.StringVar(&o.variant, "variant", "", "weight-file variant of diffusers folders, e.g. fp16")
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
	fs.Float64Var(&o.strength, "strength", 0.3, "img2img strength in (0, 1]")
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
	fs.StringVar(&o.device, "device", "cpu", "compute device: cpu or cuda")
	fs.StringVar(&o.dtype, "dtype", "", "UNet and text-encoder precision: f32 or f16 (default: f32 on cpu, f16 on cuda)")
	fs.IntVar(&o.numImages, "num-images", 1, "images per prompt")
	fs.BoolVar(&o.offload, "offload", false, "keep the models in host memory and put only the running one on the GPU (for small GPUs; slower)")
	fs.Var(&o.dump, "dump", "record UNet activations of modules matching these patterns (e.g. 'down_blocks.1.**.attn2'; repeatable)")
	fs.StringVar(&o.dumpTo, "dump-to", "", "safetensors file for --dump activations and per-step latents")
	fs.StringVar(&o.verifyWatermark, "verify-watermark", "", "decode the invisible watermark of a PNG and report it, then exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sdxl-run [flags]            generate an image\n       sdxl-run tokenize [--model PATH] TEXT\n       sdxl-run bench --random-weights [--device cuda] [--size 1024] [--steps 30]\n\nflags:")
		fs.PrintDefaults()
	}
	return fs
}

func usageErr(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

// check validates flag values before anything is loaded, so a mistake costs
// no loading time.
func (o *options) check(set map[string]bool) error {
	if o.width%8 != 0 || o.width < 0 {
		return usageErr("--width %d: must be a positive multiple of 8", o.width)
	}
	if o.height%8 != 0 || o.height < 0 {
		return usageErr("--height %d: must be a positive multiple of 8", o.height)
	}
	if o.steps < 1 {
		return usageErr("--steps %d: must be at least 1", o.steps)
	}
	if o.numImages < 1 {
		return usageErr("--num-images %d: must be at least 1", o.numImages)
	}
	if !(o.strength > 0 && o.strength <= 1) {
		return usageErr("--strength %g: must be in (0, 1]", o.strength)
	}
	if !(o.highNoiseFrac > 0 && o.highNoiseFrac < 1) {
		return usageErr("--high-noise-frac %g: must be in (0, 1)", o.highNoiseFrac)
	}
	if o.denoisingEnd != 0 && !(o.denoisingEnd > 0 && o.denoisingEnd < 1) {
		return usageErr("--denoising-end %g: must be in (0, 1)", o.denoisingEnd)
	}
	if math.IsNaN(o.guidance) || math.IsInf(o.guidance, 0) {
		return usageErr("--guidance %g: must be a finite number (1 or less turns guidance off)", o.guidance)
	}
	if !(o.guidanceRescale >= 0 && o.guidanceRescale <= 1) {
		return usageErr("--guidance-rescale %g: must be in [0, 1]", o.guidanceRescale)
	}
	if o.clipSkip < 0 {
		return usageErr("--clip-skip %d: must be >= 0", o.clipSkip)
	}
	if !validScheduler(o.scheduler) {
		return usageErr("--scheduler %q: unknown; choose one of %s (or a diffusers class name: %s)",
			o.scheduler, strings.Join(cliSchedulers(), ", "), strings.Join(sched.ClassNames(), ", "))
	}
	switch o.weighting {
	case "none", "compel", "a1111":
	default:
		return usageErr("--prompt-weighting %q: want none, compel or a1111", o.weighting)
	}
	switch o.rng {
	case "cpu", "cuda":
	default:
		return usageErr("--rng %q: want cpu or cuda", o.rng)
	}
	switch o.device {
	case "cpu", "cuda":
	default:
		return usageErr("--device %q: want cpu or cuda", o.device)
	}
	if o.dtype != "" {
		if _, err := tensor.ParseDType(o.dtype); err != nil || o.dtype == "bf16" {
			return usageErr("--dtype %q: want f32 or f16", o.dtype)
		}
	}
	if len(o.dump) > 0 && o.dumpTo == "" {
		return usageErr("--dump needs --dump-to FILE.safetensors")
	}
	if o.dumpTo != "" && len(o.dump) == 0 {
		return usageErr("--dump-to needs at least one --dump PATTERN")
	}
	if o.model == "" && o.refiner != "" && o.image == "" {
		return usageErr("--refiner without --model refines an existing image: give --image (text-to-image needs a base model)")
	}
	ensemble := o.model != "" && o.refiner != ""
	if o.denoisingEnd != 0 && ensemble {
		return usageErr("--denoising-end %g is for a one-model run; with --model and --refiner the split is --high-noise-frac", o.denoisingEnd)
	}
	if set["high-noise-frac"] && !ensemble {
		return usageErr("--high-noise-frac %g splits the steps between --model and --refiner: give both", o.highNoiseFrac)
	}
	if set["strength"] && o.image == "" {
		return usageErr("--strength needs --image")
	}
	if o.initNoise != "" && o.image != "" {
		return usageErr("--init-noise replaces the initial noise of text to image; with --image (img2img) there is none")
	}
	if o.weighting != "none" {
		// diffusers applies these only in its own prompt encoding, which
		// weighted prompts bypass (they arrive as prompt_embeds).
		for _, f := range []string{"clip-skip", "prompt-2", "negative-prompt-2"} {
			if set[f] {
				return usageErr("--%s works only with --prompt-weighting none (not %s)", f, o.weighting)
			}
		}
	}
	if o.weighting == "a1111" && o.refiner != "" {
		return usageErr("--prompt-weighting a1111 needs the base's two text encoders and --refiner has one: use none or compel")
	}
	return nil
}

func validScheduler(name string) bool {
	for _, n := range sched.Names() {
		if n == name {
			return true
		}
	}
	return false
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

// outputPaths returns the PNG paths of a run.
func (o *options) outputPaths(seed uint64) []string {
	out := o.out
	if out == "" {
		out = fmt.Sprintf("sdxl-%d.png", seed)
	}
	if o.numImages == 1 {
		return []string{out}
	}
	ext := filepath.Ext(out)
	stem := strings.TrimSuffix(out, ext)
	paths := make([]string, o.numImages)
	for i := range paths {
		paths[i] = fmt.Sprintf("%s-%d%s", stem, i+1, ext)
	}
	return paths
}

// checkWritable fails early when an output exists (without --overwrite)
// or its folder cannot take a file, before minutes of computing.
func checkWritable(path string, overwrite bool) error {
	if !overwrite {
		if _, err := os.Lstat(path); err == nil {
			return usageErr("%s already exists (use --overwrite to replace it)", path)
		}
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".sdxl-run-check-*")
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("cannot write %s: %v", path, err)}
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

func randomSeed() uint64 {
	var b [8]byte
	if _, err := crand.Read(b[:]); err != nil {
		return uint64(time.Now().UnixNano())
	}
	// Keep seeds short enough to retype and within int64 for other tools.
	return binary.LittleEndian.Uint64(b[:]) % 1_000_000_000_000
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

func runGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	fs := newFlagSet(&o, stderr)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q (flags start with --; quote the prompt: --prompt \"...\")", fs.Arg(0))
	}
	if o.verifyWatermark != "" {
		r, err := imageio.VerifyWatermark(o.verifyWatermark)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, r.String())
		return nil
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := o.check(set); err != nil {
		return err
	}
	seed := o.seed.v
	if !o.seed.set {
		seed = randomSeed()
		fmt.Fprintf(stderr, "seed: %d\n", seed)
	}
	paths := o.outputPaths(seed)
	for _, p := range paths {
		if err := checkWritable(p, o.overwrite); err != nil {
			return err
		}
	}
	for _, p := range []string{o.saveLatents, o.dumpTo} {
		if p != "" {
			if err := checkWritable(p, o.overwrite); err != nil {
				return err
			}
		}
	}

	dev, err := openDevice(o.device, o.dtype)
	if err != nil {
		return err
	}
	defer dev.close()
	prog := newProgress(stderr, o.quiet)

	modelPath := o.model
	if modelPath == "" && o.refiner == "" {
		if modelPath, err = bundled.Dir(); err != nil {
			return err
		}
		if !o.quiet {
			fmt.Fprintln(stderr, "note: using the bundled small random-weight test model (its images are noise); give --model with real SDXL weights for real pictures (see README)")
		}
	}
	loadOpt := sdxl.LoadOptions{DType: dev.dtype, Variant: o.variant, ConfigDir: o.config, Progress: prog.load}
	p := &sdxl.Pipeline{Backend: dev.b, DType: dev.dtype}
	if dev.cuda != nil {
		// --rng cuda on a GPU: torch's CUDA stream drawn on the device,
		// bit-exact with diffusers' torch.Generator("cuda").
		p.CUDAGenerator = func(seed uint64) sched.Generator { return dev.cuda.NewTorchGenerator(seed) }
	}
	loadOn := dev.b
	if o.offload {
		// Weights stay on the host (the CPU backend's memory) and visit the
		// device one component at a time.
		loadOn = cpu.New()
		p.Offload = loadOn
	}
	if modelPath != "" {
		if p.Base, err = sdxl.LoadModel(loadOn, modelPath, loadOpt); err != nil {
			return err
		}
		if p.Base.IsRefiner() && o.image == "" {
			return usageErr("--model %s is a refiner (no first text encoder): text-to-image needs a base; use --refiner with --image", modelPath)
		}
	}
	if o.refiner != "" {
		ropt := loadOpt
		ropt.ConfigDir = ""
		if p.Refiner, err = sdxl.LoadModel(loadOn, o.refiner, ropt); err != nil {
			return err
		}
		if !p.Refiner.IsRefiner() {
			return usageErr("--refiner %s has two text encoders: it is a base model, not a refiner", o.refiner)
		}
	}
	if p.Base != nil && p.Base.IsRefiner() {
		if p.Refiner != nil {
			return usageErr("--model %s is a refiner (no first text encoder): with --refiner, --model must be a base", modelPath)
		}
		p.Refiner, p.Base = p.Base, nil
	}
	prog.doneLoading()
	hashes := hashFiles(modelFiles(p))

	req, err := o.request(seed, stderr)
	if err != nil {
		return err
	}
	req.Progress = prog.step
	if err := o.notes(p, &req, stderr); err != nil {
		return err
	}

	start := time.Now()
	res, err := p.Generate(ctx, req)
	prog.finish()
	if err != nil {
		if errors.Is(err, sdxl.ErrCanceled) || ctx.Err() != nil {
			return &exitError{code: 130, err: errors.New("interrupted; no output written")}
		}
		return err
	}
	elapsed := time.Since(start)

	if o.saveLatents != "" {
		s := res.LatentShape
		if err := safetensors.WriteFileExclusive(o.saveLatents, []safetensors.Tensor{{Name: "latents", Shape: s[:], Data: res.Latents}},
			map[string]string{"seed": strconv.FormatUint(seed, 10), "prompt": o.prompt}, o.overwrite); err != nil {
			return err
		}
	}
	if o.dumpTo != "" {
		if err := writeDump(o.dumpTo, res, o.overwrite); err != nil {
			return err
		}
	}
	imgs, err := imageio.FromNCHW(res.Images, res.ImageShape[:])
	if err != nil {
		return err
	}
	meta := runMetadata(&o, fs, set, seed, res, hashes.wait(), elapsed, dev)
	for i, img := range imgs {
		chunks, err := meta.chunks(i)
		if err != nil {
			return err
		}
		if err := imageio.WritePNG(paths[i], img, chunks, o.overwrite); err != nil {
			return err
		}
		fmt.Fprintln(stdout, paths[i])
	}
	if !o.quiet {
		fmt.Fprintf(stderr, "done in %.1fs\n", elapsed.Seconds())
	}
	return nil
}

// request builds the library request of the flags (everything but the
// progress callback). Sizes given as WIDTHxHEIGHT become diffusers'
// (height, width) tuples; --crop TOP,LEFT is crops_coords_top_left.
func (o *options) request(seed uint64, stderr io.Writer) (sdxl.Request, error) {
	req := sdxl.Request{
		Prompt: o.prompt, Prompt2: o.prompt2,
		NegativePrompt: o.negative.ptr(), NegativePrompt2: o.negative2.ptr(),
		Weighting: sdxl.Weighting(o.weighting), ClipSkip: o.clipSkip,
		Width: o.width, Height: o.height, Steps: o.steps, Guidance: o.guidance, GuidanceRescale: o.guidanceRescale,
		Scheduler: o.scheduler, Karras: o.karras, Seed: seed, RNG: o.rng, NumImages: o.numImages,
		OriginalSize: o.originalSize.hw(), TargetSize: o.targetSize.hw(),
		NegativeOriginalSize: o.negOriginalSize.hw(), NegativeTargetSize: o.negTargetSize.hw(),
		AestheticScore: o.aesthetic.ptr(), NegativeAestheticScore: o.negAesthetic.ptr(),
		HighNoiseFrac: o.highNoiseFrac, DenoisingEnd: o.denoisingEnd, Strength: o.strength,
		Dump: o.dump, Watermark: !o.noWatermark, KeepStepLatents: o.dumpTo != "",
	}
	if o.crop.set {
		req.CropsTopLeft = [2]int{o.crop.a, o.crop.b}
	}
	if o.negCrop.set {
		req.NegativeCropsTopLeft = [2]int{o.negCrop.a, o.negCrop.b}
	}
	if o.image != "" {
		img, shape, orig, err := imageio.PreprocessFile(o.image)
		if err != nil {
			return req, err
		}
		if orig.X != shape[3] || orig.Y != shape[2] {
			fmt.Fprintf(stderr, "note: %s is %dx%d; resized to %dx%d (multiples of 8) as diffusers does\n", o.image, orig.X, orig.Y, shape[3], shape[2])
		}
		if (o.width != 0 && o.width != shape[3]) || (o.height != 0 && o.height != shape[2]) {
			return req, usageErr("--width/--height %dx%d differ from the --image size %dx%d (img2img keeps the image's size)", o.width, o.height, shape[3], shape[2])
		}
		req.Image, req.ImageShape = img, shape
	}
	if o.initNoise != "" {
		var err error
		if req.InitNoise, o.initShape, err = readLatents(o.initNoise); err != nil {
			return req, err
		}
	}
	return req, nil
}

// notes settles what depends on the loaded models and tells the user about
// flags that diffusers would ignore for them: the watermark (diffusers
// leaves images under 256 pixels wide alone and invisible-watermark fails
// below 256*256 pixels, where we skip it with a note instead), a lone
// --negative-prompt-2 on a force_zeros_for_empty_prompt model, aesthetic
// scores without a model that uses them.
func (o *options) notes(p *sdxl.Pipeline, req *sdxl.Request, stderr io.Writer) error {
	w, h, err := p.ImageSize(*req)
	if err != nil {
		return err
	}
	if req.InitNoise != nil && p.Base != nil {
		f := p.Base.VAE.ScaleFactor()
		want := []int{req.NumImages, p.Base.UNet.InChannels(), h / f, w / f}
		if !slices.Equal(o.initShape, want) {
			return usageErr("--init-noise %s: tensor \"latents\" has shape %v; %d image(s) of %dx%d need %v", o.initNoise, o.initShape, req.NumImages, w, h, want)
		}
	}
	if req.Watermark && w >= 256 && w*h < 256*256 {
		fmt.Fprintf(stderr, "note: no watermark: %dx%d is too small for the invisible watermark (it needs 256x256 pixels)\n", w, h)
		req.Watermark = false
	}
	if req.NegativePrompt == nil && req.NegativePrompt2 != nil && p.Base != nil && p.Base.Text.ForceZerosForEmptyPrompt && req.Guidance > 1 {
		fmt.Fprintln(stderr, "note: --negative-prompt-2 without --negative-prompt is ignored by the base, as in diffusers (no negative prompt means zeros there); add --negative-prompt \"\" to use it")
	}
	if req.AestheticScore != nil || req.NegativeAestheticScore != nil {
		used := false
		for _, m := range []*sdxl.Model{p.Base, p.Refiner} {
			used = used || (m != nil && m.RequiresAestheticsScore)
		}
		if !used {
			fmt.Fprintln(stderr, "note: --aesthetic-score and --negative-aesthetic-score only condition a refiner (requires_aesthetics_score); this run ignores them")
		}
	}
	if req.Weighting == sdxl.WeightingNone {
		// diffusers truncates at 77 positions (BOS + 75 tokens + EOS) and
		// only logs it; say so, since the cut words silently stop mattering.
		for _, m := range []*sdxl.Model{p.Base, p.Refiner} {
			if m == nil || m.Tok2 == nil {
				continue
			}
			for flag, text := range map[string]string{"--prompt": req.Prompt, "--prompt-2": req.Prompt2, "--negative-prompt": o.negative.v, "--negative-prompt-2": o.negative2.v} {
				if n := len(m.Tok2.Encode(text)); n > 75 {
					fmt.Fprintf(stderr, "note: %s is %d tokens; like diffusers only the first 75 are used (--prompt-weighting compel encodes long prompts in 75-token chunks)\n", flag, n)
				}
			}
			break
		}
	}
	return nil
}

func readLatents(path string) ([]float32, []int, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if _, ok := f.Info("latents"); !ok {
		return nil, nil, fmt.Errorf("%s: no tensor \"latents\" (found %s)", path, strings.Join(f.Names(), ", "))
	}
	return f.Float32("latents")
}

func writeDump(path string, res *sdxl.Result, overwrite bool) error {
	var ts []safetensors.Tensor
	for _, a := range res.Dumps {
		ts = append(ts, safetensors.Tensor{Name: a.Name, Shape: a.Shape, Data: a.Data})
	}
	s := res.LatentShape
	for i, l := range res.StepLatents {
		ts = append(ts, safetensors.Tensor{Name: fmt.Sprintf("latents.step%d", i), Shape: s[:], Data: l})
	}
	return safetensors.WriteFileExclusive(path, ts, map[string]string{"format": "sdxl-run dump: <stage>.step<k>.<module path> activations, latents.step<k> after each scheduler step"}, overwrite)
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version
	}
	return "(devel)"
}
