package config

import (
	"fmt"
	"sort"
	"strings"

	"github.com/sdxl-go/sdxl/internal/jsonobj"
)

// Component is one [library, class] entry of model_index.json, e.g.
// "unet": ["diffusers", "UNet2DConditionModel"]. Both are "" for an entry
// set to [null, null] (a component the pipeline runs without).
type Component struct {
	Name    string
	Library string
	Class   string
}

// Present reports whether the pipeline has this component.
func (c Component) Present() bool { return c.Library != "" && c.Class != "" }

// ModelIndex is a pipeline folder's model_index.json.
type ModelIndex struct {
	// ClassName is the pipeline class, e.g. "StableDiffusionXLPipeline" or
	// "StableDiffusionXLImg2ImgPipeline" (the refiner).
	ClassName        string
	DiffusersVersion string
	// Components holds every [library, class] entry by name, including
	// null ones.
	Components map[string]Component
	// ForceZerosForEmptyPrompt: an empty negative prompt becomes zero
	// embeddings (default true, as both SDXL pipelines' __init__).
	ForceZerosForEmptyPrompt bool
	// RequiresAestheticsScore: the UNet's time ids carry an aesthetic
	// score instead of the target size (the refiner; default false).
	RequiresAestheticsScore bool
	// AddWatermarker is nil for None (diffusers then watermarks when the
	// invisible-watermark package is installed).
	AddWatermarker *bool
	// Unused lists other keys (not "_"-prefixed) this package ignores.
	Unused []string
}

// ParseModelIndex parses model_index.json; name identifies it in errors.
func ParseModelIndex(name string, data []byte) (*ModelIndex, error) {
	o, err := jsonobj.Parse(name, data)
	if err != nil {
		return nil, err
	}
	m := &ModelIndex{Components: map[string]Component{}}
	m.ClassName = o.Str("_class_name", "")
	m.DiffusersVersion = o.Str("_diffusers_version", "")
	m.ForceZerosForEmptyPrompt = o.Bool("force_zeros_for_empty_prompt", true)
	m.RequiresAestheticsScore = o.Bool("requires_aesthetics_score", false)
	m.AddWatermarker = o.OptBool("add_watermarker", nil)
	if o.Err() != nil {
		return nil, o.Err()
	}
	if m.ClassName == "" {
		return nil, fmt.Errorf("%s: no _class_name (not a diffusers pipeline index)", name)
	}
	read := map[string]bool{}
	for _, k := range o.Read() {
		read[k] = true
	}
	for _, k := range o.Keys() {
		if read[k] || strings.HasPrefix(k, "_") {
			continue
		}
		if v, _ := o.Peek(k); !jsonobj.IsList(v) {
			continue // a pipeline argument this package does not know
		}
		v, _, _ := o.Get(k)
		c, err := component(k, v)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %v", name, k, err)
		}
		m.Components[k] = c
	}
	m.Unused = o.Unused()
	return m, nil
}

// component reads one [library, class] entry.
func component(key string, v any) (Component, error) {
	pair, _ := jsonobj.AsList(v)
	var s [2]*string
	ok := len(pair) == 2
	for i := 0; ok && i < 2; i++ {
		switch x := pair[i].(type) {
		case nil:
		case string:
			s[i] = &x
		default:
			ok = false
		}
	}
	if !ok {
		return Component{}, fmt.Errorf("want [library, class] (strings or nulls), got %s", jsonobj.Describe(v))
	}
	if (s[0] == nil) != (s[1] == nil) {
		return Component{}, fmt.Errorf("library and class must both be set or both null, got %s", jsonobj.Describe(v))
	}
	c := Component{Name: key}
	if s[0] != nil {
		c.Library, c.Class = *s[0], *s[1]
		if c.Library == "" || c.Class == "" {
			return Component{}, fmt.Errorf("empty library or class name in %s", jsonobj.Describe(v))
		}
	}
	return c, nil
}

// Component returns the named entry; ok is false when model_index.json has
// no such key.
func (m *ModelIndex) Component(name string) (Component, bool) {
	c, ok := m.Components[name]
	return c, ok
}

// ComponentNames lists the present (non-null) components, sorted.
func (m *ModelIndex) ComponentNames() []string {
	var out []string
	for k, c := range m.Components {
		if c.Present() {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
