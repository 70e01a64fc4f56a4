// Package infotext reads and writes AUTOMATIC1111's "infotext", the
// generation parameters that A1111, Forge, sd.cpp, Civitai and ComfyUI's
// importer store in a PNG's "parameters" text chunk:
//
//	a photo of an astronaut riding a horse
//	Negative prompt: blurry
//	Steps: 30, Sampler: Euler, Schedule type: Automatic, CFG scale: 5, Seed: 42, Size: 1024x1024, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, RNG: CPU, Version: sdxl-run v1.2.0
//
// Format writes a Params the way A1111 1.10's modules/processing.py
// create_infotext does: the prompt, the negative prompt line, then one
// line of "Key: value" pairs joined by ", " in create_infotext's order
// (Steps, Sampler, Schedule type, CFG scale, Seed, Size, Model hash, Model,
// VAE hash, VAE, Denoising strength, Clip skip, RNG, the extra parameters
// such as Lora hashes and Refiner, Version), values holding ',', ':' or a
// newline JSON-quoted (modules/infotext_utils.py quote), empty values left
// out, and the whole text stripped. One deliberate difference: the
// "Negative prompt:" line is always written, even empty, because ComfyUI's
// importer (ComfyUI_frontend src/scripts/pnginfo.ts importA1111) builds a
// graph only when both "\nSteps:" and "\nNegative prompt:" occur.
//
// Parse reads any infotext the way modules/infotext_utils.py
// parse_generation_parameters does (the last line holds the parameters
// only when its key-value pattern matches at least 3 times; lines before
// "Negative prompt:" are the prompt; quoted values are unquoted; missing
// Clip skip, Schedule type and RNG take A1111's defaults), plus the quirks
// of real files: the Civitai extension's unquoted "Hashes: {...}" JSON
// object, Civitai's "Civitai resources: [...]" array, old sampler names
// carrying their schedule ("DPM++ 2M Karras", sd.cpp's "euler_a karras").
// Dict returns the dictionary parse_generation_parameters returns, for
// the A1111 API's /sdapi/v1/png-info.
//
// Sampler and Scheduler map between this project's scheduler names
// (sched.Names() with the --karras flag) and A1111's sampler and schedule
// type names.
package infotext
