package sdxl

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/sdxl-go/sdxl/sdxl/lora"
)

// LoRA is one LoRA of a Request (package lora reads every common SDXL
// layout). Its change is merged into the model's weights before the run,
// as diffusers' fuse_lora does (equal to its unfused LoRA layers within
// float32 rounding), and taken out again exactly when a later request
// does not ask for it: switching LoRAs never reloads a model.
//
// The base gets a LoRA's UNet and text-encoder layers; in a run with both
// base and refiner the refiner's text_encoder_2 gets its text_encoder_2
// layers too (the refiner's UNet is another architecture); a refiner
// running alone gets the whole LoRA, which must then be made for it.
type LoRA struct {
	// File is the loaded LoRA (lora.Load). Prompt tags load theirs from
	// Options.LoRADir.
	File *lora.File
	// Scale is the strength on the UNet and, unless TextScale is set, on
	// the text encoders: diffusers' lora_scale (cross_attention_kwargs
	// scale). The zero value is strength 0, no effect (a warning says so):
	// give 1 for the LoRA as trained.
	Scale float64
	// TextScale, when set, is the strength on the text encoders
	// (AUTOMATIC1111's te=).
	TextScale *float64
	// Name is the LoRA's name in AUTOMATIC1111's terms (the tag's NAME, or
	// the file's base name when empty).
	Name string
	// Tag is the prompt tag the LoRA came from ("" for one given in the
	// Request); the engine fills it in Result.LoRAs.
	Tag string
}

// name returns the LoRA's A1111 name.
func (l LoRA) name() string {
	if l.Name != "" || l.File == nil {
		return l.Name
	}
	return l.File.Name()
}

// use is the LoRA for one model: all its components, or some.
func (l LoRA) use(cs lora.ComponentSet) lora.Use {
	u := lora.Use{File: l.File, UNetScale: l.Scale, TextScale: l.Scale, Components: cs}
	if l.TextScale != nil {
		u.TextScale = *l.TextScale
	}
	return u
}

