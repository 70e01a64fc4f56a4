package lora

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/tensor"
)

// Use is one LoRA at given strengths.
type Use struct {
	File *File
	// UNetScale and TextScale multiply the LoRA's change to the UNet and to
	// the text encoders (AUTOMATIC1111's unet= and te= multipliers);
	// `--lora PATH:S` and diffusers' lora_scale set both to S.
	UNetScale, TextScale float64
	// Components limits the LoRA to some components (zero: all): e.g.
	// only the text_encoder_2 layers of a base LoRA for the refiner.
	Components ComponentSet
}

// ComponentSet is a set of components; the zero value means all.
type ComponentSet uint8

// Components returns the set of cs.
func Components(cs ...Component) ComponentSet {
	var s ComponentSet
	for _, c := range cs {
		s |= 1 << c
	}
	return s
}

// Has reports whether c is in the set (every component is in the zero set).
func (s ComponentSet) Has(c Component) bool { return s == 0 || s&(1<<c) != 0 }

// Scaled is a Use with one strength for every component.
func Scaled(f *File, s float64) Use { return Use{File: f, UNetScale: s, TextScale: s} }

func (u Use) scale(c Component) float64 {
	if c == UNet {
		return u.UNetScale
	}
	return u.TextScale
}

// Applier merges sets of LoRAs into one model's weights and takes them out
// again. It keeps the original tensor of every weight it changed and
// replaces merged weights by new tensors (never writing into a weight's
// storage, which backends may have packed or cached), so restoring is
// exact: after Set(A), Set(B) the model equals a fresh load with B merged,
// and after Clear it equals a fresh load, bit for bit.
//
// The merge runs on each weight's own backend: plain LoRA products as one
// MatMul per weight (all LoRAs touching it at once) and an Add, so on CUDA
// they stay on the device; LoHa, LoKr and Tucker deltas are computed on the
// host in float64 and uploaded. Memory: the originals of the changed
// weights stay alive beside their merged copies.
//
// An Applier is not safe for concurrent use, and the model must not run
// while Set or Clear does.
type Applier struct {
	target Target
	names  *names
	slots  map[string]*slot
	active []Use
	// Progress, when set, is called after each weight Set merges.
	Progress func(done, total int)
}

// slot is a weight the Applier changed.
type slot struct {
	ptr  **tensor.Tensor
	orig *tensor.Tensor
}

// NewApplier returns an Applier for the target model.
func NewApplier(t Target) (*Applier, error) {
	n, err := newNames(t)
	if err != nil {
		return nil, err
	}
	return &Applier{target: t, names: n, slots: map[string]*slot{}}, nil
}

// Active returns the LoRAs currently merged.
func (a *Applier) Active() []Use { return append([]Use(nil), a.active...) }

// Touched is the number of weights currently changed.
func (a *Applier) Touched() int { return len(a.slots) }

// plan is the merge of one weight.
type plan struct {
	w     weight
	parts []part
}

// Set makes the model's weights the originals plus the deltas of uses (none
// restores the model). Every file is mapped onto the model and every shape
// checked before any weight changes; an error names the key and the file.
// If ctx ends while weights are being merged, the model is restored to its
// original weights and the context's error returned.
func (a *Applier) Set(ctx context.Context, uses []Use) error {
	if slices.Equal(uses, a.active) {
		return nil // already merged: switching to the same set is free
	}
	plans, err := a.plan(uses, false)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, p := range plans {
		want[p.w.id()] = true
	}
	for id, s := range a.slots {
		if !want[id] {
			a.restore(id, s)
		}
	}
	a.active = nil
	for i, p := range plans {
		if err := ctx.Err(); err != nil {
			a.Clear()
			return fmt.Errorf("applying LoRAs: %w", err)
		}
		s := a.slots[p.w.id()]
		if s == nil {
			s = &slot{ptr: p.w.param.Ptr, orig: *p.w.param.Ptr}
			a.slots[p.w.id()] = s
		}
		merged, err := merge(s.orig, p.parts)
		if err != nil {
			a.Clear()
			return fmt.Errorf("LoRA merge into %s: %w", p.w.id(), err)
		}
		if cur := *s.ptr; cur != s.orig {
			cur.Free()
		}
		*s.ptr = merged
		if a.Progress != nil {
			a.Progress(i+1, len(plans))
		}
	}
	a.active = append([]Use(nil), uses...)
	return nil
}

// Check maps uses onto the model and checks every shape, as Set does,
// without computing or changing anything. It reads no weight (the shapes
// were noted by NewApplier), so it may run while another goroutine runs
// the model or Set.
func (a *Applier) Check(uses []Use) error {
	_, err := a.plan(uses, true)
	return err
}

// MergedBytes checks uses as Check does and returns the bytes of the
// merged weights Set would create: the memory a LoRA set adds, since the
// originals stay alive.
func (a *Applier) MergedBytes(uses []Use) (int64, error) {
	plans, err := a.plan(uses, true)
	var n int64
	for _, p := range plans {
		n += int64(p.w.shape.Numel() * p.w.dtype.Size())
	}
	return n, err
}

// Clear restores every weight the Applier changed.
func (a *Applier) Clear() {
	for id, s := range a.slots {
		a.restore(id, s)
	}
	a.active = nil
}

