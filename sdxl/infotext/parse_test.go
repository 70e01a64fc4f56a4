package infotext

import (
	"reflect"
	"strings"
	"testing"
)

// wild are infotexts as programs write them, with their quirks. The
// layouts follow real files and code (sources named per case); names,
// hashes and seeds are made up where the source had real ones.
var wild = []struct {
	name, text string
	want       Params
	choice     Choice // Scheduler(want.Sampler, want.ScheduleType)
	extra      map[string]string
}{
	{
		// The example in parse_generation_parameters' docstring
		// (modules/infotext_utils.py): pre-1.0 A1111, 8-digit model hash,
		// no Schedule type, RNG or Version.
		name: "A1111 docstring",
		text: "girl with an artist's beret, determined, blue eyes, desert scene, ((eyeshadow)), (coquettish), detailed, intricate\n" +
			"Negative prompt: ugly, fat, obese, (((deformed))), [blurry], bad anatomy, (extra_limb), (poorly drawn hands), messy drawing\n" +
			"Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b",
		want: Params{
			Prompt:         "girl with an artist's beret, determined, blue eyes, desert scene, ((eyeshadow)), (coquettish), detailed, intricate",
			NegativePrompt: "ugly, fat, obese, (((deformed))), [blurry], bad anatomy, (extra_limb), (poorly drawn hands), messy drawing",
			Steps:          20, Sampler: "Euler a", ScheduleType: "Automatic", CFGScale: 7, Seed: 965400086, Width: 512, Height: 512,
			ModelHash: "45dee52b", ClipSkip: 1, RNG: "GPU",
		},
		choice: Choice{Scheduler: "euler_a"},
	},
	{
		// A1111 1.10 SDXL txt2img with a separate VAE and "Automatic",
		// which for DPM++ 2M means its default Karras schedule
		// (sd_samplers_kdiffusion.py: 'DPM++ 2M' {'scheduler': 'karras'}).
		name: "A1111 1.10 SDXL",
		text: "cinematic photo of a red fox in snow, 35mm\n" +
			"Negative prompt: drawing, painting\n" +
			"Steps: 30, Sampler: DPM++ 2M, Schedule type: Automatic, CFG scale: 7, Seed: 2734566801, Size: 1024x1024, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, VAE hash: 235745af8d, VAE: sdxl_vae.safetensors, Version: v1.10.1",
		want: Params{
			Prompt: "cinematic photo of a red fox in snow, 35mm", NegativePrompt: "drawing, painting",
			Steps: 30, Sampler: "DPM++ 2M", ScheduleType: "Automatic", CFGScale: 7, Seed: 2734566801, Width: 1024, Height: 1024,
			ModelHash: "31e35c80fc", Model: "sd_xl_base_1.0", VAEHash: "235745af8d", VAE: "sdxl_vae.safetensors",
			ClipSkip: 1, RNG: "GPU", Version: "v1.10.1",
		},
		choice: Choice{Scheduler: "dpmpp_2m_karras"},
	},
	{
		// Forge (Version f0.0.17v1.8.0rc...) with ADetailer, hires fix,
		// quoted Lora hashes and the Civitai extension's Hashes object
		// after Version (layout of sd-prompt-reader's Forge test data).
		name: "Forge with ADetailer, hires fix and Hashes",
		text: "score_9, 1girl, solo, looking at viewer, incoming hug,\n" +
			"Negative prompt: 3d, monochrome, simple background,\n" +
			`Steps: 24, Sampler: Euler a, CFG scale: 7, Seed: 2340366286, Size: 832x1216, Model hash: 529c72f6c3, Model: mfcgPDXL_v10, VAE hash: 735e4c3a44, VAE: sdxl_vae.safetensors, Denoising strength: 0.33, Clip skip: 2, ADetailer model: face_yolov8n.pt, ADetailer confidence: 0.7, ADetailer version: 24.5.1, Hires upscale: 1.5, Hires steps: 12, Hires upscaler: 4x_fatal_Anime_500000_G, Lora hashes: "EPhsrKafka: dba941975e80", Version: f0.0.17v1.8.0rc-latest-277-g0af28699, Hashes: {"vae": "63aeecb90f", "lora:EPhsrKafka": "5a3385485b", "model": "529c72f6c3"}`,
		want: Params{
			Prompt: "score_9, 1girl, solo, looking at viewer, incoming hug,", NegativePrompt: "3d, monochrome, simple background,",
			Steps: 24, Sampler: "Euler a", ScheduleType: "Automatic", CFGScale: 7, Seed: 2340366286, Width: 832, Height: 1216,
			ModelHash: "529c72f6c3", Model: "mfcgPDXL_v10", VAEHash: "735e4c3a44", VAE: "sdxl_vae.safetensors",
			DenoisingStrength: 0.33, ClipSkip: 2, RNG: "GPU",
			LoraHashes: []LoraHash{{"EPhsrKafka", "dba941975e80"}},
			Extra: []Field{{"ADetailer model", "face_yolov8n.pt"}, {"ADetailer confidence", "0.7"}, {"ADetailer version", "24.5.1"},
				{"Hires upscale", "1.5"}, {"Hires steps", "12"}, {"Hires upscaler", "4x_fatal_Anime_500000_G"}},
			Version: "f0.0.17v1.8.0rc-latest-277-g0af28699",
			Hashes:  []Field{{"vae", "63aeecb90f"}, {"lora:EPhsrKafka", "5a3385485b"}, {"model", "529c72f6c3"}},
		},
		choice: Choice{Scheduler: "euler_a"},
	},
	{
		// A1111 1.4 with a ControlNet unit: a quoted value full of commas,
		// colons and parentheses, a LoRA name with a space, Hashes at the
		// end (layout of sd-parsers' and stable-diffusion-metadata's tests).
		name: "A1111 1.4 with ControlNet",
		text: "1girl, <lora:gaint build-V1:0.88>,\n" +
			"Negative prompt: lowres, bad anatomy\n" +
			`Steps: 36, Sampler: DPM++ 2M SDE, CFG scale: 7, Seed: 2806335496, Size: 680x1024, Model hash: 9aba26abdf, Model: deliberate_v2, ControlNet 0: "preprocessor: lineart_coarse, model: control_v11p_sd15_lineart [43d4be0d], weight: 0.6, starting/ending: (0.1, 0.8)", Lora hashes: "gaint build-V1: fe6d7d9c9881", Version: v1.4.0, Hashes: {"vae": "c6a580b13a", "model": "9aba26abdf"}`,
		want: Params{
			Prompt: "1girl, <lora:gaint build-V1:0.88>,", NegativePrompt: "lowres, bad anatomy",
			Steps: 36, Sampler: "DPM++ 2M SDE", ScheduleType: "Automatic", CFGScale: 7, Seed: 2806335496, Width: 680, Height: 1024,
			ModelHash: "9aba26abdf", Model: "deliberate_v2", ClipSkip: 1, RNG: "GPU",
			LoraHashes: []LoraHash{{"gaint build-V1", "fe6d7d9c9881"}},
			Extra:      []Field{{"ControlNet 0", "preprocessor: lineart_coarse, model: control_v11p_sd15_lineart [43d4be0d], weight: 0.6, starting/ending: (0.1, 0.8)"}},
			Version:    "v1.4.0",
			Hashes:     []Field{{"vae", "c6a580b13a"}, {"model", "9aba26abdf"}},
		},
		// A1111 1.4 had no schedule types; its DPM++ 2M SDE used the
		// model's sigmas. Read with 1.10's defaults it is Exponential.
		choice: Choice{Scheduler: "dpmpp_2m_sde", Note: `schedule type "Exponential" is not available here; using dpmpp_2m_sde's default sigmas`},
	},
	{
		// Civitai's own generator: its own key order, lowercase keys, an
		// unquoted date with colons, a JSON array and an empty object.
		name: "Civitai generator",
		text: "masterpiece, best quality, 1girl, red hair, forest\n" +
			"Negative prompt: worst quality, low quality, watermark\n" +
			`Steps: 28, CFG scale: 5.5, Sampler: Euler a, Seed: 987654321, workflow: txt2img, Size: 832x1216, draft: false, Clip skip: 2, Created Date: 2024-11-02T10:11:12.1234567Z, Civitai resources: [{"type":"checkpoint","modelVersionId":1190596,"modelName":"WAI-illustrious-SDXL","modelVersionName":"v11.0"},{"type":"lora","weight":0.8,"modelVersionId":456789}], Civitai metadata: {}`,
		want: Params{
			Prompt: "masterpiece, best quality, 1girl, red hair, forest", NegativePrompt: "worst quality, low quality, watermark",
			Steps: 28, Sampler: "Euler a", ScheduleType: "Automatic", CFGScale: 5.5, Seed: 987654321, Width: 832, Height: 1216,
			ClipSkip: 2, RNG: "GPU",
			Extra: []Field{{"workflow", "txt2img"}, {"draft", "false"}, {"Created Date", "2024-11-02T10:11:12.1234567Z"},
				{"Civitai resources", `[{"type":"checkpoint","modelVersionId":1190596,"modelName":"WAI-illustrious-SDXL","modelVersionName":"v11.0"},{"type":"lora","weight":0.8,"modelVersionId":456789}]`},
				{"Civitai metadata", "{}"}},
		},
		choice: Choice{Scheduler: "euler_a"},
	},
	{
		// No negative prompt: create_infotext leaves the line out.
		name: "missing negative prompt",
		text: "a cozy cabin in the woods at dusk\nSteps: 20, Sampler: Euler, Schedule type: Automatic, CFG scale: 7, Seed: 1, Size: 1024x1024, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Version: v1.10.1",
		want: Params{
			Prompt: "a cozy cabin in the woods at dusk",
			Steps:  20, Sampler: "Euler", ScheduleType: "Automatic", CFGScale: 7, Seed: 1, Width: 1024, Height: 1024,
			ModelHash: "31e35c80fc", Model: "sd_xl_base_1.0", ClipSkip: 1, RNG: "GPU", Version: "v1.10.1",
		},
		choice: Choice{Scheduler: "euler"},
	},
	{
		// Multi-line prompt and negative prompt with the old
		// "DPM++ 2M Karras" sampler name (before schedule types, v1.7).
		name: "multi-line prompts, old Karras sampler name",
		text: "score_9, score_8_up, 1girl, <lora:add_detail:0.6>, cherry blossoms\n" +
			"upper body, smile\n" +
			"Negative prompt: score_4, lowres, bad anatomy,\n" +
			"worst quality\n" +
			`Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 3141592653, Size: 832x1216, Model hash: 67ab2fd8ec, Model: ponyDiffusionV6XL, Clip skip: 2, Lora hashes: "add_detail: 7c6bad76eb54", Version: v1.7.0`,
		want: Params{
			Prompt:         "score_9, score_8_up, 1girl, <lora:add_detail:0.6>, cherry blossoms\nupper body, smile",
			NegativePrompt: "score_4, lowres, bad anatomy,\nworst quality",
			Steps:          30, Sampler: "DPM++ 2M", ScheduleType: "Karras", CFGScale: 7, Seed: 3141592653, Width: 832, Height: 1216,
			ModelHash: "67ab2fd8ec", Model: "ponyDiffusionV6XL", ClipSkip: 2, RNG: "GPU",
			LoraHashes: []LoraHash{{"add_detail", "7c6bad76eb54"}}, Version: "v1.7.0",
		},
		choice: Choice{Scheduler: "dpmpp_2m_karras"},
	},
	{
		// stable-diffusion.cpp (examples/cli main.cpp get_image_params):
		// std::to_string floats, lowercase sampler with its schedule
		// appended, RNG "cuda", the model file name with its extension.
		// Euler a has no Karras sigmas here.
		name: "sd.cpp",
		text: "a lovely cat\nSteps: 20, CFG scale: 7.000000, Guidance: 3.500000, Seed: 42, Size: 1024x1024, Model: sd_xl_base_1.0.safetensors, RNG: cuda, Sampler: euler_a karras, Version: stable-diffusion.cpp",
		want: Params{
			Prompt: "a lovely cat",
			Steps:  20, Sampler: "euler_a", ScheduleType: "Karras", CFGScale: 7, Seed: 42, Width: 1024, Height: 1024,
			Model: "sd_xl_base_1.0.safetensors", ClipSkip: 1, RNG: "cuda",
			Extra: []Field{{"Guidance", "3.500000"}}, Version: "stable-diffusion.cpp",
		},
		choice: Choice{Scheduler: "euler_a", Note: "euler_a has no Karras sigmas here; using its default sigmas"},
	},
	{
		// Quoted values with escaped quotes, a newline and a colon
		// (ADetailer prompts), and a Hires prompt.
		name: "quoted values with escapes",
		text: "a knight\n" +
			"Negative prompt: \n" +
			`Steps: 25, Sampler: DPM++ 2M SDE, Schedule type: Karras, CFG scale: 6.5, Seed: 77, Size: 1024x1024, ADetailer prompt: "detailed face, \"stern\" look\nscar: left cheek", Hires prompt: "a knight, armor: engraved", Version: v1.9.4`,
		want: Params{
			Prompt: "a knight",
			Steps:  25, Sampler: "DPM++ 2M SDE", ScheduleType: "Karras", CFGScale: 6.5, Seed: 77, Width: 1024, Height: 1024,
			ClipSkip: 1, RNG: "GPU",
			Extra:   []Field{{"ADetailer prompt", "detailed face, \"stern\" look\nscar: left cheek"}, {"Hires prompt", "a knight, armor: engraved"}},
			Version: "v1.9.4",
		},
		choice: Choice{Scheduler: "dpmpp_2m_sde_karras"},
	},
	{
		// Only two pairs on the last line: parse_generation_parameters
		// keeps it as part of the prompt (it needs 3 matches).
		name: "short last line is prompt",
		text: "a cat sitting on a chair\nstyle: oil painting, mood: calm",
		want: Params{
			Prompt:       "a cat sitting on a chair\nstyle: oil painting, mood: calm",
			ScheduleType: "Automatic", ClipSkip: 1, RNG: "GPU",
		},
		choice: Choice{Scheduler: "euler"},
	},
	{
		// Our own text, read back: the empty Negative prompt line, RNG CPU,
		// "Uniform" for plain DPM++ 2M.
		name: "sdxl-run",
		text: "a photo of an astronaut riding a horse on mars\nNegative prompt: \nSteps: 3, Sampler: DPM++ 2M, Schedule type: Uniform, CFG scale: 5, Seed: 617294798984, Size: 64x64, Model hash: 0123456789, Model: sdxl-small-base, RNG: CPU, Version: sdxl-run (devel)",
		want: Params{
			Prompt: "a photo of an astronaut riding a horse on mars",
			Steps:  3, Sampler: "DPM++ 2M", ScheduleType: "Uniform", CFGScale: 5, Seed: 617294798984, Width: 64, Height: 64,
			ModelHash: "0123456789", Model: "sdxl-small-base", ClipSkip: 1, RNG: "CPU", Version: "sdxl-run (devel)",
		},
		choice: Choice{Scheduler: "dpmpp_2m"},
	},
}

