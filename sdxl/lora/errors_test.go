package lora_test

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/sdxl/lora"
)

const qKohya = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"

// goodPair is a valid kohya LoRA on to_q.
func goodPair(g *rnd) []safetensors.Tensor {
	return []safetensors.Tensor{g.t(qKohya+".lora_down.weight", 0.1, 2, 64), g.t(qKohya+".lora_up.weight", 0.1, 64, 2)}
}

// writeRaw writes tensors and returns the path (no parsing).
func writeRaw(t *testing.T, name string, ts []safetensors.Tensor, md map[string]string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := safetensors.WriteFile(p, ts, md); err != nil {
		t.Fatal(err)
	}
	return p
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

// TestLoadErrors: files that are not usable LoRAs fail when loaded, naming
// the file and the key.
func TestLoadErrors(t *testing.T) {
	g := newRnd(9)
	cases := []struct {
		name string
		ts   []safetensors.Tensor
		md   map[string]string
		want []string
	}{
		{"unknown_key", append(goodPair(g), g.t("foo.weight", 1, 2)), nil, []string{`"foo.weight"`, "not a LoRA key"}},
		{"checkpoint", []safetensors.Tensor{g.t("model.diffusion_model.input_blocks.0.0.weight", 1, 4)}, nil,
			[]string{"not a LoRA", `"model.diffusion_model.input_blocks.0.0.weight"`}},
		{"sd15_te", append(goodPair(g), g.t("lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", 1, 2, 768),
			g.t("lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight", 1, 3072, 2)), nil,
			[]string{"SD 1.x", "lora_te_text_model_encoder_layers_0_mlp_fc1"}},
		{"no_up", goodPair(g)[:1], nil, []string{qKohya + ".lora_down.weight", "lora_up.weight"}},
		{"alpha_only", []safetensors.Tensor{scalar(qKohya+".alpha", 4)}, nil, []string{qKohya + ".alpha", "without LoRA weights"}},
		{"loha_partial", []safetensors.Tensor{g.t(qKohya+".hada_w1_a", 1, 64, 2), g.t(qKohya+".hada_w1_b", 1, 2, 64)}, nil,
			[]string{"hada_w2_a"}},
		{"mixed_kinds", append(goodPair(g), g.t(qKohya+".hada_w1_a", 1, 64, 2)), nil, []string{"spelled kohya", "lycoris"}},
		{"mixed_lycoris", []safetensors.Tensor{g.t(qKohya+".lokr_w1", 1, 8, 8), g.t(qKohya+".lokr_w2", 1, 8, 8), g.t(qKohya+".hada_w1_a", 1, 64, 2)}, nil,
			[]string{"mixes"}},
		{"dora_peft", append(goodPair(g), g.t("unet.x.lora_magnitude_vector", 1, 64)), nil, []string{"DoRA", "lora_magnitude_vector"}},
		{"lycoris_full", []safetensors.Tensor{g.t(qKohya+".diff", 1, 64, 64)}, nil, []string{qKohya + ".diff", "not supported"}},
		{"bad_metadata", goodPair(g), map[string]string{"lora_adapter_metadata": "{"}, []string{"lora_adapter_metadata"}},
		{"vector_alpha", append(goodPair(g), g.t(qKohya+".alpha", 1, 2)), nil, []string{qKohya + ".alpha", "single number"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeRaw(t, c.name+".safetensors", c.ts, c.md)
			_, err := lora.Load(p)
			wantErr(t, err, append(c.want, p)...)
		})
	}
}

// TestTruncatedAndGarbage: a file cut short or not a safetensors file at all
// fails cleanly, naming the file.
func TestTruncatedAndGarbage(t *testing.T) {
	p := writeRaw(t, "full.safetensors", goodPair(newRnd(1)), nil)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{len(data) - 1, len(data) / 2, 20, 7, 0} {
		q := filepath.Join(t.TempDir(), "cut.safetensors")
		if err := os.WriteFile(q, data[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := lora.Load(q)
		wantErr(t, err, q)
		t.Logf("%d bytes: %v", n, err)
	}
	_, err = lora.Load(filepath.Join(t.TempDir(), "missing.safetensors"))
	wantErr(t, err, "missing.safetensors")
	_, err = lora.Load(t.TempDir())
	wantErr(t, err, "not a regular file")
}

// TestApplyErrors: layers that do not fit the model fail in Set before any
// weight changes, naming the key and the file.
func TestApplyErrors(t *testing.T) {
	tg := targetOf(loadBase(t))
	g := newRnd(11)
	sd15 := "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
	cases := []struct {
		name string
		ts   []safetensors.Tensor
		md   map[string]string
		want []string
	}{
		{"no_such_layer", []safetensors.Tensor{g.t("lora_unet_down_blocks_7_resnets_0_conv1.lora_down.weight", 1, 2, 32, 3, 3),
			g.t("lora_unet_down_blocks_7_resnets_0_conv1.lora_up.weight", 1, 64, 2, 1, 1)}, nil,
			[]string{"lora_unet_down_blocks_7_resnets_0_conv1", "maps to no unet layer"}},
		{"no_such_path", []safetensors.Tensor{g.t("unet.mid_block.attentions.0.transformer_blocks.5.attn1.to_q.lora_A.weight", 1, 2, 64),
			g.t("unet.mid_block.attentions.0.transformer_blocks.5.attn1.to_q.lora_B.weight", 1, 64, 2)}, nil,
			[]string{"transformer_blocks.5.attn1.to_q.weight", "does not have"}},
		{"norm", []safetensors.Tensor{g.t("unet.mid_block.attentions.0.norm.lora_A.weight", 1, 2, 64),
			g.t("unet.mid_block.attentions.0.norm.lora_B.weight", 1, 64, 2)}, nil, []string{"not a linear or convolution weight"}},
		{"shape", []safetensors.Tensor{g.t(qKohya+".lora_down.weight", 1, 2, 65), g.t(qKohya+".lora_up.weight", 1, 64, 2)}, nil,
			[]string{qKohya + ".lora_down.weight", "[2 65]", "[2 64]"}},
		{"up_rank", []safetensors.Tensor{g.t(qKohya+".lora_down.weight", 1, 2, 64), g.t(qKohya+".lora_up.weight", 1, 64, 3)}, nil,
			[]string{qKohya + ".lora_up.weight", "[64 3]"}},
		{"conv_kernel", []safetensors.Tensor{g.t("lora_unet_down_blocks_1_resnets_0_conv1.lora_down.weight", 1, 2, 32, 1, 1),
			g.t("lora_unet_down_blocks_1_resnets_0_conv1.lora_up.weight", 1, 64, 2, 1, 1)}, nil, []string{"[2 32 3 3]"}},
		{"sd15_unet", []safetensors.Tensor{g.t(sd15+".lora_down.weight", 1, 2, 768), g.t(sd15+".lora_up.weight", 1, 320, 2)}, nil,
			[]string{sd15, "SD 1.5"}},
		{"peft_rank", goodPeft(g), map[string]string{"lora_adapter_metadata": `{"unet.r": 8, "unet.lora_alpha": 8}`},
			[]string{"rank 2", "r = 8"}},
		{"lokr_factor", []safetensors.Tensor{g.t(qKohya+".lokr_w1", 1, 3, 5), g.t(qKohya+".lokr_w2", 1, 4, 4)}, nil,
			[]string{qKohya, "Kronecker"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeRaw(t, c.name+".safetensors", c.ts, c.md)
			f, err := lora.Load(p)
			if err != nil {
				t.Fatal(err)
			}
			ap, err := lora.NewApplier(tg)
			if err != nil {
				t.Fatal(err)
			}
			wantErr(t, ap.Check([]lora.Use{lora.Scaled(f, 1)}), append(c.want, p)...)
			err = ap.Set(context.Background(), []lora.Use{lora.Scaled(f, 1)})
			wantErr(t, err, append(c.want, p)...)
			if ap.Touched() != 0 {
				t.Errorf("%d weights changed by a failed Set", ap.Touched())
			}
		})
	}
}

func goodPeft(g *rnd) []safetensors.Tensor {
	return []safetensors.Tensor{g.t("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight", 1, 2, 64),
		g.t("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight", 1, 64, 2)}
}

// TestFailedSetKeepsState: a Set that fails (here on the second file) leaves
// the previously applied LoRAs in place, untouched.
func TestFailedSetKeepsState(t *testing.T) {
	tg := targetOf(loadBase(t))
	g := newRnd(12)
	good := writeFile(t, "good.safetensors", goodPair(g), nil)
	bad := writeFile(t, "bad.safetensors", []safetensors.Tensor{g.t(qKohya+".lora_down.weight", 1, 2, 63),
		g.t(qKohya+".lora_up.weight", 1, 64, 2)}, nil)
	ap, err := lora.NewApplier(tg)
	if err != nil {
		t.Fatal(err)
	}
	defer ap.Clear()
	if err := ap.Set(context.Background(), []lora.Use{lora.Scaled(good, 1)}); err != nil {
		t.Fatal(err)
	}
	w := tg.UNet.DownBlocks[1].Attentions[0].Blocks[0].Attn1.ToQ.Weight
	err = ap.Set(context.Background(), []lora.Use{lora.Scaled(good, 0.5), lora.Scaled(bad, 1)})
	wantErr(t, err, "bad.safetensors")
	if ap.Touched() != 1 || tg.UNet.DownBlocks[1].Attentions[0].Blocks[0].Attn1.ToQ.Weight != w || len(ap.Active()) != 1 {
		t.Error("a failed Set changed the applied LoRAs")
	}
	for _, s := range []float64{math.NaN(), math.Inf(1)} {
		wantErr(t, ap.Set(context.Background(), []lora.Use{lora.Scaled(good, s)}), "finite")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	wantErr(t, ap.Set(ctx, []lora.Use{lora.Scaled(good, 2)}), "canceled")
	if ap.Touched() != 0 {
		t.Error("a canceled Set did not restore the model")
	}
}

// TestDoraScaleWarning: dora_scale tensors are ignored with a warning (as
// diffusers does for SDXL); the LoRA itself applies.
func TestDoraScaleWarning(t *testing.T) {
	g := newRnd(13)
	ts := append(goodPair(g), g.t(qKohya+".dora_scale", 1, 64, 1))
	f := writeFile(t, "dora.safetensors", ts, nil)
	if len(f.Warnings) != 1 || !strings.Contains(f.Warnings[0], "1 dora_scale") || !strings.Contains(f.Warnings[0], f.Path) {
		t.Fatalf("warnings %q", f.Warnings)
	}
	t.Log(f.Warnings[0])
	checkMerge(t, []lora.Use{lora.Scaled(f, 1)}, map[string][]float64{
		toQ: mul(m64(ts[1], 64), m64(ts[0], 2)).scaled(1),
	}, 1e-6)
}

// TestPartialTarget: a base LoRA applied to a model with only
// text_encoder_2 (the refiner's encoder) changes just that encoder when
// Partial is set, and fails naming the missing component otherwise.
func TestPartialTarget(t *testing.T) {
	m := loadBase(t)
	f := loadGolden(t, goldenFiles["kohya_sgm"])
	te2 := 0
	for _, l := range f.Layers {
		if l.Component == lora.TextEncoder2 {
			te2++
		}
	}
	ap, err := lora.NewApplier(lora.Target{TextEncoder2: m.Text.TextEncoder2, Partial: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := ap.Set(context.Background(), []lora.Use{lora.Scaled(f, 1)}); err != nil {
		t.Fatal(err)
	}
	if ap.Touched() != te2 || te2 == 0 {
		t.Errorf("%d weights changed, the file has %d text_encoder_2 layers", ap.Touched(), te2)
	}
	ap.Clear()
	// The same through the Use on the whole model.
	ap, err = lora.NewApplier(targetOf(m))
	if err != nil {
		t.Fatal(err)
	}
	if err := ap.Set(context.Background(), []lora.Use{{File: f, UNetScale: 1, TextScale: 1, Components: lora.Components(lora.TextEncoder2)}}); err != nil {
		t.Fatal(err)
	}
	if ap.Touched() != te2 {
		t.Errorf("Components(TextEncoder2): %d weights changed, want %d", ap.Touched(), te2)
	}
	ap.Clear()
	ap, err = lora.NewApplier(lora.Target{TextEncoder2: m.Text.TextEncoder2})
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, ap.Set(context.Background(), []lora.Use{lora.Scaled(f, 1)}), "unet, which this model does not have")
}