func (a *Applier) restore(id string, s *slot) {
	if cur := *s.ptr; cur != s.orig {
		cur.Free()
	}
	*s.ptr = s.orig
	delete(a.slots, id)
}

// plan maps every layer of every use onto the model and computes the parts
// of each weight (host data only; no weight changes).
func (a *Applier) plan(uses []Use, check bool) ([]*plan, error) {
	byID := map[string]*plan{}
	for i, u := range uses {
		if u.File == nil {
			return nil, fmt.Errorf("LoRA %d: no file", i+1)
		}
		if !finite(u.UNetScale) || !finite(u.TextScale) {
			return nil, fmt.Errorf("LoRA %s: strength must be a finite number", u.File.Path)
		}
		for _, l := range u.File.Layers {
			if err := a.planLayer(byID, u, l, check); err != nil {
				return nil, fmt.Errorf("LoRA %s: %v%s", u.File.Path, err, sdHint(u.File, a.names))
			}
		}
	}
	out := make([]*plan, 0, len(byID))
	for _, p := range byID {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].w.id() < out[j].w.id() })
	return out, nil
}

func (a *Applier) planLayer(byID map[string]*plan, u Use, l *Layer, check bool) error {
	if !u.Components.Has(l.Component) {
		return nil
	}
	w, skip, err := a.names.resolve(a.target, l)
	if err != nil || skip {
		return err
	}
	s := u.scale(l.Component)
	if s == 0 {
		return nil // W + 0·Δ = W: leave the weight untouched
	}
	out, in, kh, kw := w.dims()
	pt, err := u.File.part(l, out, in, kh, kw, s, check)
	if err != nil {
		return err
	}
	p := byID[w.id()]
	if p == nil {
		p = &plan{w: w}
		byID[w.id()] = p
	}
	if !check {
		p.parts = append(p.parts, pt)
	}
	return nil
}

// merge returns orig + Σ parts as a new tensor of orig's dtype on orig's
// backend. Low-rank parts are concatenated along their rank, so that one
// fused c + u·d (tensor.AddMatMul) adds their sum: Σ u_i·d_i =
// [u_1 … u_n]·[d_1; …; d_n]. Dense parts are summed on the host first.
func merge(orig *tensor.Tensor, parts []part) (*tensor.Tensor, error) {
	b := orig.Backend()
	if b == nil {
		return nil, fmt.Errorf("the weight is not loaded (meta tensor)")
	}
	out := orig.Dim(0)
	K := orig.Numel() / out
	u, d, R := concatLowRank(parts, out, K)
	dense := sumDense(parts, out*K)
	s := tensor.NewScope(b)
	defer s.Release()
	w := orig.Reshape(out, K)
	var merged *tensor.Tensor
	switch {
	case dense == nil: // then R > 0: every part is low-rank or dense
		merged = addLowRank(s, w, u, d, R)
	default:
		// W + (Σ dense + Σ u·d): the delta is built in float32, then added
		// to the weight once.
		delta := s.FromFloat32(tensor.F32, tensor.Shape{out, K}, dense)
		if R > 0 {
			delta = addLowRank(s, delta, u, d, R)
		}
		merged = s.Add(w, delta)
	}
	if err := b.Err(); err != nil {
		return nil, err
	}
	return s.Keep(merged).Reshape(orig.Shape()...), nil
}

// concatLowRank lays the low-rank parts side by side: u [out, R] and
// d [R, K].
func concatLowRank(parts []part, out, K int) (u, d []float32, R int) {
	for _, p := range parts {
		R += p.r
	}
	if R == 0 {
		return nil, nil, 0
	}
	u = make([]float32, out*R)
	d = make([]float32, 0, R*K)
	off := 0
	for _, p := range parts {
		if p.r == 0 {
			continue
		}
		for o := range out {
			copy(u[o*R+off:o*R+off+p.r], p.u[o*p.r:(o+1)*p.r])
		}
		d = append(d, p.d...)
		off += p.r
	}
	return u, d, R
}

// sumDense adds the dense parts in float64 (nil if there are none).
func sumDense(parts []part, n int) []float32 {
	var acc []float64
	for _, p := range parts {
		if p.dense == nil {
			continue
		}
		if acc == nil {
			acc = make([]float64, n)
		}
		for i, v := range p.dense {
			acc[i] += v
		}
	}
	if acc == nil {
		return nil
	}
	out := make([]float32, n)
	for i, v := range acc {
		out[i] = float32(v)
	}
	return out
}

// addLowRank is c + u·d on c's backend (R > 0).
func addLowRank(s *tensor.Scope, c *tensor.Tensor, u, d []float32, R int) *tensor.Tensor {
	ut := s.FromFloat32(tensor.F32, tensor.Shape{c.Dim(0), R}, u)
	dt := s.FromFloat32(tensor.F32, tensor.Shape{R, c.Dim(1)}, d)
	return tensor.AddMatMul(s, c, ut, dt)
}

// Params lists the parameters a target's applier may change, for tests and
// tools (our names, prefixed by component).
func (t Target) Params() []nn.Param {
	var out []nn.Param
	for c := Component(0); c < numComponents; c++ {
		if m := t.module(c); m != nil {
			out = append(out, nn.Params(m, c.String()+".")...)
		}
	}
	return out
}
