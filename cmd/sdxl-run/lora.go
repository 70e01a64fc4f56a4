package main

import (
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/lora"
	"github.com/sdxl-go/sdxl/sdxl/pngmeta"
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

// loraSettings repeats the recorded --lora files as flags, in order
// (--from-png); LoRAs of prompt tags come back with the prompt.
func loraSettings(recs []pngmeta.LoRARecord) []setting {
	var out []setting
	for _, r := range recs {
		if r.Tag == "" {
			out = append(out, setting{"lora", r.Path + ":" + strconv.FormatFloat(r.Scale, 'g', -1, 64)})
		}
	}
	return out
}
