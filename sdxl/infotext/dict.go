package infotext

// Dict returns what A1111 1.10's parse_generation_parameters returns for
// text (with its default settings), the "parameters" object of the A1111
// API's /sdapi/v1/png-info: every pair as a string (WxH values split into
// "KEY-1" and "KEY-2"), "Prompt", "Negative prompt", and the defaults it
// adds for missing keys, with their Python types (ints and bools where
// A1111 uses them). Not reproduced: styles extraction (needs the user's
// styles file), old hires-fix conversion ("First pass size") and the
// "Emphasis" guess (needs A1111's prompt parser).
func Dict(text string) map[string]any {
	prompt, neg, fields := Split(text)
	res := map[string]any{}
	for _, f := range fields {
		if m := reImageSize.FindStringSubmatch(f.Value); m != nil {
			res[f.Key+"-1"] = m[1]
			res[f.Key+"-2"] = m[2]
		} else {
			res[f.Key] = f.Value
		}
	}
	res["Prompt"] = prompt
	res["Negative prompt"] = neg
	if h, ok := res["Hypernet"].(string); ok {
		strength, ok := res["Hypernet strength"].(string)
		if !ok {
			strength = "1.0"
		}
		res["Prompt"] = prompt + "<hypernet:" + h + ":" + strength + ">"
	}
	if _, ok := res["Hires resize-1"]; !ok {
		res["Hires resize-1"] = 0
		res["Hires resize-2"] = 0
	}
	for _, d := range dictDefaults {
		if _, ok := res[d.key]; !ok {
			res[d.key] = d.value
		}
	}
	if _, ok := res["Cache FP16 weight for LoRA"]; !ok && res["FP8 weight"] != "Disable" {
		res["Cache FP16 weight for LoRA"] = false
	}
	if _, ok := res["Refiner switch by sampling steps"]; !ok {
		res["Refiner switch by sampling steps"] = false
	}
	return res
}

// dictDefaults are parse_generation_parameters' defaults for missing keys,
// in its order.
var dictDefaults = []struct {
	key   string
	value any
}{
	{"Clip skip", "1"},
	{"Hires sampler", "Use same sampler"},
	{"Hires schedule type", "Use same scheduler"},
	{"Hires checkpoint", "Use same checkpoint"},
	{"Hires prompt", ""},
	{"Hires negative prompt", ""},
	{"Mask mode", "Inpaint masked"},
	{"Masked content", "original"},
	{"Inpaint area", "Whole picture"},
	{"Masked area padding", 32},
	{"RNG", "GPU"},
	{"Schedule type", "Automatic"},
	{"Schedule max sigma", 0},
	{"Schedule min sigma", 0},
	{"Schedule rho", 0},
	{"VAE Encoder", "Full"},
	{"VAE Decoder", "Full"},
	{"FP8 weight", "Disable"},
}
