package lora

import (
	"fmt"
	"strings"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/clip"
	"github.com/sdxl-go/sdxl/sdxl/singlefile"
	"github.com/sdxl-go/sdxl/sdxl/unet"
	"github.com/sdxl-go/sdxl/tensor"
)

// Target is the model LoRAs change: the SDXL base has all three
// components; the refiner has no TextEncoder.
type Target struct {
	UNet         *unet.UNet
	TextEncoder  *clip.TextModel
	TextEncoder2 *clip.TextModel
	// Partial skips the layers of components that are nil instead of
	// failing on them: e.g. applying a base LoRA's text_encoder_2 layers to
	// the refiner's encoder 2 alone.
	Partial bool
}

// module returns the component's module (nil when absent).
func (t Target) module(c Component) any {
	switch c {
	case UNet:
		if t.UNet != nil {
			return t.UNet
		}
	case TextEncoder:
		if t.TextEncoder != nil {
			return t.TextEncoder
		}
	case TextEncoder2:
		if t.TextEncoder2 != nil {
			return t.TextEncoder2
		}
	}
	return nil
}

// weight is one parameter a layer can change.
type weight struct {
	comp  Component
	param nn.Param
	shape tensor.Shape // as loaded: merges keep it and the dtype, so
	dtype tensor.DType // both are read once
}

// dims is the weight's shape as [out, in, kh, kw] (kh = kw = 1 for a
// linear layer).
func (w weight) dims() (out, in, kh, kw int) {
	if len(w.shape) == 4 {
		return w.shape[0], w.shape[1], w.shape[2], w.shape[3]
	}
	return w.shape[0], w.shape[1], 1, 1
}

func (w weight) id() string { return w.comp.String() + "." + w.param.Name }

// names maps the names a LoRA file may use onto a target's parameters.
type names struct {
	present [numComponents]bool
	// params: our parameter names ("<module>.weight") of every weight a
	// LoRA may change (linear and conv weights), by component.
	params [numComponents]map[string]nn.Param
	shapes map[string]tensor.Shape // by component-prefixed name
	dtypes map[string]tensor.DType
	// other: every other parameter, to tell "not adaptable" from "absent".
	other [numComponents]map[string]bool
	// kohya: parameters by kohya name (without the lora_unet_/lora_te*_
	// prefix).
	kohya [numComponents]map[string]nn.Param
}

// newNames builds the tables of a target. kohya sd-scripts names a module
// lora_unet_/lora_te1_/lora_te2_ followed by its path with dots replaced by
// underscores (networks/lora.py create_modules); for SDXL the path is the
// original SGM UNet's (sdxl_original_unet.py), which sdxl/singlefile maps
// from ours, and transformers' CLIP path with "text_model.".
func newNames(t Target) (*names, error) {
	n := &names{shapes: map[string]tensor.Shape{}, dtypes: map[string]tensor.DType{}}
	var layout singlefile.UNetLayout
	if t.UNet != nil {
		down, up := t.UNet.BlockTypes()
		layout = singlefile.LayoutFromBlockTypes(down, up, t.UNet.LayersPerBlock()[0])
	}
	for c := Component(0); c < numComponents; c++ {
		m := t.module(c)
		if m == nil {
			continue
		}
		n.present[c] = true
		n.params[c], n.other[c], n.kohya[c] = map[string]nn.Param{}, map[string]bool{}, map[string]nn.Param{}
		for _, p := range nn.Params(m, "") {
			if !adaptable(p) {
				n.other[c][p.Name] = true
				continue
			}
			n.params[c][p.Name] = p
			n.shapes[c.String()+"."+p.Name] = p.Tensor().Shape().Clone()
			n.dtypes[c.String()+"."+p.Name] = p.Tensor().DType()
			mod := strings.TrimSuffix(p.Name, ".weight")
			keys := []string{flatten("text_model." + mod)}
			if c == UNet {
				keys = []string{flatten(mod), flatten(strings.TrimSuffix(layout.UNetName(p.Name), ".weight"))}
			}
			for _, k := range keys {
				if prev, dup := n.kohya[c][k]; dup && prev.Name != p.Name {
					return nil, fmt.Errorf("lora: kohya name %q is both %s and %s", k, prev.Name, p.Name)
				}
				n.kohya[c][k] = p
			}
		}
	}
	return n, nil
}

// adaptable reports a weight a LoRA can change: the matrix of a linear
// layer or the kernel of a convolution, not an embedding table or a norm.
func adaptable(p nn.Param) bool {
	r := p.Tensor().Rank()
	return strings.HasSuffix(p.Name, ".weight") && (r == 2 || r == 4) && !strings.HasSuffix(p.Name, "embedding.weight")
}

func flatten(path string) string { return strings.ReplaceAll(path, ".", "_") }

// resolve finds the weight a layer changes. skip is true for a layer of a
// component the (partial) target lacks.
func (n *names) resolve(t Target, l *Layer) (w weight, skip bool, err error) {
	c := l.Component
	if !n.present[c] {
		if t.Partial {
			return w, true, nil
		}
		return w, false, fmt.Errorf("key %q is for the %s, which this model does not have", l.firstKey(), c)
	}
	w.comp = c
	if l.naming == kohyaName {
		p, ok := n.kohya[c][l.module]
		if !ok {
			return w, false, fmt.Errorf("key %q maps to no %s layer of the model", l.firstKey(), c)
		}
		w.param, w.shape, w.dtype = p, n.shapes[c.String()+"."+p.Name], n.dtypes[c.String()+"."+p.Name]
		return w, false, nil
	}
	name := l.module + ".weight"
	p, ok := n.params[c][name]
	switch {
	case ok:
		w.param, w.shape, w.dtype = p, n.shapes[c.String()+"."+p.Name], n.dtypes[c.String()+"."+p.Name]
		return w, false, nil
	case n.other[c][name]:
		return w, false, fmt.Errorf("key %q: %s %s is not a linear or convolution weight", l.firstKey(), c, name)
	}
	return w, false, fmt.Errorf("key %q maps to %s %s, which the model does not have", l.firstKey(), c, name)
}

// sdHint explains a failure on a LoRA made for another Stable Diffusion:
// their cross-attention keys and values read 768-wide (SD 1.x) or 1024-wide
// (SD 2.x) text features where SDXL's base reads 2048 and its refiner 1280.
func sdHint(f *File, n *names) string {
	modelDim := 0
	for name, s := range n.shapes {
		if strings.HasPrefix(name, "unet.") && strings.Contains(name, "attn2.to_k.") {
			modelDim = s[len(s)-1]
			break
		}
	}
	if modelDim == 0 {
		return ""
	}
	for _, l := range f.Layers {
		if l.Component != UNet || l.Kind != LoRA || !strings.Contains(l.Module, "attn2") ||
			!(strings.Contains(l.Module, "to_k") || strings.Contains(l.Module, "to_v")) {
			continue
		}
		s := f.header.Tensors[l.keys[roleDown]].Shape
		if len(s) < 2 || s[1] == modelDim {
			continue
		}
		switch s[1] {
		case 768:
			return " (this looks like an SD 1.5 LoRA: its cross-attention reads 768-wide text features; it cannot be applied to SDXL)"
		case 1024:
			return " (this looks like an SD 2.x LoRA: its cross-attention reads 1024-wide text features; it cannot be applied to SDXL)"
		}
		return fmt.Sprintf(" (its cross-attention reads %d-wide text features, the model's %d: a LoRA for another model?)", s[1], modelDim)
	}
	return ""
}
