package main

import (
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/infotext"
	"github.com/sdxl-go/sdxl/sdxl/lora"
)

// loraSpec is one --lora PATH[:SCALE].
type loraSpec struct {
	path  string
	scale float64
	typed string
}

// loraFlags are the --lora values in command-line order.
type loraFlags []loraSpec

func (l *loraFlags) String() string {
	var s []string
	for _, v := range *l {
		s = append(s, v.typed)
	}
	return strings.Join(s, " ")
}

// Set reads PATH[:SCALE]: only a trailing ":number" is a scale, so paths
// with colons work.
func (l *loraFlags) Set(s string) error {
	path, scale, err := lora.ParseSpec(s)
	if err != nil {
		return err
	}
	*l = append(*l, loraSpec{path: path, scale: scale, typed: s})
	return nil
}

// request adds the LoRAs' strengths and names to req (the files come in
// readFiles).
func (l loraFlags) request(req *sdxl.Request) {
	for _, s := range l {
		req.LoRAs = append(req.LoRAs, sdxl.LoRA{Scale: s.scale, Name: loraName(s.path)})
	}
}

// readFiles loads the LoRA files, before any model: a file that is not a
// LoRA is a usage error naming it (its keys are checked against the model
// by the engine).
func (l loraFlags) readFiles(req *sdxl.Request) error {
	for i, s := range l {
		f, err := lora.Load(s.path)
		if err != nil {
			return usageErr("--lora %v", err)
		}
		req.LoRAs[i].File = f
	}
	return nil
}

// loraName is AUTOMATIC1111's name of a LoRA file: its base name without
// the extension.
func loraName(path string) string {
	b := filepath.Base(path)
	return strings.TrimSuffix(b, filepath.Ext(b))
}

// promptWithTags is the prompt as AUTOMATIC1111 would have it: the
// --lora files as <lora:NAME:SCALE> tags after the text (tags typed in
// the prompt are in it already).
func (l loraFlags) promptWithTags(prompt string) string {
	for _, s := range l {
		prompt += " <lora:" + loraName(s.path) + ":" + strconv.FormatFloat(s.scale, 'g', -1, 64) + ">"
	}
	return prompt
}

// loraHashes is AUTOMATIC1111's "Lora hashes" field: "NAME: HASH, ..." with
// HASH the first 12 hex digits of the file's addnet hash (SHA-256 after the
// safetensors header) and ":" and "," taken out of NAME, each name once.
func loraHashes(loras []sdxl.LoRA) []infotext.Field {
	var parts []string
	seen := map[string]bool{}
	for _, l := range loras {
		if l.File == nil {
			continue
		}
		name := strings.NewReplacer(":", "", ",", "").Replace(l.Name)
		if seen[name] {
			continue
		}
		seen[name] = true
		parts = append(parts, name+": "+l.File.AddnetHash()[:12])
	}
	if len(parts) == 0 {
		return nil
	}
	return []infotext.Field{{Key: "Lora hashes", Value: strings.Join(parts, ", ")}}
}

// loraRecord is one applied LoRA in the run record.
type loraRecord struct {
	Path string `json:"path"`
	Name string `json:"name"`
	// Tag is the prompt tag it came from ("" for --lora).
	Tag       string  `json:"tag,omitempty"`
	Scale     float64 `json:"scale"`
	TextScale float64 `json:"text_scale"`
	Format    string  `json:"format"`
	SHA256    string  `json:"sha256"`
	// AddnetHash is AUTOMATIC1111's LoRA hash (see loraHashes), whole.
	AddnetHash string `json:"addnet_hash"`
}

func loraRecords(loras []sdxl.LoRA) []loraRecord {
	var out []loraRecord
	for _, l := range loras {
		if l.File == nil {
			continue
		}
		r := loraRecord{Path: l.File.Path, Name: l.Name, Tag: l.Tag, Scale: l.Scale, TextScale: l.Scale,
			Format: l.File.Format(), SHA256: l.File.SHA256(), AddnetHash: l.File.AddnetHash()}
		if l.TextScale != nil {
			r.TextScale = *l.TextScale
		}
		out = append(out, r)
	}
	return out
}

// loraSettings repeats the recorded --lora files as flags, in order
// (--from-png); LoRAs of prompt tags come back with the prompt.
func loraSettings(recs []loraRecord) []setting {
	var out []setting
	for _, r := range recs {
		if r.Tag == "" {
			out = append(out, setting{"lora", r.Path + ":" + strconv.FormatFloat(r.Scale, 'g', -1, 64)})
		}
	}
	return out
}
