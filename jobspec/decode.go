package jobspec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
)

// object reads the top-level JSON object of a request body as raw fields.
func object(data []byte) (map[string]json.RawMessage, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, &FieldError{Field: "body", Message: "empty: want a JSON object"}
	}
	if data[0] != '{' {
		return nil, &FieldError{Field: "body", Message: "not a JSON object"}
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return nil, &FieldError{Field: "body", Message: "malformed JSON: " + err.Error()}
	}
	if dec.More() {
		return nil, &FieldError{Field: "body", Message: "trailing data after the JSON object"}
	}
	return raw, nil
}

// isNull reports an absent value's JSON spelling: null means "the
// default", as in A1111's pydantic models.
func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// kind names a JSON value's type for messages.
func kind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "a list"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func wrongType(field string, raw json.RawMessage, want string) *FieldError {
	return fieldErr(field, "want %s, got %s", want, kind(raw))
}

func decodeString(field string, raw json.RawMessage, dst *string) error {
	if isNull(raw) {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return wrongType(field, raw, "a string")
	}
	return nil
}

func decodeBool(field string, raw json.RawMessage, dst *bool) error {
	if isNull(raw) {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return wrongType(field, raw, "true or false")
	}
	return nil
}

// decodeNumber reads a finite JSON number.
func decodeNumber(field string, raw json.RawMessage, dst *float64) error {
	if isNull(raw) {
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil || kind(raw) != "a number" {
		return wrongType(field, raw, "a number")
	}
	v, err := n.Float64()
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return fieldErr(field, "%s is not a finite number", n)
	}
	*dst = v
	return nil
}

