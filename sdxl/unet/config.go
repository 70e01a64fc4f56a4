package unet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
)

// parseConfig reads a diffusers unet/config.json into arch with
// UNet2DConditionModel's defaults for absent keys. A key present with the
// value null means None, as in from_config (e.g. "mid_block_type": null
// removes the mid block). Unknown keys are ignored like diffusers does.
func parseConfig(data []byte) (*arch, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("parsing UNet config: %w", err)
	}
	c := cfgReader{raw: raw}
	a := &arch{
		inChannels:        c.int("in_channels", 4),
		outChannels:       c.int("out_channels", 4),
		centerInput:       c.bool("center_input_sample", false),
		flipSinToCos:      c.bool("flip_sin_to_cos", true),
		freqShift:         c.float("freq_shift", 0),
		downTypes:         c.strings("down_block_types", []string{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}),
		upTypes:           c.strings("up_block_types", []string{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}),
		midType:           c.str("mid_block_type", "UNetMidBlock2DCrossAttn"),
		blockOut:          c.ints("block_out_channels", []int{320, 640, 1280, 1280}),
		downsamplePadding: c.int("downsample_padding", 1),
		midScale:          float32(c.float("mid_block_scale_factor", 1)),
		groups:            c.int("norm_num_groups", 32),
		eps:               float32(c.float("norm_eps", 1e-5)),
		linearProj:        c.bool("use_linear_projection", false),
		resnetOutScale:    float32(c.float("resnet_out_scale_factor", 1)),
		convInKernel:      c.int("conv_in_kernel", 3),
		convOutKernel:     c.int("conv_out_kernel", 3),
		addEmbedType:      c.str("addition_embed_type", ""),
		addTimeDim:        c.int("addition_time_embed_dim", 0),
		projClassInDim:    c.int("projection_class_embeddings_input_dim", 0),
	}
	if ss := c.intOrList("sample_size", 0); len(ss) > 0 {
		a.sampleSize = ss[0] // pipelines read an int; a [h, w] pair is not used by SDXL
	}
	n := len(a.downTypes)
	layers := c.intOrList("layers_per_block", 2)
	cross := c.intOrList("cross_attention_dim", 1280)
	headDim := c.intOrList("attention_head_dim", 8)
	if c.present("num_attention_heads") {
		// diffusers raises here too: the field's meaning was never fixed.
		c.fail(fmt.Errorf("num_attention_heads is set; diffusers rejects it (attention_head_dim holds the head count)"))
	}
	onlyCross := c.boolOrList("only_cross_attention", false)
	if c.err != nil {
		return nil, c.err
	}
	var err error
	if a.layersPerBlock, err = expandInts("layers_per_block", layers, n); err != nil {
		return nil, err
	}
	if a.crossDim, err = expandInts("cross_attention_dim", cross, n); err != nil {
		return nil, err
	}
	if a.heads, err = expandInts("attention_head_dim", headDim, n); err != nil {
		return nil, err
	}
	switch len(onlyCross) {
	case 1:
		a.onlyCross = make([]bool, n)
		for i := range a.onlyCross {
			a.onlyCross[i] = onlyCross[0]
		}
		a.midOnlyCross = onlyCross[0]
	case n:
		a.onlyCross = onlyCross
	default:
		return nil, fmt.Errorf("only_cross_attention has %d values, want 1 or %d", len(onlyCross), n)
	}
	if c.present("mid_block_only_cross_attention") {
		a.midOnlyCross = c.bool("mid_block_only_cross_attention", false)
	}

	// time embedding
	if t := c.str("time_embedding_type", "positional"); t != "positional" {
		return nil, fmt.Errorf("time_embedding_type %q is not supported (positional)", t)
	}
	a.timeInputDim = a.blockOut[0]
	a.timeEmbedDim = c.int("time_embedding_dim", 4*a.blockOut[0])
	if a.timeEmbedDim == 0 {
		a.timeEmbedDim = 4 * a.blockOut[0]
	}

	if err := a.transformerLayers(&c); err != nil {
		return nil, err
	}

	// Options SDXL does not use are refused rather than silently ignored.
	for _, k := range []string{"class_embed_type", "num_class_embeds", "encoder_hid_dim", "encoder_hid_dim_type",
		"time_cond_proj_dim", "time_embedding_act_fn", "timestep_post_act", "cross_attention_norm"} {
		if c.present(k) {
			return nil, fmt.Errorf("%s = %s is not supported (SDXL leaves it null)", k, raw[k])
		}
	}
	if act := c.str("act_fn", "silu"); act != "silu" && act != "swish" {
		return nil, fmt.Errorf("act_fn %q is not supported (silu)", act)
	}
	if s := c.str("resnet_time_scale_shift", "default"); s != "default" {
		return nil, fmt.Errorf("resnet_time_scale_shift %q is not supported (default)", s)
	}
	if t := c.str("attention_type", "default"); t != "default" {
		return nil, fmt.Errorf("attention_type %q is not supported (default)", t)
	}
	if c.bool("dual_cross_attention", false) {
		return nil, fmt.Errorf("dual_cross_attention is not supported")
	}
	if c.bool("resnet_skip_time_act", false) {
		return nil, fmt.Errorf("resnet_skip_time_act is not supported")
	}
	if c.err != nil {
		return nil, c.err
	}
	if err := a.validate(); err != nil {
		return nil, err
	}
	return a, nil
}

