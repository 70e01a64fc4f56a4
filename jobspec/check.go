package jobspec

import (
	crand "crypto/rand"
	"encoding/binary"
	"math"
	"path/filepath"
	"strings"
	"time"

	"github.com/sdxl-go/sdxl/sdxl"
)

// Limits bound what a job may ask for; zero fields are the engine's
// defaults (sdxl.DefaultMaxPixels, DefaultMaxSteps, DefaultMaxImages).
type Limits struct {
	// MaxPixels bounds width × height, of the output and of input images.
	MaxPixels int
	// MaxSteps bounds steps.
	MaxSteps int
	// MaxImages bounds batch_size × n_iter.
	MaxImages int
}

// WithDefaults fills the zero limits.
func (l Limits) WithDefaults() Limits {
	if l.MaxPixels <= 0 {
		l.MaxPixels = sdxl.DefaultMaxPixels
	}
	if l.MaxSteps <= 0 {
		l.MaxSteps = sdxl.DefaultMaxSteps
	}
	if l.MaxImages <= 0 {
		l.MaxImages = sdxl.DefaultMaxImages
	}
	return l
}

// MaxPromptBytes bounds each prompt (far above what any encoder reads).
const MaxPromptBytes = 32 << 10

// Check validates the job's values within l, without any model or image
// decoding: the answer a front end can give before queueing the job.
func (s *Spec) Check(l Limits) error {
	l = l.WithDefaults()
	for _, p := range []struct{ field, v string }{
		{"prompt", s.Prompt}, {"negative_prompt", s.NegativePrompt},
		{"prompt_2", s.Prompt2}, {"negative_prompt_2", s.NegativePrompt2},
	} {
		if len(p.v) > MaxPromptBytes {
			return fieldErr(p.field, "%d bytes is over the limit of %d", len(p.v), MaxPromptBytes)
		}
	}
	if err := s.checkNumbers(l); err != nil {
		return err
	}
	if _, _, _, err := s.schedulerChoice(); err != nil {
		return err
	}
	switch s.PromptWeighting {
	case "", "none", "compel", "a1111":
	default:
		return fieldErr("prompt_weighting", "%s: want none, compel or a1111", quote(s.PromptWeighting))
	}
	switch s.RNG {
	case "", "cpu", "cuda":
	default:
		return fieldErr("rng", "%s: want cpu or cuda", quote(s.RNG))
	}
	if len(s.InitImages) > 1 {
		return fieldErr("init_images", "%d images: this engine takes one input image per job", len(s.InitImages))
	}
	if s.Mask != "" && len(s.InitImages) == 0 {
		return fieldErr("mask", "a mask needs an input image (init_images)")
	}
	return s.checkLoRAs()
}

// checkNumbers checks the numeric fields' ranges.
func (s *Spec) checkNumbers(l Limits) error {
	type rng struct {
		field    string
		v        float64
		lo, hi   float64
		openLow  bool
		optional bool // 0 means "the default"
	}
	for _, r := range []rng{
		{"steps", float64(s.Steps), 1, float64(l.MaxSteps), false, true},
		{"cfg_scale", s.CFGScale, 0, 100, false, false},
		{"batch_size", float64(s.BatchSize), 1, float64(l.MaxImages), false, true},
		{"n_iter", float64(s.NIter), 1, float64(l.MaxImages), false, true},
		{"denoising_strength", s.DenoisingStrength, 0, 1, true, true},
		{"refiner_switch_at", s.RefinerSwitchAt, 0, 1, true, true},
		{"clip_skip", float64(s.ClipSkip), 0, 12, false, true},
		{"guidance_rescale", s.GuidanceRescale, 0, 1, false, false},
		{"width", float64(s.Width), 8, 1 << 16, false, true},
		{"height", float64(s.Height), 8, 1 << 16, false, true},
	} {
		if r.optional && r.v == 0 {
			continue
		}
		if r.v < r.lo || r.v > r.hi || (r.openLow && r.v == r.lo) || math.IsNaN(r.v) {
			low := "from"
			if r.openLow {
				low = "above"
			}
			return fieldErr(r.field, "%s is out of range: want %s %s to %s", fmtNum(r.v), low, fmtNum(r.lo), fmtNum(r.hi))
		}
	}
	if s.Seed < -1 {
		return fieldErr("seed", "%d: want -1 (random) or a seed from 0", s.Seed)
	}
	for _, d := range []struct {
		field string
		v     int
	}{{"width", s.Width}, {"height", s.Height}} {
		if d.v%8 != 0 {
			return fieldErr(d.field, "%d is not a multiple of 8", d.v)
		}
	}
	if px := s.Width * s.Height; px > l.MaxPixels {
		side := int(math.Sqrt(float64(l.MaxPixels))) / 8 * 8
		return fieldErr("width", "%dx%d is %d pixels, over this server's limit of %d (%dx%d fits)", s.Width, s.Height, px, l.MaxPixels, side, side)
	}
	if n := s.Images(); n > l.MaxImages {
		return fieldErr("batch_size", "batch_size × n_iter = %d images, over this server's limit of %d per job", n, l.MaxImages)
	}
	return nil
}

func fmtNum(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return formatInt(int64(v))
	}
	return formatFloat(v)
}

// checkLoRAs checks the LoRA names without looking at any file: a name
// stays inside the LoRA folder and fits in a prompt tag.
func (s *Spec) checkLoRAs() error {
	for i, l := range s.LoRAs {
		field := "loras[" + formatInt(int64(i)) + "]"
		switch {
		case l.Name == "":
			return fieldErr(field+".name", "empty: give a LoRA of the server's list (GET /sdapi/v1/loras)")
		case strings.ContainsAny(l.Name, "<>:\\\x00\n") || !filepath.IsLocal(filepath.FromSlash(l.Name)):
			return fieldErr(field+".name", "%s: a LoRA name is a file name in the server's LoRA folder", quote(l.Name))
		case math.IsNaN(l.Weight) || math.Abs(l.Weight) > 10:
			return fieldErr(field+".weight", "%s is out of range: want -10 to 10", fmtNum(l.Weight))
		}
	}
	return nil
}

// Normalize fills the defaults of zero fields and draws a random seed for
// seed -1, so that the Spec records exactly what runs. It does not check
// (Check does).
func (s *Spec) Normalize() {
	if s.Steps == 0 {
		s.Steps = Native.Steps
	}
	if s.BatchSize == 0 {
		s.BatchSize = 1
	}
	if s.NIter == 0 {
		s.NIter = 1
	}
	if s.SamplerName == "" {
		s.SamplerName = DefaultSampler
	}
	if s.Scheduler == "" {
		s.Scheduler = "Automatic"
	}
	if s.Seed < 0 {
		s.Seed = int64(RandomSeed())
	}
}

// RandomSeed draws a seed short enough to retype (below 10^12), as
// sdxl-run does.
func RandomSeed() uint64 {
	var b [8]byte
	if _, err := crand.Read(b[:]); err != nil {
		return uint64(time.Now().UnixNano()) % 1_000_000_000_000
	}
	return binary.LittleEndian.Uint64(b[:]) % 1_000_000_000_000
}
