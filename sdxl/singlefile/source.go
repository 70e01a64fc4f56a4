package singlefile

import (
	"fmt"
	"sort"
	"strings"

	"github.com/sdxl-go/sdxl/nn"
)

// transform says how a single-file tensor becomes ours.
type transform int

const (
	asIs      transform = iota
	reshape             // same data, other shape (1x1 conv <-> linear)
	rowThird            // one third of the rows of a fused q/k/v tensor
	transpose           // a 2-D tensor stored transposed
)

type entry struct {
	src   string
	kind  transform
	part  int
	shape []int // our shape
}

// View exposes one component of a single file under our parameter names.
type View struct {
	src     nn.Source
	entries map[string]entry
	names   []string
	// The last fused tensor read, since q, k and v are read one after the
	// other from the same in_proj_weight.
	cacheName string
	cache     []float32
}

// Ignorable reports single-file keys that are not parameters of the
// models we run: CLIP's position_ids and OpenCLIP's logit_scale buffers, the
// sampler state that sgm and ldm training code saves with a checkpoint
// (denoiser.sigmas, the DDPM schedule buffers) and EMA shadow weights
// (model_ema.*). diffusers' single-file loader skips these too.
func Ignorable(name string) bool {
	if strings.HasSuffix(name, "position_ids") || strings.HasSuffix(name, "logit_scale") ||
		strings.HasPrefix(name, "denoiser.") || strings.HasPrefix(name, "model_ema.") {
		return true
	}
	switch name {
	case "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
		"log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
		"posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2":
		return true
	}
	return false
}

// newView maps every parameter of the model through mapName and checks
// that every key of the single file under prefix is claimed.
func newView(src nn.Source, prefix string, params []nn.Param, mapName func(string) entry) (*View, error) {
	v := &View{src: src, entries: map[string]entry{}}
	claimed := map[string]bool{}
	for _, p := range params {
		e := mapName(p.Name)
		e.src = prefix + e.src
		e.shape = p.Tensor().Shape()
		srcShape, ok := src.Shape(e.src)
		if !ok {
			return nil, fmt.Errorf("missing weight %q (for %s)", e.src, p.Name)
		}
		if want := e.srcShape(); !sameShape(srcShape, want) {
			return nil, fmt.Errorf("weight %q has shape %v, the model expects %v", e.src, srcShape, want)
		}
		v.entries[p.Name] = e
		v.names = append(v.names, p.Name)
		claimed[e.src] = true
	}
	for _, k := range src.Names() {
		if strings.HasPrefix(k, prefix) && !claimed[k] && !Ignorable(k) {
			return nil, fmt.Errorf("unexpected weight %q (no parameter of the model has this name)", k)
		}
	}
	sort.Strings(v.names)
	return v, nil
}

func (e entry) srcShape() []int {
	switch e.kind {
	case reshape:
		return append(append([]int(nil), e.shape...), 1, 1)
	case rowThird:
		return append([]int{3 * e.shape[0]}, e.shape[1:]...)
	case transpose:
		return []int{e.shape[1], e.shape[0]}
	}
	return e.shape
}

// Names lists our parameter names.
func (v *View) Names() []string { return v.names }

// Shape returns our shape of a parameter.
func (v *View) Shape(name string) ([]int, bool) {
	e, ok := v.entries[name]
	return e.shape, ok
}

// ReadFloat32 reads a parameter, un-fusing or transposing as needed.
func (v *View) ReadFloat32(name string, dst []float32) error {
	e, ok := v.entries[name]
	if !ok {
		return fmt.Errorf("missing weight %q", name)
	}
	switch e.kind {
	case asIs, reshape:
		return v.src.ReadFloat32(e.src, dst)
	case rowThird:
		if v.cacheName != e.src {
			v.cache = make([]float32, 3*len(dst))
			if err := v.src.ReadFloat32(e.src, v.cache); err != nil {
				return err
			}
			v.cacheName = e.src
		}
		copy(dst, v.cache[e.part*len(dst):(e.part+1)*len(dst)])
		return nil
	case transpose:
		tmp := make([]float32, len(dst))
		if err := v.src.ReadFloat32(e.src, tmp); err != nil {
			return err
		}
		rows, cols := e.shape[0], e.shape[1] // ours; the file holds [cols, rows]
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				dst[i*cols+j] = tmp[j*rows+i]
			}
		}
		return nil
	}
	return fmt.Errorf("weight %q: unknown transform", name)
}

// UNet maps the UNet's parameters (diffusers names) onto model.diffusion_model.*.
func UNet(src nn.Source, params []nn.Param, layout UNetLayout) (*View, error) {
	return newView(src, UNetPrefix, params, func(n string) entry { return entry{src: layout.UNetName(n)} })
}

// VAE maps an AutoencoderKL with the given number of levels onto first_stage_model.*.
func VAE(src nn.Source, params []nn.Param, levels int) (*View, error) {
	return newView(src, VAEPrefix, params, func(n string) entry {
		s, conv := VAEName(n, levels)
		if conv {
			return entry{src: s, kind: reshape}
		}
		return entry{src: s}
	})
}

// CLIPText maps CLIP ViT-L (parameter names without "text_model.") onto
// conditioner.embedders.0.transformer.*, whichever way the file names it.
func CLIPText(src nn.Source, params []nn.Param) (*View, error) {
	_, withPrefix := src.Shape(CLIPPrefix + "text_model.final_layer_norm.weight")
	return newView(src, CLIPPrefix, params, func(n string) entry {
		n = strings.TrimPrefix(n, "text_model.")
		if withPrefix {
			n = "text_model." + n
		}
		return entry{src: n}
	})
}

// OpenCLIP maps CLIPTextModelWithProjection onto the OpenCLIP keys.
func OpenCLIP(src nn.Source, params []nn.Param, kind Kind) (*View, error) {
	return newView(src, OpenCLIPPrefix(kind), params, func(n string) entry {
		s, part, tr := OpenCLIPName(n)
		switch {
		case part >= 0:
			return entry{src: s, kind: rowThird, part: part}
		case tr:
			return entry{src: s, kind: transpose}
		}
		return entry{src: s}
	})
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
