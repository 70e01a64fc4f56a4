package sdxl

import (
	"sort"
	"strings"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/capture"
)

// unetModulePaths lists the module paths m's UNet can report to a
// recorder: every module holding parameters, the parameter-less ones the
// forward reports by name, and each one's ".input".
func unetModulePaths(m *Model) []string {
	set := map[string]bool{"time_proj": true, "add_time_proj": true, "conv_act": true}
	for _, p := range nn.Params(m.UNet, "") {
		segs := strings.Split(p.Name, ".")
		for i := 1; i < len(segs); i++ {
			set[strings.Join(segs[:i], ".")] = true
		}
	}
	out := make([]string, 0, 2*len(set))
	for p := range set {
		out = append(out, p, p+".input")
	}
	sort.Strings(out)
	return out
}

// checkDumpPatterns refuses a Dump pattern that matches no module of the
// UNet (it would silently record nothing). Patterns for ControlNets
// ("controlnet...") are left to their models.
func checkDumpPatterns(r *Request, m *Model) error {
	if len(r.Dump) == 0 {
		return nil
	}
	paths := unetModulePaths(m)
	for _, pat := range r.Dump {
		if strings.HasPrefix(pat, "controlnet") {
			continue
		}
		rec, err := capture.New(pat)
		if err != nil {
			return fieldErr("Dump", pat, "%v", err)
		}
		matched := false
		for _, p := range paths {
			if rec.Match(p) {
				matched = true
				break
			}
		}
		if !matched {
			return fieldErr("Dump", pat, "matches no module of the UNet (module paths look like down_blocks.1.attentions.0.transformer_blocks.0.attn2 or up_blocks.0.resnets.1; '*' is one segment, '**' any number)")
		}
	}
	return nil
}
