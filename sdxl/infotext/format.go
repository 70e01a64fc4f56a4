package infotext

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// Field is one "Key: value" pair of the parameters line, value unquoted.
type Field struct {
	Key, Value string
}

// LoraHash is one entry of "Lora hashes": the name as the prompt's
// <lora:NAME:W> tag gives it and the first 12 hex digits of the file's
// addnet hash (see package hashes).
type LoraHash struct {
	Name, Hash string
}

// Params are the generation settings an infotext carries. Zero values are
// "absent" and not written, except Steps, CFG scale and Seed, which
// create_infotext always writes.
type Params struct {
	Prompt, NegativePrompt string

	Steps int
	// Sampler is A1111's sampler name ("Euler", "DPM++ 2M"); ScheduleType
	// its schedule ("Automatic", "Karras", "Uniform"). See Sampler.
	Sampler, ScheduleType string
	CFGScale              float64
	Seed                  uint64
	Width, Height         int

	// ModelHash is the first 10 hex digits of the checkpoint's SHA-256
	// (A1111's shorthash); Model its name: the file name without extension,
	// or a diffusers folder's name.
	ModelHash, Model string
	// VAEHash and VAE describe a separately loaded VAE (VAE is the file
	// name with its extension, as A1111's sd_vae.get_loaded_vae_name).
	VAEHash, VAE string

	// DenoisingStrength is img2img's strength; 0 for text to image.
	DenoisingStrength float64
	// ClipSkip is A1111's "Clip skip" (CLIP_stop_at_last_layers: use
	// hidden_states[-ClipSkip]); 1, the default, means none and is not
	// written. diffusers' SDXL clip_skip k is A1111's k+2 (see ClipSkipFor).
	ClipSkip int
	// RNG is A1111's noise source: "GPU" (the default, not written), "CPU"
	// or "NV".
	RNG string

	// LoraHashes are written as `Lora hashes: "NAME: HASH, ..."`.
	LoraHashes []LoraHash
	// Refiner is A1111's refiner short title, "NAME [HASH10]" (or "NAME"),
	// and RefinerSwitchAt the fraction of the steps the base runs.
	Refiner         string
	RefinerSwitchAt float64
	// Extra holds every other pair, in order; written after the refiner.
	Extra []Field
	// Version is the program that made the image ("v1.10.1",
	// "sdxl-run v1.2.0").
	Version string
	// Hashes is the Civitai extension's "Hashes: {...}" object (model, vae,
	// lora:NAME, embed:NAME to short hashes), in file order. It follows
	// Version, as the extension appends it to the finished text.
	Hashes []Field
}

// Format writes p as create_infotext orders and quotes it; see the package
// documentation for the one difference (the Negative prompt line is
// always there).
func Format(p Params) string {
	var line fieldWriter
	line.add("Steps", strconv.Itoa(p.Steps))
	line.add("Sampler", p.Sampler)
	line.add("Schedule type", p.ScheduleType)
	line.add("CFG scale", FormatFloat(p.CFGScale))
	line.add("Seed", strconv.FormatUint(p.Seed, 10))
	if p.Width > 0 && p.Height > 0 {
		line.add("Size", fmt.Sprintf("%dx%d", p.Width, p.Height))
	}
	line.add("Model hash", p.ModelHash)
	line.add("Model", p.Model)
	line.add("VAE hash", p.VAEHash)
	line.add("VAE", p.VAE)
	if p.DenoisingStrength != 0 {
		line.add("Denoising strength", FormatFloat(p.DenoisingStrength))
	}
	if p.ClipSkip > 1 {
		line.add("Clip skip", strconv.Itoa(p.ClipSkip))
	}
	if p.RNG != "GPU" {
		line.add("RNG", p.RNG)
	}
	line.add("Lora hashes", formatLoraHashes(p.LoraHashes))
	line.add("Refiner", p.Refiner)
	if p.RefinerSwitchAt != 0 {
		line.add("Refiner switch at", FormatFloat(p.RefinerSwitchAt))
	}
	for _, f := range p.Extra {
		line.add(f.Key, f.Value)
	}
	line.add("Version", p.Version)
	if len(p.Hashes) > 0 {
		line.addRaw("Hashes", jsonObject(p.Hashes))
	}
	return pyStrip(p.Prompt + "\nNegative prompt: " + p.NegativePrompt + "\n" + line.String())
}

