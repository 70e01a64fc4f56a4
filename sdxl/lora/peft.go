package lora

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strings"
)

// peftConfig is the part of PEFT's LoraConfig that sets a layer's scale,
// for one component. diffusers (>= 0.34) writes one config per component
// into the safetensors header as __metadata__["lora_adapter_metadata"], a
// JSON object keyed "<component>.<field>" (loaders/lora_base.py
// _load_sft_state_dict_metadata), and builds LoraConfig(**it) when loading.
type peftConfig struct {
	r      int
	alpha  float64
	rslora bool
	// Patterns in the order the JSON lists them: PEFT takes the first
	// match (utils/other.py get_pattern_key).
	rankPattern, alphaPattern []pattern
}

type pattern struct {
	key   string
	re    *regexp.Regexp
	value float64
}

// metadataKey is where diffusers keeps the adapter configs.
const metadataKey = "lora_adapter_metadata"

// parsePEFTMetadata reads the per-component LoraConfigs of a header's
// metadata (nil when the file has none).
func parsePEFTMetadata(md map[string]string) (map[Component]*peftConfig, error) {
	js, ok := md[metadataKey]
	if !ok {
		return nil, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(js), &fields); err != nil {
		return nil, fmt.Errorf("__metadata__[%q] is not a JSON object: %v", metadataKey, err)
	}
	out := map[Component]*peftConfig{}
	for c := Component(0); c < numComponents; c++ {
		cfg, err := componentConfig(c.String()+".", fields)
		if err != nil {
			return nil, fmt.Errorf("__metadata__[%q]: %v", metadataKey, err)
		}
		if cfg != nil {
			out[c] = cfg
		}
	}
	return out, nil
}

// componentConfig reads the fields of one component (nil if it has none).
func componentConfig(prefix string, fields map[string]json.RawMessage) (*peftConfig, error) {
	rawR, hasR := fields[prefix+"r"]
	rawAlpha, hasAlpha := fields[prefix+"lora_alpha"]
	if !hasR && !hasAlpha {
		return nil, nil
	}
	cfg := &peftConfig{r: 8, alpha: 8} // LoraConfig's defaults
	if hasR {
		if err := json.Unmarshal(rawR, &cfg.r); err != nil || cfg.r <= 0 {
			return nil, fmt.Errorf("%sr = %s: want a positive integer", prefix, rawR)
		}
	}
	if hasAlpha {
		if err := json.Unmarshal(rawAlpha, &cfg.alpha); err != nil {
			return nil, fmt.Errorf("%slora_alpha = %s: want a number", prefix, rawAlpha)
		}
	}
	if raw, ok := fields[prefix+"use_rslora"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &cfg.rslora); err != nil {
			return nil, fmt.Errorf("%suse_rslora = %s: want a boolean", prefix, raw)
		}
	}
	if raw, ok := fields[prefix+"use_dora"]; ok && string(raw) == "true" {
		return nil, fmt.Errorf("%suse_dora is true: DoRA is not supported", prefix)
	}
	var err error
	if cfg.rankPattern, err = patterns(prefix+"rank_pattern", fields[prefix+"rank_pattern"]); err != nil {
		return nil, err
	}
	if cfg.alphaPattern, err = patterns(prefix+"alpha_pattern", fields[prefix+"alpha_pattern"]); err != nil {
		return nil, err
	}
	return cfg, nil
}

// patterns reads a {regex: number} object keeping its key order.
func patterns(name string, raw json.RawMessage) ([]pattern, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	bad := func(err error) ([]pattern, error) {
		return nil, fmt.Errorf("%s: want an object of numbers: %v", name, err)
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return bad(err)
	}
	var out []pattern
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return bad(err)
		}
		key, _ := t.(string)
		var v float64
		if err := dec.Decode(&v); err != nil {
			return bad(err)
		}
		// PEFT: re.match(rf"(.*\.)?({key})$", module name).
		re, err := regexp.Compile(`^(.*\.)?(` + key + `)$`)
		if err != nil {
			return nil, fmt.Errorf("%s: pattern %q: %v", name, key, err)
		}
		out = append(out, pattern{key: key, re: re, value: v})
	}
	return out, nil
}

// match returns the value of the first pattern matching module.
func match(ps []pattern, module string) (float64, bool) {
	for _, p := range ps {
		if p.re.MatchString(module) {
			return p.value, true
		}
	}
	return 0, false
}

// scale is PEFT's LoraLayer.update_layer scaling for the module (named as
// in the component, e.g. "text_model.encoder.layers.0.mlp.fc1"): alpha/r,
// or alpha/sqrt(r) with rsLoRA. It fails when the config's rank is not the
// rank of the tensors, which PEFT would refuse to load.
func (c *peftConfig) scale(module string, rank int, key string) (float64, error) {
	r, alpha := c.r, c.alpha
	if v, ok := match(c.rankPattern, module); ok {
		r = int(v)
	}
	if v, ok := match(c.alphaPattern, module); ok {
		alpha = v
	}
	if r != rank {
		return 0, fmt.Errorf("key %q has rank %d but the file's lora_adapter_metadata says r = %d", key, rank, r)
	}
	if c.rslora {
		return alpha / math.Sqrt(float64(r)), nil
	}
	return alpha / float64(r), nil
}

// peftModuleName is the module name PEFT matched patterns against: the full
// name inside the component, which for the text encoders starts with
// "text_model." (transformers' CLIPTextModel).
func peftModuleName(c Component, module string) string {
	if c == UNet || strings.HasPrefix(module, "text_model.") {
		return module
	}
	return "text_model." + module
}