// decodeInt reads an integer; a number with a fraction is refused, an
// integral one written with a point (20.0) is accepted.
func decodeInt64(field string, raw json.RawMessage, dst *int64) error {
	if isNull(raw) {
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil || kind(raw) != "a number" {
		return wrongType(field, raw, "an integer")
	}
	if v, err := n.Int64(); err == nil {
		*dst = v
		return nil
	}
	v, err := n.Float64()
	if err != nil || v != math.Trunc(v) || math.Abs(v) > 1<<53 {
		return fieldErr(field, "%s is not an integer", n)
	}
	*dst = int64(v)
	return nil
}

func decodeInt(field string, raw json.RawMessage, dst *int) error {
	var v int64
	if isNull(raw) {
		return nil
	}
	if err := decodeInt64(field, raw, &v); err != nil {
		return err
	}
	if v < math.MinInt32 || v > math.MaxInt32 {
		return fieldErr(field, "%d is out of range", v)
	}
	*dst = int(v)
	return nil
}

func decodeStrings(field string, raw json.RawMessage, dst *[]string) error {
	if isNull(raw) {
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return wrongType(field, raw, "a list of strings")
	}
	out := make([]string, len(items))
	for i, it := range items {
		if err := decodeString(fmt.Sprintf("%s[%d]", field, i), it, &out[i]); err != nil {
			return err
		}
	}
	*dst = out
	return nil
}

func decodeLoRAs(field string, raw json.RawMessage, dst *[]LoRA) error {
	if isNull(raw) {
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return wrongType(field, raw, `a list of {"name": ..., "weight": ...} objects`)
	}
	out := make([]LoRA, len(items))
	for i, it := range items {
		f := fmt.Sprintf("%s[%d]", field, i)
		obj, err := subObject(f, it)
		if err != nil {
			return err
		}
		out[i].Weight = 1
		fields := []spec{
			{"name", func(r json.RawMessage) error { return decodeString(f+".name", r, &out[i].Name) }},
			{"weight", func(r json.RawMessage) error { return decodeNumber(f+".weight", r, &out[i].Weight) }},
		}
		if err := decodeFields(f+".", obj, fields, true); err != nil {
			return err
		}
	}
	*dst = out
	return nil
}

// subObject reads a nested JSON object.
func subObject(field string, raw json.RawMessage) (map[string]json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || kind(raw) != "an object" {
		return nil, wrongType(field, raw, "an object")
	}
	return obj, nil
}

// spec is one known field and how to read it.
type spec struct {
	name string
	read func(json.RawMessage) error
}

// decodeFields reads every known field of obj in the table's order (so
// that the first error is the same every time). With strict, a field the
// table does not know is an error.
func decodeFields(prefix string, obj map[string]json.RawMessage, fields []spec, strict bool) error {
	known := map[string]bool{}
	for _, f := range fields {
		known[f.name] = true
		if raw, ok := obj[f.name]; ok {
			if err := f.read(raw); err != nil {
				return err
			}
		}
	}
	if !strict {
		return nil
	}
	var unknown []string
	for k := range obj {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		names := make([]string, 0, len(fields))
		for _, f := range fields {
			names = append(names, f.name)
		}
		return fieldErr(prefix+unknown[0], "unknown field (known: %s)", knownList(names))
	}
	return nil
}

// nativeFields are the fields of the native form and of A1111's bodies
// that mean the same in both.
func (s *Spec) nativeFields() []spec {
	str := func(name string, dst *string) spec {
		return spec{name, func(r json.RawMessage) error { return decodeString(name, r, dst) }}
	}
	integer := func(name string, dst *int) spec {
		return spec{name, func(r json.RawMessage) error { return decodeInt(name, r, dst) }}
	}
	// count is an integer whose zero is no default but a mistake.
	count := func(name string, dst *int) spec {
		return spec{name, func(r json.RawMessage) error {
			if err := decodeInt(name, r, dst); err != nil {
				return err
			}
			if !isNull(r) && *dst < 1 {
				return fieldErr(name, "%d: want 1 or more", *dst)
			}
			return nil
		}}
	}
	number := func(name string, dst *float64) spec {
		return spec{name, func(r json.RawMessage) error { return decodeNumber(name, r, dst) }}
	}
	return []spec{
		str("prompt", &s.Prompt), str("negative_prompt", &s.NegativePrompt),
		str("prompt_2", &s.Prompt2), str("negative_prompt_2", &s.NegativePrompt2),
		{"seed", func(r json.RawMessage) error { return decodeInt64("seed", r, &s.Seed) }},
		count("steps", &s.Steps), number("cfg_scale", &s.CFGScale),
		integer("width", &s.Width), integer("height", &s.Height),
		str("sampler_name", &s.SamplerName), str("scheduler", &s.Scheduler),
		count("batch_size", &s.BatchSize), count("n_iter", &s.NIter),
		number("denoising_strength", &s.DenoisingStrength),
		{"init_images", func(r json.RawMessage) error { return decodeStrings("init_images", r, &s.InitImages) }},
		str("mask", &s.Mask),
		number("refiner_switch_at", &s.RefinerSwitchAt),
		integer("clip_skip", &s.ClipSkip),
	}
}

// Decode reads a job in the native form: absent fields (and null) take
// the native defaults; a wrong type, an unknown field or a value out of
// range is a *FieldError naming the field. The images are checked when
// the job becomes a request (Spec.Request).
func Decode(data []byte) (Spec, error) {
	s := New(Native)
	obj, err := object(data)
	if err != nil {
		return s, err
	}
	fields := append(s.nativeFields(),
		spec{"refiner", func(r json.RawMessage) error {
			if isNull(r) {
				return nil
			}
			var b bool
			err := decodeBool("refiner", r, &b)
			s.Refiner = &b
			return err
		}},
		spec{"loras", func(r json.RawMessage) error { return decodeLoRAs("loras", r, &s.LoRAs) }},
		spec{"prompt_weighting", func(r json.RawMessage) error { return decodeString("prompt_weighting", r, &s.PromptWeighting) }},
		spec{"guidance_rescale", func(r json.RawMessage) error { return decodeNumber("guidance_rescale", r, &s.GuidanceRescale) }},
		spec{"vae_tiling", func(r json.RawMessage) error { return decodeBool("vae_tiling", r, &s.VAETiling) }},
		spec{"watermark", func(r json.RawMessage) error {
			if isNull(r) {
				return nil
			}
			var b bool
			err := decodeBool("watermark", r, &b)
			s.Watermark = &b
			return err
		}},
		spec{"rng", func(r json.RawMessage) error { return decodeString("rng", r, &s.RNG) }},
	)
	if err := decodeFields("", obj, fields, true); err != nil {
		return s, err
	}
	return s, s.Check(Limits{})
}
