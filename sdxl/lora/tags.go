package lora

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Tag is one AUTOMATIC1111 extra-network tag of a prompt, <NETWORK:ARGS>,
// with ARGS split at colons.
type Tag struct {
	// Network is the tag's first word: "lora" (or its alias "lyco") for a
	// LoRA; other networks (hypernet, ...) are not LoRAs.
	Network string
	Args    []string
	// Text is the tag as written in the prompt.
	Text string
}

// extraNet is AUTOMATIC1111's re_extra_net (modules/extra_networks.py),
// with Python's Unicode \w spelled out.
var extraNet = regexp.MustCompile(`<([\p{L}\p{N}_]+):([^>]+)>`)

// ParseTags removes every extra-network tag from prompt and returns the
// cleaned prompt and the tags in order, as AUTOMATIC1111's
// extra_networks.parse_prompt does: each tag is replaced by nothing (the
// spaces around it stay), whatever its network.
func ParseTags(prompt string) (string, []Tag) {
	var tags []Tag
	clean := extraNet.ReplaceAllStringFunc(prompt, func(s string) string {
		m := extraNet.FindStringSubmatch(s)
		tags = append(tags, Tag{Network: m[1], Args: strings.Split(m[2], ":"), Text: s})
		return ""
	})
	return clean, tags
}

// IsLoRA reports a tag of the LoRA network (AUTOMATIC1111's Lora extension
// registers "lora" and the alias "lyco").
func (t Tag) IsLoRA() bool { return t.Network == "lora" || t.Network == "lyco" }

// TagLoRA is a LoRA tag's file name and strengths.
type TagLoRA struct {
	Name                 string
	UNetScale, TextScale float64
}

// LoRA reads a LoRA tag as the Lora extension's extra_networks_lora.py
// does: <lora:NAME> is strength 1; <lora:NAME:W> sets both strengths;
// <lora:NAME:TE:UNET> sets them apart; te=W and unet=W override by name.
// Arguments containing exactly one "=" are named (ExtraNetworkParams).
// The dyn= rank truncation is refused: it would change the LoRA.
func (t Tag) LoRA() (TagLoRA, error) {
	var pos []string
	named := map[string]string{}
	for _, a := range t.Args {
		if k, v, ok := strings.Cut(a, "="); ok && !strings.Contains(v, "=") {
			named[k] = v
			continue
		}
		pos = append(pos, a)
	}
	if len(pos) == 0 || pos[0] == "" {
		return TagLoRA{}, fmt.Errorf("prompt tag %s names no LoRA", t.Text)
	}
	out := TagLoRA{Name: pos[0], TextScale: 1}
	num := func(s, what string) (float64, error) {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, fmt.Errorf("prompt tag %s: %s %q is not a number", t.Text, what, s)
		}
		return v, nil
	}
	var err error
	if len(pos) > 1 {
		if out.TextScale, err = num(pos[1], "strength"); err != nil {
			return out, err
		}
	}
	if v, ok := named["te"]; ok {
		if out.TextScale, err = num(v, "te"); err != nil {
			return out, err
		}
	}
	out.UNetScale = out.TextScale
	if len(pos) > 2 {
		if out.UNetScale, err = num(pos[2], "unet strength"); err != nil {
			return out, err
		}
	}
	if v, ok := named["unet"]; ok {
		if out.UNetScale, err = num(v, "unet"); err != nil {
			return out, err
		}
	}
	if _, ok := named["dyn"]; ok || len(pos) > 3 {
		return out, fmt.Errorf("prompt tag %s: dyn (rank truncation) is not supported", t.Text)
	}
	return out, nil
}

// OpenInDir loads the LoRA called name from dir: dir/name.safetensors
// (".safetensors" is not added twice). name may name a file in a
// subfolder but never one outside dir: absolute names, ".." and symbolic
// links leading out of dir (or absolute ones) are refused (os.OpenInRoot).
func OpenInDir(dir, name string) (*File, error) {
	if name == "" {
		return nil, errors.New("empty LoRA name")
	}
	file := name
	if !strings.HasSuffix(strings.ToLower(file), ".safetensors") {
		file += ".safetensors"
	}
	path := filepath.Join(dir, file)
	if !filepath.IsLocal(file) {
		return nil, fmt.Errorf("LoRA %q: the name must stay inside the LoRA folder %s", name, dir)
	}
	f, err := os.OpenInRoot(dir, file)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("LoRA %q: no file %s", name, path)
		}
		return nil, fmt.Errorf("LoRA %q: %s: %v (LoRA names must stay inside %s)", name, path, err, dir)
	}
	defer f.Close()
	return read(path, f)
}
