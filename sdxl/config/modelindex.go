package config

import (
	"encoding/json"
	"fmt"
	"sort"
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
	o, err := parseObject(name, data)
	if err != nil {
		return nil, err
	}
	m := &ModelIndex{Components: map[string]Component{}}
	m.ClassName = o.str("_class_name", "")
	m.DiffusersVersion = o.str("_diffusers_version", "")
	m.ForceZerosForEmptyPrompt = o.bool("force_zeros_for_empty_prompt", true)
	m.RequiresAestheticsScore = o.bool("requires_aesthetics_score", false)
	m.AddWatermarker = o.optBool("add_watermarker", nil)
	if o.err != nil {
		return nil, o.err
	}
	if m.ClassName == "" {
		return nil, fmt.Errorf("%s: no _class_name (not a diffusers pipeline index)", name)
	}
	keys := make([]string, 0, len(o.raw))
	for k := range o.raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if o.used[k] || len(k) > 0 && k[0] == '_' {
			continue
		}
		v := o.raw[k]
		if !isList(v) {
			continue // a pipeline argument this package does not know
		}
		var pair []*string
		if err := json.Unmarshal(v, &pair); err != nil || len(pair) != 2 {
			return nil, fmt.Errorf("%s: %s: want [library, class] (strings or nulls), got %s", name, k, describe(v))
		}
		if (pair[0] == nil) != (pair[1] == nil) {
			return nil, fmt.Errorf("%s: %s: library and class must both be set or both null, got %s", name, k, describe(v))
		}
		c := Component{Name: k}
		if pair[0] != nil {
			c.Library, c.Class = *pair[0], *pair[1]
			if c.Library == "" || c.Class == "" {
				return nil, fmt.Errorf("%s: %s: empty library or class name in %s", name, k, describe(v))
			}
		}
		m.Components[k] = c
		o.used[k] = true
	}
	m.Unused = o.unused()
	return m, nil
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