func TestParseWild(t *testing.T) {
	for _, c := range wild {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse(c.text)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("Parse:\n got %#v\nwant %#v", got, c.want)
			}
			sampler := c.want.Sampler
			if sampler == "" {
				sampler = "Euler" // what a caller defaults to
			}
			ch, err := Scheduler(sampler, c.want.ScheduleType)
			if err != nil {
				t.Fatal(err)
			}
			if ch != c.choice {
				t.Errorf("Scheduler(%q, %q) = %+v, want %+v", sampler, c.want.ScheduleType, ch, c.choice)
			}
		})
	}
}

// TestSplitMatchesA1111Pattern: where A1111's pattern applies, Split finds
// the same pairs as re_param.findall would; only JSON object and array
// values differ (A1111 cuts them at the first comma). A one-character key
// ("A: 1") is no pair for A1111 either: its pattern needs two.
func TestSplitMatchesA1111Pattern(t *testing.T) {
	_, _, f := Split("p\nA: 1, Aa: 1, B b: \"x, \\\"y\\\"\", C-d/e: z:w, Ünï cødé: 4, bad\"json: \"\\x\"")
	want := []Field{{"Aa", "1"}, {"B b", "x, \"y\""}, {"C-d/e", "z:w"}, {"Ünï cødé", "4"}, {"json", `"\x"`}}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("got %q\nwant %q", f, want)
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"p\nSteps: many, Sampler: Euler, CFG scale: 7", `"Steps": "many" is not an integer`},
		{"p\nSteps: 20, Sampler: Euler, CFG scale: high", `"CFG scale": "high" is not a number`},
		{"p\nSteps: 20, Seed: -1, CFG scale: 7", `"Seed": "-1" is not a non-negative integer`},
		{"p\nSteps: 20, Size: 512 by 512, CFG scale: 7", `"Size": "512 by 512" is not WIDTHxHEIGHT`},
		{"p\nSteps: 20, Hashes: [1, 2], CFG scale: 7", `"Hashes": "[1, 2]" is not a JSON object`},
	} {
		if _, err := Parse(c.text); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q): %v, want %q", c.text, err, c.want)
		}
	}
}

