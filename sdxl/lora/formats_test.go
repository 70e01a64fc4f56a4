package lora_test

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/sdxl/lora"
)

// The formats diffusers cannot load (LyCORIS LoHa and LoKr, Tucker cores)
// and the spellings it loads only partly, checked against float64 deltas
// computed here from the published formulas, independently of the package.

// Weights of the small base used below, by component-prefixed name.
const (
	toQ   = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight" // [64, 64]
	toK   = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k.weight" // [64, 64]
	toOut = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0.weight"
	ffIn  = "unet.down_blocks.2.attentions.0.transformer_blocks.0.ff.net.0.proj.weight" // [512, 64]
	conv1 = "unet.down_blocks.1.resnets.0.conv1.weight"                                 // [64, 32, 3, 3]
	te1FC = "text_encoder.encoder.layers.0.mlp.fc1.weight"                              // [64, 16]
	te1Q  = "text_encoder.encoder.layers.0.self_attn.q_proj.weight"                     // [16, 16]
	te2V  = "text_encoder_2.encoder.layers.1.self_attn.v_proj.weight"                   // [32, 32]
)

// rnd is a deterministic source of test tensors.
type rnd struct{ r *rand.Rand }

func newRnd(seed uint64) *rnd { return &rnd{rand.New(rand.NewPCG(seed, 7))} }

// t returns a named random tensor (values ~ N(0, std²)).
func (g *rnd) t(name string, std float64, shape ...int) safetensors.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(g.r.NormFloat64() * std)
	}
	return safetensors.Tensor{Name: name, Shape: shape, Data: v}
}

func scalar(name string, v float32) safetensors.Tensor {
	return safetensors.Tensor{Name: name, Shape: []int{}, Data: []float32{v}}
}

// writeFile writes tensors as a LoRA file and loads it.
func writeFile(t *testing.T, name string, ts []safetensors.Tensor, md map[string]string) *lora.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := safetensors.WriteFile(p, ts, md); err != nil {
		t.Fatal(err)
	}
	f, err := lora.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// mat64 is a float64 matrix for the reference formulas.
type mat64 struct {
	r, c int
	v    []float64
}

func m64(t safetensors.Tensor, rows int) mat64 {
	v := make([]float64, len(t.Data))
	for i, x := range t.Data {
		v[i] = float64(x)
	}
	return mat64{rows, len(v) / rows, v}
}

func (a mat64) at(i, j int) float64 { return a.v[i*a.c+j] }

func mul(a, b mat64) mat64 {
	out := mat64{a.r, b.c, make([]float64, a.r*b.c)}
	for i := range a.r {
		for j := range b.c {
			s := 0.0
			for k := range a.c {
				s += a.at(i, k) * b.at(k, j)
			}
			out.v[i*b.c+j] = s
		}
	}
	return out
}

func (a mat64) scaled(s float64) []float64 {
	out := make([]float64, len(a.v))
	for i, x := range a.v {
		out[i] = x * s
	}
	return out
}

// tucker is LyCORIS's einsum "i j k, j n, i o -> o n k" for a core t
// [ri, rj, kk], wa [ri, O], wb [rj, N]: result [O, N·kk].
func tucker(tc safetensors.Tensor, wa, wb mat64) mat64 {
	ri, rj := tc.Shape[0], tc.Shape[1]
	kk := len(tc.Data) / (ri * rj)
	out := mat64{wa.c, wb.c * kk, make([]float64, wa.c*wb.c*kk)}
	for o := range wa.c {
		for n := range wb.c {
			for k := range kk {
				s := 0.0
				for i := range ri {
					for j := range rj {
						s += float64(tc.Data[(i*rj+j)*kk+k]) * wb.at(j, n) * wa.at(i, o)
					}
				}
				out.v[(o*wb.c+n)*kk+k] = s
			}
		}
	}
	return out
}

// kron is the Kronecker product of a [A, C] and b [B, D]: [A·B, C·D].
func kron(a, b mat64) mat64 {
	out := mat64{a.r * b.r, a.c * b.c, make([]float64, a.r*b.r*a.c*b.c)}
	for i := range a.r {
		for j := range b.r {
			for x := range a.c {
				for y := range b.c {
					out.v[(i*b.r+j)*out.c+x*b.c+y] = a.at(i, x) * b.at(j, y)
				}
			}
		}
	}
	return out
}

