package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/sdxl-go/sdxl/internal/atomicfile"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/sdxl/pngmeta"
)

func usageErr(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

// check validates what only the command line knows (flag combinations that
// are not request fields); the request itself is checked by the engine.
func (o *options) check() error {
	if err := o.modelFlags.check(); err != nil {
		return err
	}
	if len(o.dump) > 0 && o.dumpTo == "" {
		return usageErr("--dump needs --dump-to FILE.safetensors")
	}
	if o.dumpTo != "" && len(o.dump) == 0 {
		return usageErr("--dump-to needs at least one --dump PATTERN")
	}
	// Zero is the library's "use the default"; typed on the command line
	// (whose defaults are explicit) it is a mistake.
	for _, f := range []struct {
		name string
		zero bool
	}{{"steps", o.steps == 0}, {"num-images", o.numImages == 0}, {"strength", o.strength == 0}, {"high-noise-frac", o.highNoiseFrac == 0}} {
		if f.zero {
			return usageErr("--%s 0: must be more than 0", f.name)
		}
	}
	if o.model == "" && o.refiner != "" && o.image == "" {
		return usageErr("--refiner without --model refines an existing image: give --image (text-to-image needs a base model)")
	}
	return o.control.check()
}

// strengthValue is the img2img strength the run uses: the flag's when
// typed, else diffusers' default of the pipeline (0.3, or 0.8 with
// ControlNets).
func (o *options) strengthValue() float64 {
	if !o.set["strength"] && len(o.control.groups) > 0 {
		return 0.8
	}
	return o.strength
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

// outputFlags pairs each output path of a run with the flag that names
// it.
func (g *generation) outputFlags() [][2]string {
	var out [][2]string
	for _, p := range g.paths {
		out = append(out, [2]string{"--out", p})
	}
	for _, f := range [][2]string{{"--save-latents", g.o.saveLatents}, {"--dump-to", g.o.dumpTo}} {
		if f[1] != "" {
			out = append(out, f)
		}
	}
	return out
}

// checkOutputs fails early, before minutes of computing, when two outputs
// share a path, when an output exists (without --overwrite) or is not a
// regular file (a device, a pipe, a folder: never replaced), or when its
// folder cannot take a file.
func (g *generation) checkOutputs() error {
	seen := map[string]string{}
	byFlag := map[string][]string{}
	for _, f := range g.outputFlags() {
		key := filepath.Clean(f[1])
		if abs, err := filepath.Abs(key); err == nil {
			key = abs
		}
		if prev, dup := seen[key]; dup {
			return usageErr("%s %s: the same file as %s %s (each output needs its own path)", f[0], f[1], prev, f[1])
		}
		seen[key] = f[0]
		byFlag[f[0]] = append(byFlag[f[0]], f[1])
	}
	for _, flag := range []string{"--out", "--save-latents", "--dump-to"} {
		if err := atomicfile.CheckTargets(g.o.overwrite, byFlag[flag]...); err != nil {
			return usageErr("%s: %v", flag, err)
		}
	}
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

// generation is one sdxl-run invocation on its way from flags to files.
type generation struct {
	o      options
	fs     *flag.FlagSet
	set    map[string]bool
	seed   uint64
	paths  []string
	stdout io.Writer
	stderr io.Writer
}

func runGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	g := &generation{stdout: stdout, stderr: stderr}
	g.fs = newFlagSet(&g.o, stderr)
	args, err := applyFromPNG(g.fs, args, stderr)
	if err != nil {
		return err
	}
	if err := parseFlags(g.fs, args, stderr); err != nil {
		return err
	}
	if g.fs.NArg() > 0 {
		return usageErr("unexpected argument %q (flags start with --; quote the prompt: --prompt \"...\")", g.fs.Arg(0))
	}
	g.set = map[string]bool{}
	g.fs.Visit(func(f *flag.Flag) { g.set[f.Name] = true })
	g.o.set = g.set
	if g.set["verify-watermark"] {
		if g.o.verifyWatermark == "" {
			return usageErr("--verify-watermark: give the image file to check")
		}
		return verifyWatermark(g.o.verifyWatermark, stdout)
	}
	req, err := g.prepare()
	if err != nil {
		return err
	}
	return g.run(ctx, req)
}

func verifyWatermark(path string, stdout io.Writer) error {
	r, err := imageio.VerifyWatermark(path)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, r.String())
	return nil
}

// prepare checks everything that needs no model: the flags, the request's
// values, the outputs' places, then reads the input files.
func (g *generation) prepare() (sdxl.Request, error) {
	o := &g.o
	if err := o.check(); err != nil {
		return sdxl.Request{}, err
	}
	g.seed = o.seed.v
	req := o.request(g.seed)
	if err := sdxl.CheckRequest(req, o.roles(o.image != "")); err != nil {
		return req, cliError(err)
	}
	if !o.seed.set {
		g.seed = randomSeed()
		req.Seed = g.seed
		fmt.Fprintf(g.stderr, "seed: %d\n", g.seed)
	}
	g.paths = o.outputPaths(g.seed)
	if err := g.checkOutputs(); err != nil {
		return req, err
	}
	return req, o.readInputs(&req)
}

// run loads the models, lets the engine check and run the request, and
// writes the outputs.
func (g *generation) run(ctx context.Context, req sdxl.Request) error {
	o := &g.o
	prog := newProgress(g.stderr, o.quiet)
	notes := g.stderr
	if o.quiet {
		notes = io.Discard
	}
	o.modelFlags.oneShot = true
	eng, dev, err := o.modelFlags.open(ctx, notes, prog, sdxl.Limits{})
	if err != nil {
		return interrupted(ctx, err)
	}
	defer dev.close()
	if err := o.control.loadModels(eng, &req); err != nil {
		return err
	}
	prog.doneLoading()
	hashes := pngmeta.HashFiles(ctx, eng, o.control.files(req))
	warnings, err := eng.Check(req)
	if err != nil {
		return cliError(err)
	}
	for _, w := range warnings {
		fmt.Fprintf(g.stderr, "note: %s\n", w.Message)
	}
	req.Progress = func(e sdxl.Event) error {
		if e.Step == 0 {
			stageHook(ctx, string(e.Stage))
		}
		return prog.step(e)
	}
	start := time.Now()
	res, err := eng.Generate(ctx, req)
	prog.finish()
	if err == nil {
		// A signal that came after the decode still means "stop".
		err = ctx.Err()
	}
	if err != nil {
		return interrupted(ctx, err)
	}
	meta := runMetadata(o, g.fs, g.set, req, res, hashes.Wait(), time.Since(start), dev)
	if err := g.write(ctx, res, meta); err != nil {
		return interrupted(ctx, err)
	}
	return nil
}

// interrupted maps an error of a cancelled run to exit 130, others to the
// CLI's errors.
func interrupted(ctx context.Context, err error) error {
	if errors.Is(err, sdxl.ErrCanceled) || errors.Is(err, context.Canceled) || ctx.Err() != nil {
		return &exitError{code: 130, err: errors.New("interrupted; no output written")}
	}
	return cliError(err)
}

// write stores the run's outputs: the PNGs, and the latents and dumps
// when asked. Each is staged under a temporary name first and all are put
// in place together at the end, so that an error or a signal on the way
// leaves none of them.
func (g *generation) write(ctx context.Context, res *sdxl.Result, meta *metadata) error {
	defer holdWrites(ctx)()
	stageHook(ctx, "write")
	var staged []*atomicfile.Pending
	ok := false
	defer func() {
		if !ok {
			atomicfile.AbortAll(staged...)
		}
	}()
	stage := func(path string, fill func(io.Writer) error) error {
		p, err := atomicfile.Stage(ctx, path, g.o.overwrite, fill)
		if err == nil {
			staged = append(staged, p)
		}
		return err
	}
	if err := g.stageData(res, stage); err != nil {
		return err
	}
	imgs, err := imageio.FromNCHW(res.Images, res.ImageShape[:])
	if err != nil {
		return err
	}
	for i, img := range imgs {
		chunks, err := meta.chunks(i)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := imageio.EncodePNG(&buf, img, chunks); err != nil {
			return fmt.Errorf("%s: %v", g.paths[i], err)
		}
		if err := stage(g.paths[i], func(w io.Writer) error { _, err := w.Write(buf.Bytes()); return err }); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ok = true
	if err := atomicfile.CommitAll(staged...); err != nil {
		return err
	}
	for _, p := range g.paths {
		fmt.Fprintln(g.stdout, p)
	}
	if !g.o.quiet {
		fmt.Fprintf(g.stderr, "done in %.1fs\n", meta.rec.Seconds)
	}
	return nil
}

// stageData stages the latents (--save-latents) and the dump (--dump-to).
func (g *generation) stageData(res *sdxl.Result, stage func(string, func(io.Writer) error) error) error {
	o := &g.o
	if o.saveLatents != "" {
		s := res.LatentShape
		fill, err := safetensors.Encoder([]safetensors.Tensor{{Name: "latents", Shape: s[:], Data: res.Latents}},
			map[string]string{"seed": strconv.FormatUint(g.seed, 10), "prompt": o.prompt})
		if err != nil {
			return fmt.Errorf("%s: %v", o.saveLatents, err)
		}
		if err := stage(o.saveLatents, fill); err != nil {
			return err
		}
	}
	if o.dumpTo != "" {
		fill, err := dumpEncoder(res)
		if err != nil {
			return fmt.Errorf("%s: %v", o.dumpTo, err)
		}
		return stage(o.dumpTo, fill)
	}
	return nil
}

// request builds the library request of the flags, without reading any
// file (readInputs adds those). Sizes given as WIDTHxHEIGHT become
// diffusers' (height, width) tuples; --crop TOP,LEFT is
// crops_coords_top_left.
func (o *options) request(seed uint64) sdxl.Request {
	req := sdxl.Request{
		Prompt: o.prompt, Prompt2: o.prompt2,
		NegativePrompt: o.negative.ptr(), NegativePrompt2: o.negative2.ptr(),
		Weighting: sdxl.Weighting(o.weighting), ClipSkip: o.clipSkip,
		Width: o.width, Height: o.height, Steps: o.steps, Guidance: o.guidance, GuidanceRescale: o.guidanceRescale,
		Scheduler: o.scheduler, Karras: o.karras, Seed: seed, RNG: o.rng, NumImages: o.numImages,
		OriginalSize: o.originalSize.hw(), TargetSize: o.targetSize.hw(),
		NegativeOriginalSize: o.negOriginalSize.hw(), NegativeTargetSize: o.negTargetSize.hw(),
		AestheticScore: o.aesthetic.ptr(), NegativeAestheticScore: o.negAesthetic.ptr(),
		DenoisingEnd: o.denoisingEnd, Dump: o.dump, Watermark: !o.noWatermark, KeepStepLatents: o.dumpTo != "",
		VAETiling: o.vaeTiling, VAETileSize: o.vaeTileSize,
	}
	// Flags whose defaults only mean something in some runs reach the
	// request when the run uses them or the user typed them (then the
	// engine says why they do not apply).
	if (o.model != "" && o.refiner != "" && o.mask == "") || o.set["high-noise-frac"] {
		req.HighNoiseFrac = o.highNoiseFrac
	}
	if (o.image != "" && o.mask == "" && len(o.control.groups) == 0) || o.set["strength"] {
		// With a mask the engine's default is 0.9999, with ControlNets 0.8.
		req.Strength = o.strength
	}
	if o.mask != "" {
		// Stands for the mask until readInputs reads it.
		req.MaskImage = &imageio.RGB{}
	}
	o.control.request(&req)
	o.loras.request(&req)
	if o.crop.set {
		req.CropsTopLeft = [2]int{o.crop.a, o.crop.b}
	}
	if o.negCrop.set {
		req.NegativeCropsTopLeft = [2]int{o.negCrop.a, o.negCrop.b}
	}
	if o.initNoise != "" {
		// Stands for the noise until readInputs reads it, so that the
		// request's checks know there is some.
		req.InitNoise = []float32{}
	}
	return req
}

// readInputs reads the input files the flags name into the request.
// Images are size-checked from their headers against the engine's pixel
// limit before they are decoded; every problem with an input file is a
// usage error naming the flag.
func (o *options) readInputs(req *sdxl.Request) error {
	if o.image != "" {
		img, err := imageio.LoadLimit(o.image, sdxl.DefaultMaxPixels)
		if err != nil {
			return usageErr("--image %v", err)
		}
		req.InitImage = img
	}
	if o.mask != "" {
		m, err := imageio.LoadLimit(o.mask, sdxl.DefaultMaxPixels)
		if err != nil {
			return usageErr("--mask %v", err)
		}
		req.MaskImage = m
	}
	if err := o.control.readImages(req); err != nil {
		return err
	}
	if err := o.loras.readFiles(req); err != nil {
		return err
	}
	req.InitNoise = nil
	if o.initNoise != "" {
		var err error
		if req.InitNoise, req.InitNoiseShape, err = readLatents(o.initNoise); err != nil {
			return usageErr("--init-noise %v", err)
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

// dumpEncoder writes the activations and the latents after every step.
func dumpEncoder(res *sdxl.Result) (func(io.Writer) error, error) {
	var ts []safetensors.Tensor
	for _, a := range res.Dumps {
		ts = append(ts, safetensors.Tensor{Name: a.Name, Shape: a.Shape, Data: a.Data})
	}
	s := res.LatentShape
	for i, l := range res.StepLatents {
		ts = append(ts, safetensors.Tensor{Name: fmt.Sprintf("latents.step%d", i), Shape: s[:], Data: l})
	}
	return safetensors.Encoder(ts, map[string]string{"format": "sdxl-run dump: <stage>.step<k>.<module path> activations, latents.step<k> after each scheduler step"})
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version
	}
	return "(devel)"
}
