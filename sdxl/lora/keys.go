package lora

import (
	"fmt"
	"strings"
)

// Component is the part of an SDXL model that a LoRA layer changes.
type Component uint8

const (
	// UNet is the denoising UNet (keys unet.*, lora_unet_*).
	UNet Component = iota
	// TextEncoder is CLIP ViT-L (text_encoder.*, lora_te1_*).
	TextEncoder
	// TextEncoder2 is OpenCLIP bigG (text_encoder_2.*, lora_te2_*).
	TextEncoder2
	numComponents
)

func (c Component) String() string {
	switch c {
	case UNet:
		return "unet"
	case TextEncoder:
		return "text_encoder"
	case TextEncoder2:
		return "text_encoder_2"
	}
	return fmt.Sprintf("Component(%d)", uint8(c))
}

// naming says how a layer's module is spelled in a file.
type naming uint8

const (
	// modulePath: the dotted diffusers/transformers module path, normalised
	// to our parameter names (unet.*, text_encoder*.*, or a bare UNet path).
	modulePath naming = iota
	// kohyaName: kohya sd-scripts' flattened name (dots turned into
	// underscores) of either the diffusers or the original SGM module; it is
	// resolved through a table built from the model (resolve.go).
	kohyaName
)

// role is what one tensor is within its layer.
type role uint8

const (
	roleDown role = iota // LoRA A / lora_down
	roleUp               // LoRA B / lora_up
	roleMid              // LoCon Tucker core (lora_mid)
	roleAlpha
	roleDora // dora_scale: ignored with a warning
	roleHadaW1A
	roleHadaW1B
	roleHadaW2A
	roleHadaW2B
	roleHadaT1
	roleHadaT2
	roleLokrW1
	roleLokrW1A
	roleLokrW1B
	roleLokrW2
	roleLokrW2A
	roleLokrW2B
	roleLokrT2
	numRoles
)

// Spellings of the key suffixes, used as the layer's format name.
const (
	spellPEFT    = "diffusers"     // PEFT lora_A/lora_B (diffusers >= 0.24)
	spellOld     = "diffusers-old" // .lora.down, .lora_linear_layer.down, attention processors
	spellKohya   = "kohya"
	spellSGM     = "kohya-sgm" // kohya names of the original (SGM) UNet modules
	spellLyCORIS = "lycoris"
)

// suffix is one row of the key table: a key ending in text is the given
// role of the module before it. Longer suffixes come first where one ends
// another.
type suffix struct {
	text     string
	role     role
	spelling string
}

var suffixes = []suffix{
	// diffusers/PEFT (peft's get_peft_model_state_dict drops the adapter name).
	{".lora_A.weight", roleDown, spellPEFT},
	{".lora_B.weight", roleUp, spellPEFT},
	// diffusers before PEFT: convert_state_dict_to_diffusers writes these for
	// attention (UNet) and text-encoder layers (loaders/lora_conversion_utils.py,
	// _convert_text_encoder_lora_key).
	{".lora.down.weight", roleDown, spellOld},
	{".lora.up.weight", roleUp, spellOld},
	{".lora_linear_layer.down.weight", roleDown, spellOld},
	{".lora_linear_layer.up.weight", roleUp, spellOld},
	// kohya sd-scripts (networks/lora.py) and LyCORIS LoCon.
	{".lora_down.weight", roleDown, spellKohya},
	{".lora_up.weight", roleUp, spellKohya},
	{".lora_mid.weight", roleMid, spellKohya},
	{".alpha", roleAlpha, spellKohya},
	{".dora_scale", roleDora, spellKohya},
	// LyCORIS (lycoris/modules/loha.py, lokr.py weight_list).
	{".hada_w1_a", roleHadaW1A, spellLyCORIS},
	{".hada_w1_b", roleHadaW1B, spellLyCORIS},
	{".hada_w2_a", roleHadaW2A, spellLyCORIS},
	{".hada_w2_b", roleHadaW2B, spellLyCORIS},
	{".hada_t1", roleHadaT1, spellLyCORIS},
	{".hada_t2", roleHadaT2, spellLyCORIS},
	{".lokr_w1", roleLokrW1, spellLyCORIS},
	{".lokr_w1_a", roleLokrW1A, spellLyCORIS},
	{".lokr_w1_b", roleLokrW1B, spellLyCORIS},
	{".lokr_w2", roleLokrW2, spellLyCORIS},
	{".lokr_w2_a", roleLokrW2A, spellLyCORIS},
	{".lokr_w2_b", roleLokrW2B, spellLyCORIS},
	{".lokr_t2", roleLokrT2, spellLyCORIS},
}

// unsupported are suffixes of adapters we recognise but do not merge; the
// error says which.
var unsupported = []struct{ text, what string }{
	{".lora_magnitude_vector", "PEFT DoRA (lora_magnitude_vector)"},
	{".lora_B.bias", "PEFT LoRA biases (lora_bias)"},
	{".diff", "LyCORIS full weight differences"},
	{".diff_b", "LyCORIS full bias differences"},
	{".on_input", "LyCORIS (IA)^3"},
	{".oft_blocks", "LyCORIS OFT"},
	{".oft_diag", "LyCORIS OFT"},
	{".w_norm", "LyCORIS norm layers"},
	{".b_norm", "LyCORIS norm layers"},
	{".a1.weight", "LyCORIS GLoRA"},
	{".lora_mid.bias", "LoRA biases"},
}