// transformerLayers expands transformer_layers_per_block (an int, a list
// per level, or a list of lists per level and resnet) and
// reverse_transformer_layers_per_block as diffusers' constructor does.
func (a *arch) transformerLayers(c *cfgReader) error {
	n := len(a.downTypes)
	perLevel := make([]json.RawMessage, n)
	raw, ok := c.raw["transformer_layers_per_block"]
	if !ok || isNull(raw) {
		raw = json.RawMessage("1")
	}
	nested := false
	if isList(raw) {
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return fmt.Errorf("transformer_layers_per_block: %w", err)
		}
		if len(items) != n {
			return fmt.Errorf("transformer_layers_per_block has %d values, want %d", len(items), n)
		}
		for i, it := range items {
			perLevel[i] = it
			nested = nested || isList(it)
		}
	} else {
		for i := range perLevel {
			perLevel[i] = raw
		}
	}
	expand := func(name string, r json.RawMessage, count int) ([]int, error) {
		v, err := decodeIntOrList(r)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if len(v) == 1 && !isList(r) {
			out := make([]int, count)
			for i := range out {
				out[i] = v[0]
			}
			return out, nil
		}
		if len(v) != count {
			return nil, fmt.Errorf("%s has %d values for %d layers", name, len(v), count)
		}
		return v, nil
	}
	a.tLayersDown = make([][]int, n)
	for i := range n {
		v, err := expand(fmt.Sprintf("transformer_layers_per_block[%d]", i), perLevel[i], a.layersPerBlock[i])
		if err != nil {
			return err
		}
		a.tLayersDown[i] = v
	}
	// The mid block has one transformer; a per-resnet list for the last
	// level is indexed by it, so only its first entry counts.
	mid, err := decodeIntOrList(perLevel[n-1])
	if err != nil || len(mid) == 0 {
		return fmt.Errorf("transformer_layers_per_block[-1] (mid block): %v", err)
	}
	a.tLayersMid = mid[:1]
	rev, hasRev := c.raw["reverse_transformer_layers_per_block"]
	hasRev = hasRev && !isNull(rev)
	if nested && !hasRev {
		return fmt.Errorf("transformer_layers_per_block is a list of lists: reverse_transformer_layers_per_block is required (as in diffusers)")
	}
	upLevel := make([]json.RawMessage, n)
	if hasRev {
		var items []json.RawMessage
		if err := json.Unmarshal(rev, &items); err != nil || len(items) != n {
			return fmt.Errorf("reverse_transformer_layers_per_block must be a list of %d entries", n)
		}
		copy(upLevel, items)
	} else {
		for i := range n {
			upLevel[i] = perLevel[n-1-i]
		}
	}
	a.tLayersUp = make([][]int, n)
	for i := range n {
		v, err := expand(fmt.Sprintf("up transformer layers [%d]", i), upLevel[i], a.layersPerBlock[n-1-i]+1)
		if err != nil {
			return err
		}
		a.tLayersUp[i] = v
	}
	return nil
}

