// Package capture records intermediate activations of the SDXL models for
// research and debugging: the outputs (and inputs) of chosen sub-modules,
// named by their module path in diffusers naming, e.g.
// "down_blocks.1.attentions.0.transformer_blocks.0.attn2".
//
// A Recorder implements nn.Recorder: pass it to a model's forward and it
// keeps a float32 host copy of every module output whose path matches one
// of its patterns. Models take a nil recorder on the normal path, which
// costs one nil check per module and nothing else.
//
// Patterns are dot-separated globs over module paths:
//
//	down_blocks.1.attentions.0.transformer_blocks.0.attn2   one module
//	down_blocks.*.resnets.0                                 '*' = one path segment (or part of one)
//	up_blocks.0.**                                          '**' = any number of segments: a whole subtree
//	**.attn2                                                every cross-attention
//	mid_block.attentions.0.input                            a module's first input
//
// Each module also reports its first input as "<path>.input" (the goldens'
// naming); a pattern only matches such a name when it says ".input".
// Leaf layers report under their diffusers names too (attn1.to_q,
// ff.net.0, resnets.0.conv1, resnets.0.time_emb_proj, ...), except
// GroupNorms that the models fuse with the following SiLU (resnet norm1 and
// norm2); the UNet's and VAE's conv_norm_out and conv_act are reported
// (computed unfused while recording).
package capture

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/tensor"
)

// Activation is one recorded tensor.
type Activation struct {
	Path  string
	Shape []int
	Data  []float32
	// Count is how many times the module reported; Data is the last
	// report unless the Recorder keeps the first.
	Count int
}

// Recorder keeps host copies of matching module outputs. It is safe for
// concurrent use.
type Recorder struct {
	patterns [][]string
	// KeepFirst keeps the first report of a path and ignores later ones
	// (e.g. only the first denoising step); by default the last one wins.
	KeepFirst bool

	mu    sync.Mutex
	acts  map[string]*Activation
	order []string
}

// New returns a recorder for the given patterns. It fails on an empty
// pattern or an empty path segment ("a..b").
func New(patterns ...string) (*Recorder, error) {
	r := &Recorder{acts: map[string]*Activation{}}
	for _, p := range patterns {
		if p == "" {
			return nil, fmt.Errorf("capture: empty pattern")
		}
		segs := strings.Split(p, ".")
		for _, s := range segs {
			if s == "" {
				return nil, fmt.Errorf("capture: pattern %q has an empty path segment", p)
			}
		}
		r.patterns = append(r.patterns, segs)
	}
	return r, nil
}

// MustNew is New for fixed patterns in code; it panics on a bad pattern.
func MustNew(patterns ...string) *Recorder {
	r, err := New(patterns...)
	if err != nil {
		panic(err)
	}
	return r
}

// Match reports whether path matches one of the recorder's patterns.
func (r *Recorder) Match(path string) bool {
	segs := strings.Split(path, ".")
	input := segs[len(segs)-1] == "input"
	for _, p := range r.patterns {
		if input && p[len(p)-1] != "input" {
			continue // inputs only when asked for by name
		}
		if matchSegs(p, segs) {
			return true
		}
	}
	return false
}

// Record implements nn.Recorder: it copies t to the host when path
// matches. A nil *Recorder records nothing (a typed nil passed as an
// nn.Recorder is not a nil interface, so it must be safe).
func (r *Recorder) Record(path string, t *tensor.Tensor) {
	if r == nil || !r.Match(path) {
		return
	}
	r.mu.Lock()
	a, seen := r.acts[path]
	if seen && r.KeepFirst {
		a.Count++
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	data := t.Backend().ToFloat32(t) // outside the lock: may wait on a device
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, seen = r.acts[path]; !seen {
		a = &Activation{Path: path}
		r.acts[path] = a
		r.order = append(r.order, path)
	}
	a.Count++
	if r.KeepFirst && a.Data != nil {
		return // another goroutine recorded it first
	}
	a.Shape = append([]int(nil), t.Shape()...)
	a.Data = data
}

// Get returns the activation recorded for path.
func (r *Recorder) Get(path string) (*Activation, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.acts[path]
	return a, ok
}

// Paths lists the recorded paths in the order they were first recorded.
func (r *Recorder) Paths() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.order...)
}

// Reset drops every recording (patterns stay).
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.acts = map[string]*Activation{}
	r.order = nil
}

// WriteSafetensors saves every recording as a float32 tensor named
// prefix+path (e.g. prefix "act." gives the goldens' naming).
func (r *Recorder) WriteSafetensors(file, prefix string, metadata map[string]string) error {
	r.mu.Lock()
	paths := append([]string(nil), r.order...)
	sort.Strings(paths)
	ts := make([]safetensors.Tensor, 0, len(paths))
	for _, p := range paths {
		a := r.acts[p]
		ts = append(ts, safetensors.Tensor{Name: prefix + p, Shape: a.Shape, Data: a.Data})
	}
	r.mu.Unlock()
	if err := safetensors.WriteFile(file, ts, metadata); err != nil {
		return fmt.Errorf("capture: writing %s: %w", file, err)
	}
	return nil
}

// matchSegs matches pattern segments against path segments; "**" matches
// zero or more whole segments, other segments are globs where '*' matches
// any run of characters and '?' one character.
func matchSegs(p, s []string) bool {
	for len(p) > 0 {
		if p[0] == "**" {
			p = p[1:]
			if len(p) == 0 {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if matchSegs(p, s[i:]) {
					return true
				}
			}
			return false
		}
		if len(s) == 0 || !matchGlob(p[0], s[0]) {
			return false
		}
		p, s = p[1:], s[1:]
	}
	return len(s) == 0
}

// matchGlob matches one segment: '*' any run, '?' one byte, others
// literally.
func matchGlob(p, s string) bool {
	star, match := -1, 0
	i, j := 0, 0
	for j < len(s) {
		switch {
		case i < len(p) && (p[i] == '?' || p[i] == s[j]):
			i++
			j++
		case i < len(p) && p[i] == '*':
			star, match = i, j
			i++
		case star >= 0:
			i = star + 1
			match++
			j = match
		default:
			return false
		}
	}
	for i < len(p) && p[i] == '*' {
		i++
	}
	return i == len(p)
}
