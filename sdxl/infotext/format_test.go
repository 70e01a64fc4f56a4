package infotext

import (
	"reflect"
	"strings"
	"testing"
)

// The expected strings below are what AUTOMATIC1111 1.10's
// modules/processing.py create_infotext returns for the same settings,
// built by hand from its code:
//
//   - generation_params is a dict in this order: Steps, Sampler, Schedule
//     type, CFG scale, Image CFG scale, Seed, Face restoration, Size, Model
//     hash, Model, FP8 weight, Cache FP16 weight for LoRA, VAE hash, VAE,
//     Variation seed, Variation seed strength, Seed resize from, Denoising
//     strength, Conditional mask weight, Clip skip, ENSD, Token merging
//     ratio, Token merging ratio hr, Init image hash, RNG, Tiling, then
//     **p.extra_generation_params (insertion order: "Lora hashes" from
//     extra_networks_lora.py activate, before sampling; "Refiner" and
//     "Refiner switch at" from sd_samplers_common.py apply_refiner, during
//     sampling), then Version and User;
//   - None values are dropped (Image CFG scale without an edit model, Face
//     restoration off, FP8 off, no variation seed, ENSD 0, no token merging,
//     no init image hash, Tiling off, User off); "Clip skip" is None when
//     <= 1; "RNG" is None for the default "GPU" source; "Denoising strength"
//     comes from extra_generation_params, which
//     StableDiffusionProcessingImg2Img.init fills;
//   - each value goes through infotext_utils.quote (JSON when it holds
//     ',', ':' or '\n', ensure_ascii=False);
//   - the text is f"{prompt}{negative_prompt_text}\n{params}".strip(), with
//     negative_prompt_text = f"\nNegative prompt: {negative}" when the
//     negative prompt is not empty.
//
// Numbers are as the web UI passes them (a slider at 5 arrives as the int
// 5, so "CFG scale: 5"); Model is CheckpointInfo.name_for_extra (file name
// without extension), Model hash its shorthash (sha256[0:10]), Refiner the
// refiner's short_title "name [shorthash]" (sd_models.py CheckpointInfo).
var goldens = []struct {
	name string
	p    Params
	want string
}{
	{"txt2img", Params{
		Prompt: "a photo of an astronaut riding a horse on mars", NegativePrompt: "blurry, low quality",
		Steps: 30, Sampler: "Euler", ScheduleType: "Automatic", CFGScale: 5, Seed: 42, Width: 1024, Height: 1024,
		ModelHash: "31e35c80fc", Model: "sd_xl_base_1.0", ClipSkip: 1, RNG: "CPU", Version: "v1.10.1",
	}, "a photo of an astronaut riding a horse on mars\n" +
		"Negative prompt: blurry, low quality\n" +
		"Steps: 30, Sampler: Euler, Schedule type: Automatic, CFG scale: 5, Seed: 42, Size: 1024x1024, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, RNG: CPU, Version: v1.10.1"},
	{"img2img with a separate VAE", Params{
		Prompt: "a watercolor of a lighthouse", NegativePrompt: "photo",
		Steps: 40, Sampler: "Euler a", ScheduleType: "Automatic", CFGScale: 7.5, Seed: 3141592653, Width: 832, Height: 1216,
		ModelHash: "31e35c80fc", Model: "sd_xl_base_1.0", VAEHash: "235745af8d", VAE: "sdxl_vae.safetensors",
		DenoisingStrength: 0.3, ClipSkip: 1, RNG: "CPU", Version: "v1.10.1",
	}, "a watercolor of a lighthouse\n" +
		"Negative prompt: photo\n" +
		"Steps: 40, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7.5, Seed: 3141592653, Size: 832x1216, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, VAE hash: 235745af8d, VAE: sdxl_vae.safetensors, Denoising strength: 0.3, RNG: CPU, Version: v1.10.1"},
	{"ensemble with LoRAs", Params{
		Prompt: "a lion in the savanna, <lora:add_detail:0.6>", NegativePrompt: "cartoon",
		Steps: 40, Sampler: "Euler", ScheduleType: "Automatic", CFGScale: 5, Seed: 7, Width: 1024, Height: 1024,
		ModelHash: "31e35c80fc", Model: "sd_xl_base_1.0", ClipSkip: 1, RNG: "GPU",
		LoraHashes: []LoraHash{{"add_detail", "7c6bad76eb54"}},
		Refiner:    "sd_xl_refiner_1.0 [7440042bbd]", RefinerSwitchAt: 0.8, Version: "v1.10.1",
	}, "a lion in the savanna, <lora:add_detail:0.6>\n" +
		"Negative prompt: cartoon\n" +
		`Steps: 40, Sampler: Euler, Schedule type: Automatic, CFG scale: 5, Seed: 7, Size: 1024x1024, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Lora hashes: "add_detail: 7c6bad76eb54", Refiner: sd_xl_refiner_1.0 [7440042bbd], Refiner switch at: 0.8, Version: v1.10.1`},
	{"Karras", Params{
		Prompt: "portrait of an old fisherman", NegativePrompt: "smooth skin",
		Steps: 25, Sampler: "DPM++ 2M", ScheduleType: "Karras", CFGScale: 6, Seed: 1234, Width: 896, Height: 1152,
		ModelHash: "31e35c80fc", Model: "sd_xl_base_1.0", ClipSkip: 1, RNG: "CPU", Version: "v1.10.1",
	}, "portrait of an old fisherman\n" +
		"Negative prompt: smooth skin\n" +
		"Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6, Seed: 1234, Size: 896x1152, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, RNG: CPU, Version: v1.10.1"},
	{"clip skip", Params{
		Prompt: "anime girl, cherry blossoms", NegativePrompt: "lowres",
		Steps: 28, Sampler: "Euler a", ScheduleType: "Automatic", CFGScale: 7, Seed: 99, Width: 1024, Height: 1024,
		ModelHash: "31e35c80fc", Model: `C:\models\sdxl, v1`, ClipSkip: 3, RNG: "CPU", Version: "v1.10.1",
	}, "anime girl, cherry blossoms\n" +
		"Negative prompt: lowres\n" +
		`Steps: 28, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 99, Size: 1024x1024, Model hash: 31e35c80fc, Model: "C:\\models\\sdxl, v1", Clip skip: 3, RNG: CPU, Version: v1.10.1`},
	{"Unicode prompt", Params{
		Prompt: "宇宙飛行士が火星で馬に乗る 🚀\nsecond line", NegativePrompt: "ぼやけた, 低品質",
		Steps: 20, Sampler: "UniPC", ScheduleType: "Automatic", CFGScale: 4.5, Seed: 5, Width: 768, Height: 1344,
		ModelHash: "31e35c80fc", Model: "真実モデル_v2", ClipSkip: 1, RNG: "CPU",
		Extra:   []Field{{"Note", "café: \"très\" bien\tok"}},
		Version: "v1.10.1",
	}, "宇宙飛行士が火星で馬に乗る 🚀\nsecond line\n" +
		"Negative prompt: ぼやけた, 低品質\n" +
		`Steps: 20, Sampler: UniPC, Schedule type: Automatic, CFG scale: 4.5, Seed: 5, Size: 768x1344, Model hash: 31e35c80fc, Model: 真実モデル_v2, RNG: CPU, Note: "café: \"très\" bien\tok", Version: v1.10.1`},
}