// checkLoRAValues checks the LoRAs' strengths (CheckRequest: the files
// may not be loaded yet).
func checkLoRAValues(r *Request) error {
	for i, l := range r.LoRAs {
		if !finite(l.Scale) || (l.TextScale != nil && !finite(*l.TextScale)) {
			return fieldErr("LoRAs", nil, "LoRA %d (%s): the strength must be a finite number", i+1, l.name())
		}
	}
	return nil
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// planLoRATags takes AUTOMATIC1111's extra-network tags out of the prompts
// when the pipeline has a LoRA folder: <lora:NAME:W> (and lyco) loads
// LoRADir/NAME.safetensors into the request, whatever the prompt
// weighting; tags of other networks are removed and ignored, as
// AUTOMATIC1111 does with networks it does not know. Without a folder the
// prompts are left alone. Only the prompts are read, not the negative
// prompts (AUTOMATIC1111's parse_prompts).
func (p *Pipeline) planLoRATags(pl *plan) error {
	r := &pl.req
	r.LoRAs = slices.Clone(r.LoRAs) // the plan fills names and appends: not in the caller's array
	for _, t := range []struct {
		field string
		s     *string
	}{{"Prompt", &r.Prompt}, {"Prompt2", &r.Prompt2}} {
		clean, tags := lora.ParseTags(*t.s)
		if len(tags) == 0 {
			continue
		}
		if p.LoRADir == "" {
			if hasLoRATag(tags) {
				pl.warnings = append(pl.warnings, Warning{Field: t.field, Message: "the prompt's <lora:...> tags are left in the text: loading them needs a LoRA folder (--lora-dir)"})
			}
			continue
		}
		*t.s = clean
		for _, tag := range tags {
			if !tag.IsLoRA() {
				pl.warnings = append(pl.warnings, Warning{Field: t.field, Message: fmt.Sprintf("%s removed from the prompt and ignored: only LoRA tags are supported", tag.Text)})
				continue
			}
			tl, err := tag.LoRA()
			if err != nil {
				return fieldErr(t.field, nil, "%v", err)
			}
			f, err := p.loraFiles().open(p.LoRADir, tl.Name)
			if err != nil {
				return fieldErr(t.field, nil, "%s: %v", tag.Text, err)
			}
			te := tl.TextScale
			r.LoRAs = append(r.LoRAs, LoRA{File: f, Scale: tl.UNetScale, TextScale: &te, Name: tl.Name, Tag: tag.Text})
		}
	}
	return nil
}

func hasLoRATag(tags []lora.Tag) bool {
	for _, t := range tags {
		if t.IsLoRA() {
			return true
		}
	}
	return false
}

// planLoRAs maps every LoRA onto the models of the run and checks every
// key and shape, before any work; pl.loras gets each model's LoRA set.
func (p *Pipeline) planLoRAs(pl *plan) error {
	r := &pl.req
	for i, l := range r.LoRAs {
		if l.File == nil {
			return fieldErr("LoRAs", nil, "LoRA %d (%s): no file loaded", i+1, l.name())
		}
		if l.Name == "" {
			r.LoRAs[i].Name = l.File.Name()
		}
		for _, w := range l.File.Warnings {
			pl.warnings = append(pl.warnings, Warning{Field: "LoRAs", Message: w})
		}
		if l.Scale == 0 && (l.TextScale == nil || *l.TextScale == 0) {
			pl.warnings = append(pl.warnings, Warning{Field: "LoRAs", Message: fmt.Sprintf("LoRA %s has strength 0: it has no effect", l.name())})
		}
	}
	if len(r.LoRAs) == 0 {
		return nil
	}
	pl.loras = map[*Model][]lora.Use{}
	hasBase := false
	for _, st := range pl.stages {
		hasBase = hasBase || st.model == p.Base
	}
	for _, st := range pl.stages {
		m := st.model
		cs := lora.ComponentSet(0)
		if m == p.Refiner && hasBase {
			cs = lora.Components(lora.TextEncoder2)
		}
		var uses []lora.Use
		for _, l := range r.LoRAs {
			uses = append(uses, l.use(cs))
		}
		ap, err := m.loraApplier()
		if err != nil {
			return err
		}
		n, err := ap.MergedBytes(uses)
		if err != nil {
			return fieldErr("LoRAs", nil, "%s model %s: %v", st.name, m.Path, err)
		}
		pl.loras[m], pl.loraBytes = uses, pl.loraBytes+n
	}
	return nil
}

// applyLoRAs merges each model's LoRAs of the plan and takes out those of
// earlier runs (the same set again costs nothing).
func (p *Pipeline) applyLoRAs(ctx context.Context, pl *plan) error {
	for _, m := range []*Model{p.Base, p.Refiner} {
		if m == nil {
			continue
		}
		uses := pl.loras[m]
		if uses == nil && !m.hasLoRAs() {
			continue
		}
		ap, err := m.loraApplier()
		if err != nil {
			return err
		}
		if err := ap.Set(ctx, uses); err != nil {
			if cerr := canceled(ctx); cerr != nil {
				return cerr
			}
			return err
		}
	}
	return nil
}

// modelLoRAs is a model's LoRA state: one Applier, made on first use, that
// keeps the original tensors of the weights it changed. It lives with the
// model because the weights do: every pipeline running the model sees (and
// switches) the same merged set.
type modelLoRAs struct {
	once sync.Once
	ap   *lora.Applier
	err  error
}

// loraApplier returns the model's Applier, made on first use.
func (m *Model) loraApplier() (*lora.Applier, error) {
	m.loras.once.Do(func() {
		m.loras.ap, m.loras.err = lora.NewApplier(lora.Target{UNet: m.UNet, TextEncoder: m.Text.TextEncoder, TextEncoder2: m.Text.TextEncoder2})
	})
	return m.loras.ap, m.loras.err
}

// hasLoRAs reports whether LoRAs are merged into the model.
func (m *Model) hasLoRAs() bool {
	ap, err := m.loraApplier()
	return err == nil && ap.Touched() > 0
}

// clearLoRAs restores the model's original weights.
func (m *Model) clearLoRAs() {
	if ap, err := m.loraApplier(); err == nil {
		ap.Clear()
	}
}

// loraFileCache keeps the LoRA files prompt tags loaded, so that Check and
// Generate (and the next requests) read a file once while it is unchanged
// on disk. It holds at most maxCachedLoRAs files, dropping the least
// recently used.
type loraFileCache struct {
	mu    sync.Mutex
	files map[string]*cachedLoRA
	clock int
}

type cachedLoRA struct {
	f    *lora.File
	size int64
	mod  int64
	used int
}

const maxCachedLoRAs = 8

// loraFiles returns the pipeline's tag cache (made on first use: an Engine
// makes it in New, before any concurrent call).
func (p *Pipeline) loraFiles() *loraFileCache {
	if p.loraCache == nil {
		p.loraCache = &loraFileCache{files: map[string]*cachedLoRA{}}
	}
	return p.loraCache
}

// open loads dir/name.safetensors (lora.OpenInDir) or returns the cached
// file when its size and modification time are unchanged.
func (c *loraFileCache) open(dir, name string) (*lora.File, error) {
	path := filepath.Join(dir, name)
	if !strings.HasSuffix(strings.ToLower(path), ".safetensors") {
		path += ".safetensors"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clock++
	st, statErr := os.Stat(path)
	if e, ok := c.files[path]; ok && statErr == nil && e.size == st.Size() && e.mod == st.ModTime().UnixNano() {
		e.used = c.clock
		return e.f, nil
	}
	f, err := lora.OpenInDir(dir, name)
	if err != nil {
		return nil, err
	}
	if statErr == nil {
		c.files[path] = &cachedLoRA{f: f, size: st.Size(), mod: st.ModTime().UnixNano(), used: c.clock}
		c.evict()
	}
	return f, nil
}

// evict drops the least recently used files beyond maxCachedLoRAs.
func (c *loraFileCache) evict() {
	for len(c.files) > maxCachedLoRAs {
		oldest := ""
		for k, e := range c.files {
			if oldest == "" || e.used < c.files[oldest].used {
				oldest = k
			}
		}
		delete(c.files, oldest)
	}
}
