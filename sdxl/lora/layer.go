package lora

import (
	"fmt"
	"sort"

	"github.com/sdxl-go/sdxl/safetensors"
)

// Kind is a layer's adapter algorithm.
type Kind uint8

const (
	// LoRA is a low-rank product up·down (LoCon for convolutions,
	// optionally with a Tucker core lora_mid).
	LoRA Kind = iota
	// LoHa is LyCORIS's Hadamard product of two low-rank products.
	LoHa
	// LoKr is LyCORIS's Kronecker product of two (possibly low-rank) factors.
	LoKr
)

func (k Kind) String() string {
	switch k {
	case LoRA:
		return "LoRA"
	case LoHa:
		return "LoHa"
	case LoKr:
		return "LoKr"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Layer is the set of tensors of a file that change one weight.
type Layer struct {
	Component Component
	// Module is the module as the file names it (after the component
	// prefix): a diffusers/transformers path or kohya's flattened name.
	Module string
	Kind   Kind
	// Format is the key spelling: "diffusers" (PEFT), "diffusers-old",
	// "kohya", "kohya-sgm" (kohya names of the original UNet modules) or
	// "lycoris".
	Format string

	naming naming
	module string           // our module path (modulePath) or the flattened name (kohyaName)
	keys   [numRoles]string // the key of each role present
	alpha  float64          // the .alpha tensor's value, if keys[roleAlpha] != ""
}

// has reports whether the layer has a tensor of role r.
func (l *Layer) has(r role) bool { return l.keys[r] != "" }

// Keys lists the layer's tensor keys.
func (l *Layer) Keys() []string {
	var out []string
	for _, k := range l.keys {
		if k != "" {
			out = append(out, k)
		}
	}
	return out
}

// firstKey is the key error messages name for the layer.
func (l *Layer) firstKey() string {
	for _, k := range l.keys {
		if k != "" {
			return k
		}
	}
	return l.Module
}

// buildLayers classifies every key of the file and groups the keys into
// layers by component and module.
func (f *File) buildLayers() error {
	type id struct {
		c Component
		n naming
		m string
	}
	byID := map[id]*Layer{}
	var notLoRA []string
	dora := 0
	names := f.header.Names()
	for _, k := range names {
		ki, ok, err := classify(k)
		if err != nil {
			return err
		}
		if !ok {
			notLoRA = append(notLoRA, k)
			continue
		}
		if ki.sd1 {
			return fmt.Errorf("key %q: this looks like an SD 1.x LoRA (text-encoder keys lora_te_*; SDXL LoRAs have lora_te1_* and lora_te2_*): it cannot be applied to SDXL", k)
		}
		l := byID[id{ki.comp, ki.naming, ki.module}]
		if l == nil {
			l = &Layer{Component: ki.comp, Module: ki.raw, naming: ki.naming, module: ki.module}
			byID[id{ki.comp, ki.naming, ki.module}] = l
		}
		if prev := l.keys[ki.role]; prev != "" {
			return fmt.Errorf("keys %q and %q are the same tensor of one layer", prev, k)
		}
		l.keys[ki.role] = k
		if ki.role == roleDora {
			dora++
		}
		if ki.role == roleAlpha || ki.role == roleDora {
			continue
		}
		if l.Format != "" && l.Format != ki.spelling {
			return fmt.Errorf("key %q is spelled %s but other keys of its layer are %s", k, ki.spelling, l.Format)
		}
		l.Format = ki.spelling
	}
	switch {
	case len(names) == 0:
		return fmt.Errorf("not a LoRA: the file holds no tensors")
	case len(byID) == 0:
		return fmt.Errorf("not a LoRA: none of its %d tensors has a LoRA key (first: %q)", len(names), names[0])
	case len(notLoRA) > 0:
		return fmt.Errorf("key %q is not a LoRA key (%d such keys)", notLoRA[0], len(notLoRA))
	}
	for _, l := range byID {
		if err := f.finishLayer(l); err != nil {
			return err
		}
		if l.Format != "" {
			f.Layers = append(f.Layers, l)
		}
	}
	if dora > 0 {
		f.Warnings = append(f.Warnings, fmt.Sprintf("LoRA %s: %d dora_scale tensors ignored (DoRA magnitudes are not applied, as diffusers does for SDXL)", f.Path, dora))
	}
	sort.Slice(f.Layers, func(i, j int) bool {
		a, b := f.Layers[i], f.Layers[j]
		if a.Component != b.Component {
			return a.Component < b.Component
		}
		return a.Module < b.Module
	})
	return nil
}

// roleKinds tells which algorithm each weight role belongs to.
var roleKinds = map[role]Kind{
	roleDown: LoRA, roleUp: LoRA, roleMid: LoRA,
	roleHadaW1A: LoHa, roleHadaW1B: LoHa, roleHadaW2A: LoHa, roleHadaW2B: LoHa, roleHadaT1: LoHa, roleHadaT2: LoHa,
	roleLokrW1: LoKr, roleLokrW1A: LoKr, roleLokrW1B: LoKr, roleLokrW2: LoKr, roleLokrW2A: LoKr, roleLokrW2B: LoKr,
	roleLokrT2: LoKr,
}

// finishLayer sets the layer's kind, checks that its tensors form a
// complete adapter of that kind and reads its alpha. A layer with nothing
// but a dora_scale is left without a Format (and dropped).
func (f *File) finishLayer(l *Layer) error {
	kinds := map[Kind]bool{}
	for r, k := range l.keys {
		if kd, ok := roleKinds[role(r)]; ok && k != "" {
			kinds[kd] = true
		}
	}
	switch len(kinds) {
	case 0:
		if l.has(roleAlpha) {
			return fmt.Errorf("key %q: an alpha without LoRA weights", l.keys[roleAlpha])
		}
		return nil // only dora_scale: ignored
	case 1:
	default:
		return fmt.Errorf("key %q: its layer mixes LoRA, LoHa and LoKr tensors", l.firstKey())
	}
	for k := range kinds {
		l.Kind = k
	}
	if l.Kind != LoRA && l.naming == modulePath {
		// LyCORIS files use kohya names; a diffusers path here is unusual
		// but unambiguous.
		l.Format = spellLyCORIS
	}
	if err := l.checkComplete(); err != nil {
		return err
	}
	if l.has(roleAlpha) {
		v, shape, err := f.tensor(l.keys[roleAlpha])
		if err != nil {
			return err
		}
		if len(v) != 1 {
			return fmt.Errorf("key %q: alpha must be a single number, has shape %v", l.keys[roleAlpha], shape)
		}
		l.alpha = float64(v[0])
	}
	for _, k := range l.Keys() {
		if in := f.header.Tensors[k]; !isFloat(in.DType) && k != l.keys[roleAlpha] {
			return fmt.Errorf("key %q: dtype %s (LoRA weights must be F32, F16, BF16 or F64)", k, in.DType)
		}
	}
	return nil
}

// checkComplete reports a missing partner tensor.
func (l *Layer) checkComplete() error {
	need := func(rs ...role) error {
		for _, r := range rs {
			if !l.has(r) {
				return fmt.Errorf("key %q: its layer has no %s", l.firstKey(), roleName(l, r))
			}
		}
		return nil
	}
	switch l.Kind {
	case LoRA:
		return need(roleDown, roleUp)
	case LoHa:
		if l.has(roleHadaT1) != l.has(roleHadaT2) {
			return fmt.Errorf("key %q: LoHa needs both hada_t1 and hada_t2 or neither", l.firstKey())
		}
		return need(roleHadaW1A, roleHadaW1B, roleHadaW2A, roleHadaW2B)
	}
	// LoKr: each factor whole or as an a/b pair; the Tucker core only
	// with a factored w2 (lycoris/modules/lokr.py).
	for _, p := range [][3]role{{roleLokrW1, roleLokrW1A, roleLokrW1B}, {roleLokrW2, roleLokrW2A, roleLokrW2B}} {
		whole, a, b := l.has(p[0]), l.has(p[1]), l.has(p[2])
		if whole == (a || b) || a != b {
			return fmt.Errorf("key %q: LoKr needs %s, or both %s and %s", l.firstKey(), roleName(l, p[0]), roleName(l, p[1]), roleName(l, p[2]))
		}
	}
	if l.has(roleLokrT2) && l.has(roleLokrW2) {
		return fmt.Errorf("key %q: lokr_t2 with a whole lokr_w2", l.keys[roleLokrT2])
	}
	return nil
}

// roleName spells a role as the layer's keys do.
func roleName(l *Layer, r role) string {
	for _, s := range suffixes {
		if s.role == r && (s.spelling == l.Format || s.spelling == spellLyCORIS || s.spelling == spellKohya) {
			return s.text[1:]
		}
	}
	return fmt.Sprint("role ", r)
}

func isFloat(dt safetensors.DType) bool {
	switch dt {
	case safetensors.F32, safetensors.F16, safetensors.BF16, safetensors.F64:
		return true
	}
	return false
}
