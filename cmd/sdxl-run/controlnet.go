package main

import (
	"flag"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/sdxl/infotext"
)

// controlGroup is one --controlnet and the --control-* flags after it.
type controlGroup struct {
	path, image       string
	scale, start, end optFloat
}

// controlFlags collect the ControlNet groups in command-line order: each
// --controlnet starts a group, the --control-* flags that follow set it.
type controlFlags struct {
	groups    []controlGroup
	guessMode bool
}

func (c *controlFlags) register(fs *flag.FlagSet) {
	fs.Var(controlNetFlag{c}, "controlnet", "ControlNet folder or .safetensors file, followed by its --control-image and optional --control-scale, --control-start, --control-end; repeat the group for several ControlNets (their effects add up)")
	fs.Var(controlFieldFlag{c, "control-image"}, "control-image", "control image (PNG or JPEG) of the preceding --controlnet, resized to the output size; its size is the default output size")
	fs.Var(controlFieldFlag{c, "control-scale"}, "control-scale", "conditioning scale of the preceding --controlnet (default 1)")
	fs.Var(controlFieldFlag{c, "control-start"}, "control-start", "fraction of the steps where the preceding --controlnet starts acting (default 0)")
	fs.Var(controlFieldFlag{c, "control-end"}, "control-end", "fraction of the steps where the preceding --controlnet stops acting (default 1)")
	fs.BoolVar(&c.guessMode, "guess-mode", false, "ControlNet guess mode: the ControlNets see only the prompt's half of the batch (diffusers' guess_mode)")
}

type controlNetFlag struct{ c *controlFlags }

func (f controlNetFlag) String() string {
	if f.c == nil || len(f.c.groups) == 0 {
		return ""
	}
	return f.c.groups[len(f.c.groups)-1].path
}

func (f controlNetFlag) Set(s string) error {
	if s == "" {
		return fmt.Errorf("want a ControlNet folder or file")
	}
	f.c.groups = append(f.c.groups, controlGroup{path: s})
	return nil
}

// controlFieldFlag sets one field of the last group.
type controlFieldFlag struct {
	c    *controlFlags
	name string
}

func (f controlFieldFlag) String() string { return "" }

func (f controlFieldFlag) Set(s string) error {
	if len(f.c.groups) == 0 {
		return fmt.Errorf("give it after the --controlnet it belongs to")
	}
	g := &f.c.groups[len(f.c.groups)-1]
	if f.name == "control-image" {
		if g.image != "" {
			return fmt.Errorf("--controlnet %s already has --control-image %s (repeat --controlnet for another ControlNet)", g.path, g.image)
		}
		g.image = s
		return nil
	}
	v := map[string]*optFloat{"control-scale": &g.scale, "control-start": &g.start, "control-end": &g.end}[f.name]
	if v.set {
		return fmt.Errorf("given twice for --controlnet %s (repeat --controlnet for another ControlNet)", g.path)
	}
	return v.Set(s)
}

// check validates the groups before anything is loaded.
func (c *controlFlags) check() error {
	for _, g := range c.groups {
		if g.image == "" {
			return usageErr("--controlnet %s: give its --control-image after it", g.path)
		}
	}
	if c.guessMode && len(c.groups) == 0 {
		return usageErr("--guess-mode applies to ControlNets: give --controlnet")
	}
	return nil
}

// request adds the ControlNets' values to req (the models and images come
// later: loadControlNets, readInputs).
func (c *controlFlags) request(req *sdxl.Request) {
	req.GuessMode = c.guessMode
	for _, g := range c.groups {
		req.ControlNets = append(req.ControlNets, sdxl.ControlNet{Scale: g.scale.v, Start: g.start.v, End: g.end.v})
	}
}

// readImages reads the control images into req.
func (c *controlFlags) readImages(req *sdxl.Request) error {
	for i, g := range c.groups {
		img, err := imageio.LoadLimit(g.image, sdxl.DefaultMaxPixels)
		if err != nil {
			return usageErr("--control-image %s: %v", g.image, err)
		}
		req.ControlNets[i].Image = img
	}
	return nil
}

// loadModels loads the ControlNets for the engine's base, before any work.
func (c *controlFlags) loadModels(e *sdxl.Engine, req *sdxl.Request) error {
	for i, g := range c.groups {
		m, err := e.LoadControlNet(g.path)
		if err != nil {
			return usageErr("--controlnet: %v", err) // err names the path
		}
		req.ControlNets[i].Model = m
	}
	return nil
}

// files lists the ControlNets' weight files (for the run record).
func (c *controlFlags) files(req sdxl.Request) []string {
	var out []string
	for _, u := range req.ControlNets {
		if u.Model != nil {
			out = append(out, u.Model.Files...)
		}
	}
	return out
}

// parameters are AUTOMATIC1111's "ControlNet <i>" infotext fields.
func (c *controlFlags) parameters() []infotext.Field {
	var out []infotext.Field
	for i, g := range c.groups {
		weight, end := 1.0, 1.0
		if g.scale.set {
			weight = g.scale.v
		}
		if g.end.set {
			end = g.end.v
		}
		v := fmt.Sprintf("Module: none, Model: %s, Weight: %s, Guidance Start: %s, Guidance End: %s",
			filepath.Base(g.path), strconv.FormatFloat(weight, 'g', -1, 64), strconv.FormatFloat(g.start.v, 'g', -1, 64), strconv.FormatFloat(end, 'g', -1, 64))
		out = append(out, infotext.Field{Key: fmt.Sprintf("ControlNet %d", i), Value: v})
	}
	return out
}

// controlRecord is one --controlnet group in the run record, its values as
// typed ("" when not given).
type controlRecord struct {
	Path  string `json:"controlnet"`
	Image string `json:"control_image"`
	Scale string `json:"control_scale,omitempty"`
	Start string `json:"control_start,omitempty"`
	End   string `json:"control_end,omitempty"`
}

func (c *controlFlags) records() []controlRecord {
	var out []controlRecord
	for _, g := range c.groups {
		r := controlRecord{Path: g.path, Image: g.image}
		for _, f := range []struct {
			v   optFloat
			dst *string
		}{{g.scale, &r.Scale}, {g.start, &r.Start}, {g.end, &r.End}} {
			if f.v.set {
				*f.dst = f.v.String()
			}
		}
		out = append(out, r)
	}
	return out
}

// controlGroupFlags are the flags of a --controlnet group.
var controlGroupFlags = map[string]bool{"controlnet": true, "control-image": true, "control-scale": true, "control-start": true, "control-end": true}

// controlSettings repeats recorded groups as flags, in order (--from-png).
func controlSettings(recs []controlRecord) []setting {
	var out []setting
	for _, r := range recs {
		out = append(out, setting{"controlnet", r.Path}, setting{"control-image", r.Image})
		for _, f := range []setting{{"control-scale", r.Scale}, {"control-start", r.Start}, {"control-end", r.End}} {
			if f.value != "" {
				out = append(out, f)
			}
		}
	}
	return out
}