// cfgReader reads typed values from a raw JSON object, keeping the first
// error.
type cfgReader struct {
	raw map[string]json.RawMessage
	err error
}

func (c *cfgReader) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// present reports a key that is set to something other than null.
func (c *cfgReader) present(k string) bool {
	v, ok := c.raw[k]
	return ok && !isNull(v)
}

func isNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }
func isList(v json.RawMessage) bool {
	t := bytes.TrimSpace(v)
	return len(t) > 0 && t[0] == '['
}

func (c *cfgReader) decode(k string, dst any) bool {
	v, ok := c.raw[k]
	if !ok {
		return false
	}
	if err := json.Unmarshal(v, dst); err != nil {
		c.fail(fmt.Errorf("config key %s = %s: %w", k, v, err))
		return false
	}
	return true
}

func (c *cfgReader) int(k string, def int) int {
	if !c.present(k) {
		return def
	}
	var f float64
	if c.decode(k, &f) {
		if f != math.Trunc(f) {
			c.fail(fmt.Errorf("config key %s = %v: want an integer", k, f))
		}
		return int(f)
	}
	return def
}

func (c *cfgReader) float(k string, def float64) float64 {
	if !c.present(k) {
		return def
	}
	var f float64
	if c.decode(k, &f) {
		return f
	}
	return def
}

func (c *cfgReader) bool(k string, def bool) bool {
	if !c.present(k) {
		return def
	}
	var b bool
	if c.decode(k, &b) {
		return b
	}
	return def
}

// str returns def when the key is absent and "" when it is null.
func (c *cfgReader) str(k string, def string) string {
	v, ok := c.raw[k]
	if !ok {
		return def
	}
	if isNull(v) {
		return ""
	}
	var s string
	if c.decode(k, &s) {
		return s
	}
	return def
}

func (c *cfgReader) strings(k string, def []string) []string {
	if !c.present(k) {
		return def
	}
	var s []string
	if c.decode(k, &s) {
		return s
	}
	return def
}

func (c *cfgReader) ints(k string, def []int) []int {
	if !c.present(k) {
		return def
	}
	var s []int
	if c.decode(k, &s) {
		return s
	}
	return def
}

func (c *cfgReader) intOrList(k string, def int) []int {
	if !c.present(k) {
		return []int{def}
	}
	v, err := decodeIntOrList(c.raw[k])
	if err != nil {
		c.fail(fmt.Errorf("config key %s: %w", k, err))
		return []int{def}
	}
	return v
}

func (c *cfgReader) boolOrList(k string, def bool) []bool {
	if !c.present(k) {
		return []bool{def}
	}
	if isList(c.raw[k]) {
		var s []bool
		if c.decode(k, &s) {
			return s
		}
		return []bool{def}
	}
	return []bool{c.bool(k, def)}
}

func decodeIntOrList(v json.RawMessage) ([]int, error) {
	if isList(v) {
		var s []int
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, fmt.Errorf("want an integer or a list of integers, got %s", v)
		}
		return s, nil
	}
	var i int
	if err := json.Unmarshal(v, &i); err != nil {
		return nil, fmt.Errorf("want an integer or a list of integers, got %s", v)
	}
	return []int{i}, nil
}