// keyInfo is one classified key.
type keyInfo struct {
	comp     Component
	naming   naming
	module   string // our module path (modulePath) or the flattened name (kohyaName)
	raw      string // the module as the file spells it, after the component prefix
	role     role
	spelling string
	sd1      bool // SD 1.x kohya text-encoder prefix lora_te_
}

// kohyaPrefixes map sd-scripts' name prefixes (LORA_PREFIX_UNET,
// LORA_PREFIX_TEXT_ENCODER1/2 in networks/lora.py; LyCORIS uses the same) to
// components. lora_te_ is SD 1.x's single text encoder.
var kohyaPrefixes = []struct {
	prefix string
	comp   Component
	sd1    bool
}{
	{"lora_unet_", UNet, false},
	{"lora_te1_", TextEncoder, false},
	{"lora_te2_", TextEncoder2, false},
	{"lora_te_", TextEncoder, true},
}

// pathPrefixes map diffusers' component prefixes; the longer one first.
var pathPrefixes = []struct {
	prefix string
	comp   Component
}{
	{"text_encoder_2.", TextEncoder2},
	{"text_encoder.", TextEncoder},
	{"unet.", UNet},
}

// bareUNetRoots are the first segments of an unprefixed UNet module path:
// diffusers accepts UNet LoRA keys without "unet." (load_lora_into_unet).
var bareUNetRoots = []string{"down_blocks.", "mid_block.", "up_blocks.", "conv_in.", "conv_out.",
	"time_embedding.", "add_embedding."}

// classify maps one key to its component, module and role. ok is false for
// a key that is not a LoRA key at all; err reports a recognised but
// unsupported one.
func classify(key string) (ki keyInfo, ok bool, err error) {
	for _, u := range unsupported {
		if strings.HasSuffix(key, u.text) {
			return ki, false, fmt.Errorf("key %q: %s is not supported", key, u.what)
		}
	}
	module, s, found := splitSuffix(key)
	if !found {
		return ki, false, nil
	}
	ki.role, ki.spelling = s.role, s.spelling
	for _, p := range kohyaPrefixes {
		if strings.HasPrefix(module, p.prefix) {
			ki.comp, ki.naming, ki.module, ki.sd1 = p.comp, kohyaName, module[len(p.prefix):], p.sd1
			ki.raw = ki.module
			if ki.comp == UNet && ki.spelling == spellKohya && sgmName(ki.module) {
				ki.spelling = spellSGM
			}
			return ki, ki.module != "", nil
		}
	}
	ki.naming = modulePath
	found = false
	for _, p := range pathPrefixes {
		if strings.HasPrefix(module, p.prefix) {
			ki.comp, module, found = p.comp, module[len(p.prefix):], true
			break
		}
	}
	if !found {
		for _, r := range bareUNetRoots {
			if strings.HasPrefix(module, r) {
				ki.comp, found = UNet, true
				break
			}
		}
	}
	if !found {
		return ki, false, nil
	}
	ki.raw, ki.module = module, normalizePath(ki.comp, module)
	return ki, ki.module != "", nil
}

// splitSuffix finds the row of the suffix table that key ends with. The
// attention-processor spelling (attn1.processor.to_q_lora.down.weight) is
// recognised by its module ending in "_lora".
func splitSuffix(key string) (string, suffix, bool) {
	for _, s := range suffixes {
		if strings.HasSuffix(key, s.text) && len(key) > len(s.text) {
			return key[:len(key)-len(s.text)], s, true
		}
	}
	for _, s := range []suffix{{".down.weight", roleDown, spellOld}, {".up.weight", roleUp, spellOld}} {
		if m, ok := strings.CutSuffix(key, s.text); ok && strings.HasSuffix(m, "_lora") {
			return m, s, true
		}
	}
	return "", suffix{}, false
}

// processorTargets map diffusers' old attention-processor LoRA names to the
// projections they wrap: LoRAAttnProcessor's to_q_lora etc. in the UNet, and
// the text-encoder spelling _convert_text_encoder_lora_key produces.
var processorTargets = map[Component]map[string]string{
	UNet:         {"to_q_lora": "to_q", "to_k_lora": "to_k", "to_v_lora": "to_v", "to_out_lora": "to_out.0"},
	TextEncoder:  {"to_q_lora": "q_proj", "to_k_lora": "k_proj", "to_v_lora": "v_proj", "to_out_lora": "out_proj"},
	TextEncoder2: {"to_q_lora": "q_proj", "to_k_lora": "k_proj", "to_v_lora": "v_proj", "to_out_lora": "out_proj"},
}

// normalizePath turns a diffusers/transformers module path into ours: the
// text encoders' parameters carry no "text_model." prefix (sdxl/clip), and
// attention-processor names become the projection they wrap.
func normalizePath(c Component, m string) string {
	if c != UNet {
		m = strings.TrimPrefix(m, "text_model.")
	}
	i := strings.LastIndexByte(m, '.')
	last := m[i+1:]
	if t, ok := processorTargets[c][last]; ok {
		parent := strings.TrimSuffix(m[:max(i, 0)], ".processor")
		if i < 0 {
			return t
		}
		return parent + "." + t
	}
	return m
}

// sgmName reports a kohya UNet name of the original SGM module tree
// (sdxl_original_unet.py) rather than diffusers': its top-level modules.
func sgmName(flat string) bool {
	for _, p := range []string{"input_blocks_", "middle_block_", "output_blocks_", "time_embed_", "label_emb_", "out_"} {
		if strings.HasPrefix(flat, p) {
			return true
		}
	}
	return false
}