func TestFormatGolden(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.name, func(t *testing.T) {
			got := Format(g.p)
			if got != g.want {
				t.Fatalf("Format:\n got %q\nwant %q", got, g.want)
			}
			back, err := Parse(got)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, g.p) {
				t.Errorf("Parse(Format(p)):\n got %+v\nwant %+v", back, g.p)
			}
		})
	}
}

// TestFormatEmptyNegative: A1111 leaves the line out for an empty negative
// prompt; we always write it (ComfyUI's importer needs it) and read it
// back as empty.
func TestFormatEmptyNegative(t *testing.T) {
	p := Params{Prompt: "a cat", Steps: 3, Sampler: "Euler", ScheduleType: "Automatic", CFGScale: 5, Seed: 1,
		Width: 64, Height: 64, Model: "sdxl-small-base", ClipSkip: 1, RNG: "CPU"}
	a1111 := "a cat\nSteps: 3, Sampler: Euler, Schedule type: Automatic, CFG scale: 5, Seed: 1, Size: 64x64, Model: sdxl-small-base, RNG: CPU"
	want := strings.Replace(a1111, "\n", "\nNegative prompt: \n", 1)
	got := Format(p)
	if got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	// ComfyUI's importA1111: lastIndexOf("\nSteps:"), then
	// lastIndexOf("\nNegative prompt:") before it, negative = the text
	// between (offset 18).
	steps := strings.LastIndex(got, "\nSteps:")
	negAt := strings.LastIndex(got[:steps], "\nNegative prompt:")
	if steps < 0 || negAt < 0 || strings.TrimSpace(got[negAt+18:steps]) != "" {
		t.Errorf("ComfyUI would not import %q", got)
	}
	for _, text := range []string{got, a1111} {
		back, err := Parse(text)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, p) {
			t.Errorf("Parse(%q) = %+v", text, back)
		}
	}
}

func TestFormatQuirks(t *testing.T) {
	p := Params{Prompt: "  \x1f x", Steps: 1, CFGScale: 7, Seed: 1, RNG: "GPU",
		Extra:  []Field{{"Tiling", "Tiling"}, {"Empty", ""}},
		Hashes: []Field{{"vae", "235745af8d"}, {"lora:a,b", "x\"y"}}}
	want := "x\nNegative prompt: \nSteps: 1, CFG scale: 7, Seed: 1, Tiling, Hashes: {\"vae\": \"235745af8d\", \"lora:a,b\": \"x\\\"y\"}"
	if got := Format(p); got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	// Lora names lose ':' and ',' as A1111's remove_symbols does.
	p = Params{LoraHashes: []LoraHash{{"a:b,c", "0123456789ab"}, {"d", "ba9876543210"}}}
	if got := Format(p); !strings.Contains(got, `Lora hashes: "abc: 0123456789ab, d: ba9876543210"`) {
		t.Errorf("got %q", got)
	}
}