// checkMerge applies uses to the small base and checks that exactly the
// weights of want changed, each by want's delta (max abs error tol), then
// that Clear restores every weight bit for bit.
func checkMerge(t *testing.T, uses []lora.Use, want map[string][]float64, tol float64) {
	t.Helper()
	tg := targetOf(loadBase(t))
	b := tg.UNet.ConvIn.Weight.Backend()
	before := map[string][]float32{}
	for _, p := range tg.Params() {
		before[p.Name] = b.ToFloat32(p.Tensor())
	}
	ap, err := lora.NewApplier(tg)
	if err != nil {
		t.Fatal(err)
	}
	var bytes int64
	for _, p := range tg.Params() {
		if _, ok := want[p.Name]; ok {
			bytes += int64(4 * p.Tensor().Numel())
		}
	}
	if n, err := ap.MergedBytes(uses); err != nil || n != bytes {
		t.Errorf("MergedBytes %d, %v; want %d", n, err, bytes)
	}
	if err := ap.Set(context.Background(), uses); err != nil {
		t.Fatal(err)
	}
	if ap.Touched() != len(want) {
		t.Errorf("%d weights changed, want %d", ap.Touched(), len(want))
	}
	for _, p := range tg.Params() {
		got := b.ToFloat32(p.Tensor())
		d, changed := want[p.Name]
		worst := 0.0
		for i, g := range got {
			w := float64(before[p.Name][i])
			if changed {
				w += d[i]
			}
			worst = max(worst, math.Abs(float64(g)-w))
		}
		switch {
		case changed && !(worst <= tol):
			t.Errorf("%s: max abs error %.3g vs the float64 reference (limit %.1g)", p.Name, worst, tol)
		case changed:
			t.Logf("%s: max abs error %.3g", p.Name, worst)
		case worst != 0:
			t.Errorf("%s changed but should not have", p.Name)
		}
	}
	ap.Clear()
	for _, p := range tg.Params() {
		for i, g := range b.ToFloat32(p.Tensor()) {
			if math.Float32bits(g) != math.Float32bits(before[p.Name][i]) {
				t.Fatalf("%s not restored bit for bit after Clear", p.Name)
			}
		}
	}
}

func TestLoHa(t *testing.T) {
	g := newRnd(1)
	const r = 4
	// Linear, alpha 2: scale 2/4.
	lin := []safetensors.Tensor{g.t("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.hada_w1_a", 0.1, 64, r),
		g.t("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.hada_w1_b", 1, r, 64),
		g.t("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.hada_w2_a", 0.1, 64, r),
		g.t("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.hada_w2_b", 1, r, 64),
		scalar("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.alpha", 2)}
	// Conv without Tucker: factors stored flat ([r, in·k·k]) as LyCORIS's
	// module does, SGM name, no alpha (scale 1).
	cv := []safetensors.Tensor{g.t("lora_unet_input_blocks_4_0_in_layers_2.hada_w1_a", 0.1, 64, r),
		g.t("lora_unet_input_blocks_4_0_in_layers_2.hada_w1_b", 1, r, 32*9),
		g.t("lora_unet_input_blocks_4_0_in_layers_2.hada_w2_a", 0.1, 64, r),
		g.t("lora_unet_input_blocks_4_0_in_layers_2.hada_w2_b", 1, r, 32, 3, 3)}
	// Tucker cores on the upsampler's 3x3 conv [64, 64, 3, 3], alpha 8.
	tk := []safetensors.Tensor{g.t("lora_unet_up_blocks_1_upsamplers_0_conv.hada_t1", 0.3, r, r, 3, 3),
		g.t("lora_unet_up_blocks_1_upsamplers_0_conv.hada_w1_a", 0.3, r, 64),
		g.t("lora_unet_up_blocks_1_upsamplers_0_conv.hada_w1_b", 0.3, r, 64),
		g.t("lora_unet_up_blocks_1_upsamplers_0_conv.hada_t2", 0.3, r, r, 3, 3),
		g.t("lora_unet_up_blocks_1_upsamplers_0_conv.hada_w2_a", 0.3, r, 64),
		g.t("lora_unet_up_blocks_1_upsamplers_0_conv.hada_w2_b", 0.3, r, 64),
		scalar("lora_unet_up_blocks_1_upsamplers_0_conv.alpha", 8)}
	f := writeFile(t, "loha.safetensors", append(append(lin, cv...), tk...), nil)
	if f.Format() != "lycoris" {
		t.Errorf("format %q, want lycoris", f.Format())
	}
	const s = 0.7
	hada := func(ts []safetensors.Tensor, rows int, scale float64) []float64 {
		a := mul(m64(ts[0], rows), m64(ts[1], r))
		b := mul(m64(ts[2], rows), m64(ts[3], r))
		out := make([]float64, len(a.v))
		for i := range out {
			out[i] = a.v[i] * b.v[i] * scale
		}
		return out
	}
	t1 := tucker(tk[0], m64(tk[1], r), m64(tk[2], r))
	t2 := tucker(tk[3], m64(tk[4], r), m64(tk[5], r))
	tuck := make([]float64, len(t1.v))
	for i := range tuck {
		tuck[i] = t1.v[i] * t2.v[i] * s * 8 / r
	}
	checkMerge(t, []lora.Use{lora.Scaled(f, s)}, map[string][]float64{
		toQ:   hada(lin, 64, s*2/r),
		conv1: hada(cv, 64, s),
		"unet.up_blocks.1.upsamplers.0.conv.weight": tuck,
	}, 1e-6)
}