func TestDict(t *testing.T) {
	d := Dict(wild[2].text)
	for k, v := range map[string]any{
		"Prompt": "score_9, 1girl, solo, looking at viewer, incoming hug,", "Negative prompt": "3d, monochrome, simple background,",
		"Steps": "24", "Size-1": "832", "Size-2": "1216", "Clip skip": "2", "Hires upscale": "1.5",
		"Lora hashes": "EPhsrKafka: dba941975e80", "Hashes": `{"vae": "63aeecb90f", "lora:EPhsrKafka": "5a3385485b", "model": "529c72f6c3"}`,
		"Schedule type": "Automatic", "RNG": "GPU", "Hires resize-1": 0, "Masked area padding": 32,
		"FP8 weight": "Disable", "Refiner switch by sampling steps": false,
	} {
		if d[k] != v {
			t.Errorf("%q = %#v, want %#v", k, d[k], v)
		}
	}
	if _, ok := d["Cache FP16 weight for LoRA"]; ok {
		t.Error("Cache FP16 weight for LoRA set without FP8")
	}
	if d := Dict("x\nSteps: 1, Sampler: Euler, Hypernet: h, CFG scale: 7"); d["Prompt"] != "x<hypernet:h:1.0>" {
		t.Errorf("hypernet prompt %q", d["Prompt"])
	}
}
