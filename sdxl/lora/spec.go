package lora

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseSpec reads the CLI's --lora value PATH[:SCALE]. Only a trailing
// ":number" is a scale, so paths containing colons (C:\loras\x.safetensors,
// a:b.safetensors) keep them; the scale defaults to 1.
func ParseSpec(s string) (path string, scale float64, err error) {
	path, scale = s, 1
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		if v, perr := strconv.ParseFloat(s[i+1:], 64); perr == nil {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return "", 0, fmt.Errorf("--lora %q: the scale must be a finite number", s)
			}
			path, scale = s[:i], v
		}
	}
	if path == "" {
		return "", 0, fmt.Errorf("--lora %q: no file (want PATH or PATH:SCALE)", s)
	}
	return path, scale, nil
}