func TestLoKr(t *testing.T) {
	g := newRnd(2)
	// to_q [64, 64] = kron(w1 [4, 8] whole, w2a [16, 2]·w2b [2, 8]); alpha 3:
	// scale 3/2 (rank from w2b).
	a := []safetensors.Tensor{g.t("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lokr_w1", 0.5, 4, 8),
		g.t("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lokr_w2_a", 0.3, 16, 2),
		g.t("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lokr_w2_b", 0.3, 2, 8),
		scalar("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.alpha", 3)}
	// ff.net.0.proj [512, 64] = kron(w1a [8, 3]·w1b [3, 4], w2 [64, 16]
	// whole); alpha 6: scale 6/3 (rank from w1b).
	b := []safetensors.Tensor{g.t("lora_unet_down_blocks_2_attentions_0_transformer_blocks_0_ff_net_0_proj.lokr_w1_a", 0.5, 8, 3),
		g.t("lora_unet_down_blocks_2_attentions_0_transformer_blocks_0_ff_net_0_proj.lokr_w1_b", 0.5, 3, 4),
		g.t("lora_unet_down_blocks_2_attentions_0_transformer_blocks_0_ff_net_0_proj.lokr_w2", 0.1, 64, 16),
		scalar("lora_unet_down_blocks_2_attentions_0_transformer_blocks_0_ff_net_0_proj.alpha", 6)}
	// conv1 [64, 32, 3, 3] = kron(w1 [4, 4], Tucker(t2 [2, 2, 3, 3], w2a
	// [2, 16], w2b [2, 8])); alpha 1: scale 1/2.
	c := []safetensors.Tensor{g.t("lora_unet_down_blocks_1_resnets_0_conv1.lokr_w1", 0.5, 4, 4),
		g.t("lora_unet_down_blocks_1_resnets_0_conv1.lokr_t2", 0.5, 2, 2, 3, 3),
		g.t("lora_unet_down_blocks_1_resnets_0_conv1.lokr_w2_a", 0.5, 2, 16),
		g.t("lora_unet_down_blocks_1_resnets_0_conv1.lokr_w2_b", 0.5, 2, 8),
		scalar("lora_unet_down_blocks_1_resnets_0_conv1.alpha", 1)}
	// te2 v_proj [32, 32] = kron(w1 [2, 4], w2 [16, 8]), both whole: the
	// alpha (5) is ignored, scale 1.
	d := []safetensors.Tensor{g.t("lora_te2_text_model_encoder_layers_1_self_attn_v_proj.lokr_w1", 0.5, 2, 4),
		g.t("lora_te2_text_model_encoder_layers_1_self_attn_v_proj.lokr_w2", 0.1, 16, 8),
		scalar("lora_te2_text_model_encoder_layers_1_self_attn_v_proj.alpha", 5)}
	var all []safetensors.Tensor
	for _, x := range [][]safetensors.Tensor{a, b, c, d} {
		all = append(all, x...)
	}
	f := writeFile(t, "lokr.safetensors", all, nil)
	const su, st = 0.8, 1.3
	// The Tucker w2 is [16, 8, 3, 3]; kron with w1 [4, 4] over the first
	// two dimensions equals the 2-D kron with w2 flattened to [16, 72].
	w2c := tucker(c[1], m64(c[2], 2), m64(c[3], 2))
	checkMerge(t, []lora.Use{{File: f, UNetScale: su, TextScale: st}}, map[string][]float64{
		toQ:   kron(m64(a[0], 4), mul(m64(a[1], 16), m64(a[2], 2))).scaled(su * 3 / 2),
		ffIn:  kron(mul(m64(b[0], 8), m64(b[1], 3)), m64(b[2], 64)).scaled(su * 6 / 3),
		conv1: kron(m64(c[0], 4), w2c).scaled(su * 1 / 2),
		te2V:  kron(m64(d[0], 2), m64(d[1], 16)).scaled(st),
	}, 1e-6)
}

