package jobspec

import (
	"encoding/json"
	"sort"
	"strings"
)

// A1111Request is a txt2img or img2img body of AUTOMATIC1111's API read
// into a Spec, plus the fields that concern the server rather than the
// job.
type A1111Request struct {
	Spec Spec
	// Checkpoint is override_settings.sd_model_checkpoint ("": none); the
	// server refuses any but its loaded model.
	Checkpoint string
	// RefinerCheckpoint is refiner_checkpoint when given (nil: absent; ""
	// or "None": no refiner); the server maps it to Spec.Refiner.
	RefinerCheckpoint *string
	// SendImages is send_images (default true).
	SendImages bool
	// Ignored lists the fields given with non-default values that have no
	// effect here (reported in the response's info).
	Ignored []string
}

// DecodeA1111 reads an A1111 /sdapi/v1/txt2img (img2img false) or
// /sdapi/v1/img2img body. Unknown fields are ignored, as clients send
// many; wrong types are *FieldErrors; features that would change the
// image and that this engine does not have (hires fix, subseeds, scripts,
// styles, face restoration, tiling) are *FieldErrors saying so.
func DecodeA1111(data []byte, img2img bool) (A1111Request, error) {
	r := A1111Request{Spec: New(A1111), SendImages: true}
	obj, err := object(data)
	if err != nil {
		return r, err
	}
	s := &r.Spec
	var samplerIndex string
	fields := append(s.nativeFields(),
		spec{"sampler_index", func(raw json.RawMessage) error { return decodeString("sampler_index", raw, &samplerIndex) }},
		spec{"send_images", func(raw json.RawMessage) error { return decodeBool("send_images", raw, &r.SendImages) }},
		spec{"refiner_checkpoint", func(raw json.RawMessage) error {
			if isNull(raw) {
				return nil
			}
			var v string
			err := decodeString("refiner_checkpoint", raw, &v)
			r.RefinerCheckpoint = &v
			return err
		}},
		spec{"override_settings", func(raw json.RawMessage) error { return r.overrides(raw) }},
	)
	if err := decodeFields("", obj, fields, false); err != nil {
		return r, err
	}
	if _, ok := obj["sampler_name"]; (!ok || s.SamplerName == "") && samplerIndex != "" {
		s.SamplerName = samplerIndex
	}
	if err := refuseUnsupported(obj, img2img); err != nil {
		return r, err
	}
	r.Ignored = append(ignoredFields(obj, img2img), r.Ignored...)
	if !img2img {
		// txt2img reads denoising_strength only for its hires fix.
		s.DenoisingStrength, s.InitImages, s.Mask = 0, nil, ""
	} else if len(s.InitImages) == 0 {
		return r, fieldErr("init_images", "img2img needs an input image")
	}
	if s.DenoisingStrength == 0 && img2img {
		s.DenoisingStrength = 0.75 // A1111's default
	}
	return r, s.Check(Limits{})
}

// overrides reads override_settings: the checkpoint (checked by the
// server), the clip skip, the VAE (only the model's own).
func (r *A1111Request) overrides(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	obj, err := subObject("override_settings", raw)
	if err != nil {
		return err
	}
	var vae string
	fields := []spec{
		{"sd_model_checkpoint", func(v json.RawMessage) error {
			return decodeString("override_settings.sd_model_checkpoint", v, &r.Checkpoint)
		}},
		{"CLIP_stop_at_last_layers", func(v json.RawMessage) error {
			return decodeInt("override_settings.CLIP_stop_at_last_layers", v, &r.Spec.ClipSkip)
		}},
		{"sd_vae", func(v json.RawMessage) error { return decodeString("override_settings.sd_vae", v, &vae) }},
	}
	if err := decodeFields("override_settings.", obj, fields, false); err != nil {
		return err
	}
	switch strings.ToLower(vae) {
	case "", "automatic", "none":
	default:
		return fieldErr("override_settings.sd_vae", "%s: only the model's own VAE is available", quote(vae))
	}
	for k := range obj {
		switch k {
		case "sd_model_checkpoint", "CLIP_stop_at_last_layers", "sd_vae":
		default:
			r.Ignored = append(r.Ignored, "override_settings."+k)
		}
	}
	return nil
}

// unsupported are A1111 fields whose non-default values would change the
// image in ways this engine cannot: the request is refused, not run
// differently.
var unsupported = []struct {
	field, what string
	img2img     bool // only checked for img2img bodies
}{
	{"enable_hr", "the hires fix is not available: generate at the final size (width, height)", false},
	{"restore_faces", "face restoration is not available", false},
	{"tiling", "seamless tiling is not available", false},
	{"subseed_strength", "variation seeds (subseed) are not available", false},
	{"seed_resize_from_h", "seed resizing is not available", false},
	{"seed_resize_from_w", "seed resizing is not available", false},
	{"alwayson_scripts", "scripts are not available", false},
	{"script_name", "scripts are not available", false},
	{"styles", "prompt styles are not available: put the text in the prompt", false},
	{"inpainting_mask_invert", "inverted masks are not available: invert the mask image", true},
	{"inpaint_full_res", "'only masked' inpainting is not available", true},
	{"resize_mode", "only resize_mode 0 (just resize) is available", true},
	{"image_cfg_scale", "image CFG scale (instruct-pix2pix) is not available", true},
}

// refuseUnsupported answers a request using an unsupported feature.
func refuseUnsupported(obj map[string]json.RawMessage, img2img bool) error {
	for _, u := range unsupported {
		raw, ok := obj[u.field]
		if !ok || (u.img2img && !img2img) || isDefault(raw) {
			continue
		}
		if u.field == "seed_resize_from_h" || u.field == "seed_resize_from_w" {
			var v int64
			if decodeInt64(u.field, raw, &v) == nil && v <= 0 {
				continue // -1 and 0 are "off"
			}
		}
		if u.field == "alwayson_scripts" {
			var scripts map[string]json.RawMessage
			if json.Unmarshal(raw, &scripts) == nil {
				names := make([]string, 0, len(scripts))
				for k := range scripts {
					names = append(names, k)
				}
				sort.Strings(names)
				return fieldErr(u.field, "%s (%s)", u.what, strings.Join(names, ", "))
			}
		}
		return fieldErr(u.field, "%s", u.what)
	}
	return nil
}

// isDefault reports a JSON value that means "off": null, false, 0, "",
// [] or {}.
func isDefault(raw json.RawMessage) bool {
	switch strings.TrimSpace(string(raw)) {
	case "null", "false", "0", "0.0", `""`, "[]", "{}", `"None"`:
		return true
	}
	var v float64
	return json.Unmarshal(raw, &v) == nil && v == 0
}

// noEffect are fields clients send whose values change nothing here when
// set (reported, not refused).
var noEffect = []string{
	"eta", "s_churn", "s_tmax", "s_tmin", "s_noise", "s_min_uncond", "initial_noise_multiplier",
	"mask_blur", "mask_blur_x", "mask_blur_y", "inpainting_fill", "inpaint_full_res_padding",
	"refiner_switch_by_sampling_steps",
}

func ignoredFields(obj map[string]json.RawMessage, img2img bool) []string {
	var out []string
	for _, f := range noEffect {
		if raw, ok := obj[f]; ok && !isDefault(raw) && (img2img || !strings.HasPrefix(f, "mask") && !strings.HasPrefix(f, "inpaint")) {
			out = append(out, f)
		}
	}
	return out
}