// fieldWriter joins pairs with ", " as create_infotext does: a pair whose
// key equals its value is written as the key alone, empty values are
// skipped (A1111 skips None), others are "Key: quote(value)".
type fieldWriter struct{ sb strings.Builder }

func (w *fieldWriter) add(k, v string) {
	if v != "" {
		w.addRaw(k, Quote(v))
	}
}

func (w *fieldWriter) addRaw(k, v string) {
	if w.sb.Len() > 0 {
		w.sb.WriteString(", ")
	}
	w.sb.WriteString(k)
	if k != v {
		w.sb.WriteString(": ")
		w.sb.WriteString(v)
	}
}

func (w *fieldWriter) String() string { return w.sb.String() }

// formatLoraHashes is the Lora extension's value: "NAME: HASH" joined by
// ", ", with ':' and ',' removed from names (extra_networks_lora.py
// ExtraNetworkLora.activate, remove_symbols).
func formatLoraHashes(hs []LoraHash) string {
	parts := make([]string, len(hs))
	for i, h := range hs {
		name := strings.NewReplacer(":", "", ",", "").Replace(h.Name)
		parts[i] = name + ": " + h.Hash
	}
	return strings.Join(parts, ", ")
}

// jsonObject is Python's json.dumps of a dict of strings with
// ensure_ascii=False and the default ", " / ": " separators, which is what
// quote() produces for the Civitai extension's Hashes dict.
func jsonObject(fs []Field) string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, f := range fs {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(pyJSONString(f.Key))
		sb.WriteString(": ")
		sb.WriteString(pyJSONString(f.Value))
	}
	sb.WriteByte('}')
	return sb.String()
}

// FormatFloat writes a number as A1111's infotexts show values from its
// web UI: 5 for 5.0 (JSON numbers without a fraction arrive in Python as
// ints), 7.5 for 7.5, never an exponent.
func FormatFloat(v float64) string {
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// Quote is infotext_utils.quote: the value unchanged unless it contains
// ',', ':' or '\n', else json.dumps(value, ensure_ascii=False).
func Quote(v string) string {
	if !strings.ContainsAny(v, ",:\n") {
		return v
	}
	return pyJSONString(v)
}

// pyJSONString is Python's json.dumps of a str with ensure_ascii=False:
// quotes, backslashes and control characters below 0x20 are escaped, all
// other characters (non-ASCII included) are written as they are. Go's
// encoding/json differs (it escapes <, >, &, U+2028 and U+2029).
func pyJSONString(s string) string {
	var sb strings.Builder
	sb.Grow(len(s) + 2)
	sb.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			sb.WriteString(`\"`)
		case '\\':
			sb.WriteString(`\\`)
		case '\n':
			sb.WriteString(`\n`)
		case '\r':
			sb.WriteString(`\r`)
		case '\t':
			sb.WriteString(`\t`)
		case '\b':
			sb.WriteString(`\b`)
		case '\f':
			sb.WriteString(`\f`)
		default:
			if r < 0x20 {
				fmt.Fprintf(&sb, `\u%04x`, r)
			} else {
				sb.WriteRune(r)
			}
		}
	}
	sb.WriteByte('"')
	return sb.String()
}

// pyIsSpace is Python's str.isspace for one character: Go's unicode.IsSpace
// plus the information separators U+001C..U+001F.
func pyIsSpace(r rune) bool {
	return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f
}

// pyStrip is Python's str.strip() with no arguments.
func pyStrip(s string) string {
	return strings.TrimFunc(s, pyIsSpace)
}