// TestOldSpellings: one file mixing every diffusers spelling as
// convert_state_dict_to_diffusers produces them (golden/lora note_mixed_names:
// UNet attention as .lora.down/.up, text-encoder attention as
// .lora_linear_layer, everything else lora_A/lora_B), plus the attention
// processor spelling and an unprefixed UNet key. diffusers 0.35 drops part of
// such a file; every key must apply.
func TestOldSpellings(t *testing.T) {
	g := newRnd(3)
	const r = 2
	pair := func(prefix, down, up string, out, in int) []safetensors.Tensor {
		return []safetensors.Tensor{g.t(prefix+down, 0.3, r, in), g.t(prefix+up, 0.3, out, r)}
	}
	var ts []safetensors.Tensor
	ts = append(ts, pair("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", ".lora.down.weight", ".lora.up.weight", 64, 64)...)
	ts = append(ts, pair("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_k_lora", ".down.weight", ".up.weight", 64, 64)...)
	ts = append(ts, pair("down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora", ".down.weight", ".up.weight", 64, 64)...)
	ts = append(ts, pair("unet.down_blocks.2.attentions.0.transformer_blocks.0.ff.net.0.proj", ".lora_A.weight", ".lora_B.weight", 512, 64)...)
	ts = append(ts, pair("text_encoder.text_model.encoder.layers.0.mlp.fc1", ".lora_linear_layer.down.weight", ".lora_linear_layer.up.weight", 64, 16)...)
	ts = append(ts, pair("text_encoder.text_model.encoder.layers.0.self_attn.to_q_lora", ".down.weight", ".up.weight", 16, 16)...)
	ts = append(ts, pair("text_encoder_2.text_model.encoder.layers.1.self_attn.v_proj", ".lora_A.weight", ".lora_B.weight", 32, 32)...)
	// The metadata sets alpha for the text encoders only (the UNet has
	// none: alpha = rank).
	md := map[string]string{"lora_adapter_metadata": mustJSON(t, map[string]any{
		"text_encoder.r": r, "text_encoder.lora_alpha": 3.0,
		"text_encoder_2.r": r, "text_encoder_2.lora_alpha": 1.0,
	})}
	f := writeFile(t, "mixed.safetensors", ts, md)
	if f.Format() != "diffusers+diffusers-old" {
		t.Errorf("format %q", f.Format())
	}
	d := func(i int, rows int, s float64) []float64 {
		return mul(m64(ts[2*i+1], rows), m64(ts[2*i], r)).scaled(s)
	}
	checkMerge(t, []lora.Use{lora.Scaled(f, 0.9)}, map[string][]float64{
		toQ: d(0, 64, 0.9), toK: d(1, 64, 0.9), toOut: d(2, 64, 0.9), ffIn: d(3, 512, 0.9),
		te1FC: d(4, 64, 0.9*3/r), te1Q: d(5, 16, 0.9*3/r), te2V: d(6, 32, 0.9*1/r),
	}, 1e-6)
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPEFTPatterns: alpha_pattern, rank_pattern and rsLoRA from
// lora_adapter_metadata, as PEFT's LoraLayer.update_layer scales.
func TestPEFTPatterns(t *testing.T) {
	g := newRnd(4)
	ts := []safetensors.Tensor{
		g.t("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight", 0.3, 4, 64),
		g.t("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight", 0.3, 64, 4),
		g.t("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k.lora_A.weight", 0.3, 2, 64),
		g.t("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k.lora_B.weight", 0.3, 64, 2),
		g.t("text_encoder_2.text_model.encoder.layers.1.self_attn.v_proj.lora_A.weight", 0.3, 4, 32),
		g.t("text_encoder_2.text_model.encoder.layers.1.self_attn.v_proj.lora_B.weight", 0.3, 32, 4),
	}
	md := map[string]string{"lora_adapter_metadata": mustJSON(t, map[string]any{
		"unet.r": 4, "unet.lora_alpha": 8.0,
		"unet.rank_pattern":  map[string]int{"attn1.to_k": 2},
		"unet.alpha_pattern": map[string]float64{`down_blocks\.1\..*to_k`: 5.0},
		"text_encoder_2.r":   4, "text_encoder_2.lora_alpha": 6.0, "text_encoder_2.use_rslora": true,
	})}
	f := writeFile(t, "peft.safetensors", ts, md)
	d := func(i, rows, r int, s float64) []float64 { return mul(m64(ts[2*i+1], rows), m64(ts[2*i], r)).scaled(s) }
	checkMerge(t, []lora.Use{lora.Scaled(f, 1)}, map[string][]float64{
		toQ: d(0, 64, 4, 8.0/4), toK: d(1, 64, 2, 5.0/2), te2V: d(2, 32, 4, 6.0/2),
	}, 1e-6)
}

// TestLoConTuckerAndSum: a kohya LoCon with a Tucker core (lora_mid) and a
// second LoRA on the same weight, whose deltas add.
func TestLoConTuckerAndSum(t *testing.T) {
	g := newRnd(5)
	const r = 3
	a := []safetensors.Tensor{g.t("lora_unet_down_blocks_1_resnets_0_conv1.lora_down.weight", 0.3, r, 32, 1, 1),
		g.t("lora_unet_down_blocks_1_resnets_0_conv1.lora_mid.weight", 0.3, r, r, 3, 3),
		g.t("lora_unet_down_blocks_1_resnets_0_conv1.lora_up.weight", 0.3, 64, r, 1, 1),
		scalar("lora_unet_down_blocks_1_resnets_0_conv1.alpha", 1.5)}
	b := []safetensors.Tensor{g.t("lora_unet_input_blocks_4_0_in_layers_2.lora_down.weight", 0.1, 2, 32, 3, 3),
		g.t("lora_unet_input_blocks_4_0_in_layers_2.lora_up.weight", 0.1, 64, 2, 1, 1),
		scalar("lora_unet_input_blocks_4_0_in_layers_2.alpha", 4)}
	fa := writeFile(t, "locon_tucker.safetensors", a, nil)
	fb := writeFile(t, "locon.safetensors", b, nil)
	// Δa[o, i, k] = Σ_ab up[o,a]·mid[a,b,k]·down[b,i] · 1.5/3
	up, mid, down := m64(a[2], 64), a[1], m64(a[0], r)
	da := make([]float64, 64*32*9)
	for o := range 64 {
		for i := range 32 {
			for k := range 9 {
				s := 0.0
				for x := range r {
					for y := range r {
						s += up.at(o, x) * float64(mid.Data[(x*r+y)*9+k]) * down.at(y, i)
					}
				}
				da[(o*32+i)*9+k] = s * 0.5 * 1.5 / r
			}
		}
	}
	db := mul(m64(b[1], 64), m64(b[0], 2)).scaled(-0.25 * 4 / 2)
	for i := range da {
		da[i] += db[i]
	}
	checkMerge(t, []lora.Use{lora.Scaled(fa, 0.5), lora.Scaled(fb, -0.25)}, map[string][]float64{conv1: da}, 1e-6)
}
