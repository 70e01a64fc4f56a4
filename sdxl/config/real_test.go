package config_test

import (
	"encoding/json"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sdxl/config"
)

// loadKeyList reads a golden/full-keys JSON list (key -> shape).
func loadKeyList(t *testing.T, rel string) map[string][]int {
	t.Helper()
	data, err := os.ReadFile(golden.Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string][]int
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return m
}

// compareShapes fails on any key missing from either side or any shape
// difference, listing a few of each.
func compareShapes(t *testing.T, what string, got config.Shapes, want map[string][]int) {
	t.Helper()
	var missing, extra, diff []string
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			missing = append(missing, k)
		case !reflect.DeepEqual(g, w):
			diff = append(diff, k+": "+shapeStr(g)+" vs "+shapeStr(w))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			extra = append(extra, k)
		}
	}
	if len(missing)+len(extra)+len(diff) > 0 {
		sort.Strings(missing)
		sort.Strings(extra)
		sort.Strings(diff)
		t.Errorf("%s: %d keys derived, %d expected; missing %d %v; unexpected %d %v; shape differs %d %v",
			what, len(got), len(want), len(missing), head(missing), len(extra), head(extra), len(diff), head(diff))
	}
}

func shapeStr(s []int) string { b, _ := json.Marshal(s); return string(b) }

func head(s []string) []string {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}

// TestRealConfigsMatchFullKeys derives every state-dict key and shape from
// the embedded SDXL configs and compares them with the full-size key lists
// (made with diffusers from the real configs): an exact match of 1680 +
// 1220 + 248 + 196 + 517 keys, and the published parameter counts.
func TestRealConfigsMatchFullKeys(t *testing.T) {
	cases := []struct {
		what   string
		shapes func() (config.Shapes, error)
		list   string
		params int64
	}{
		{"base UNet", config.SDXLBaseUNet().ParamShapes, "full-keys/sdxl-base-unet.json", 2_567_463_684},
		{"refiner UNet", config.SDXLRefinerUNet().ParamShapes, "full-keys/sdxl-refiner-unet.json", 2_259_526_660},
		{"VAE", config.SDXLVAE().ParamShapes, "full-keys/sdxl-base-vae.json", 83_653_863},
		{"text_encoder", func() (config.Shapes, error) { return config.SDXLTextEncoder().ParamShapes("text_model."), nil }, "full-keys/sdxl-text-encoder.json", 123_060_480},
		{"text_encoder_2", func() (config.Shapes, error) { return config.SDXLTextEncoder2().ParamShapes("text_model."), nil }, "full-keys/sdxl-text-encoder-2.json", 694_659_840},
	}
	for _, c := range cases {
		got, err := c.shapes()
		if err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		want := loadKeyList(t, c.list)
		compareShapes(t, c.what, got, want)
		if got.Params() != c.params {
			t.Errorf("%s: %d parameters, published %d", c.what, got.Params(), c.params)
		}
		t.Logf("%s: %d keys and shapes equal %s; %d parameters", c.what, len(got), c.list, got.Params())
	}
}

// TestRealConfigValues checks the embedded configs against DESIGN.md §4
// and the facts the pipeline relies on.
func TestRealConfigValues(t *testing.T) {
	base, ref := config.SDXLBaseUNet(), config.SDXLRefinerUNet()
	vae, te1, te2 := config.SDXLVAE(), config.SDXLTextEncoder(), config.SDXLTextEncoder2()
	check := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("base block_out_channels", base.BlockOutChannels, []int{320, 640, 1280})
	check("base transformer layers", base.TransformerLayers, [][]int{{1, 1}, {2, 2}, {10, 10}})
	check("base up transformer layers", base.UpTransformerLayers, [][]int{{10, 10, 10}, {2, 2, 2}, {1, 1, 1}})
	check("base mid transformer layers", base.MidTransformerLayers, 10)
	check("base heads", base.NumAttentionHeads, []int{5, 10, 20})
	check("base cross_attention_dim", base.CrossAttentionDim, []int{2048, 2048, 2048})
	check("base upcast_attention (null)", base.UpcastAttention, false)
	check("base sample_size", *base.SampleSize, config.Size2{H: 128, W: 128})
	check("base time embed dim", base.TimeEmbedDim(), 1280)
	check("ref block_out_channels", ref.BlockOutChannels, []int{384, 768, 1536, 1536})
	check("ref transformer layers", ref.TransformerLayers, [][]int{{4, 4}, {4, 4}, {4, 4}, {4, 4}})
	check("ref heads", ref.NumAttentionHeads, []int{6, 12, 24, 24})
	check("ref cross_attention_dim", ref.CrossAttentionDim, []int{1280, 1280, 1280, 1280})
	for _, u := range []*config.UNetConfig{base, ref} {
		if len(u.NonSDXL()) != 0 || len(u.Unused) != 0 {
			t.Errorf("real UNet: NonSDXL %v, unused keys %v", u.NonSDXL(), u.Unused)
		}
		// Every attention of both UNets has 64-wide heads.
		for _, b := range append(u.DownBlocks(), u.UpBlocks()...) {
			if b.HasCrossAttention && b.HeadDim != 64 {
				t.Errorf("block %s %d: head dim %d, want 64", b.Type, b.Index, b.HeadDim)
			}
		}
		if m := u.MidBlock(); m.HeadDim != 64 {
			t.Errorf("mid block head dim %d", m.HeadDim)
		}
	}
	// Pooled text width 1280 + 6 (base) or 5 (refiner) time ids of 256.
	if n, err := base.NumAddTimeIDs(te2.ProjectionDim); err != nil || n != 6 {
		t.Errorf("base add time ids: %d %v", n, err)
	}
	if n, err := ref.NumAddTimeIDs(te2.ProjectionDim); err != nil || n != 5 {
		t.Errorf("refiner add time ids: %d %v", n, err)
	}
	check("base cross dim = te1 + te2 hidden", base.CrossAttentionDim[0], te1.HiddenSize+te2.HiddenSize)
	check("refiner cross dim = te2 hidden", ref.CrossAttentionDim[0], te2.HiddenSize)
	check("vae scaling", vae.ScalingFactor, 0.13025)
	check("vae force_upcast", vae.ForceUpcast, true)
	check("vae factor", vae.DownsampleFactor(), 8)
	check("vae shift", vae.ShiftFactor == nil, true)
	check("te1", []any{te1.HiddenSize, te1.NumHiddenLayers, te1.NumAttentionHeads, te1.IntermediateSize, te1.HiddenAct, te1.WithProjection()}, []any{768, 12, 12, 3072, "quick_gelu", false})
	check("te2", []any{te2.HiddenSize, te2.NumHiddenLayers, te2.NumAttentionHeads, te2.IntermediateSize, te2.HiddenAct, te2.WithProjection(), te2.ProjectionDim}, []any{1280, 32, 20, 5120, "gelu", true, 1280})
	// The real configs carry eos_token_id 2, so transformers pools them at
	// argmax(ids) (= the first 49407 for real token ids).
	check("te legacy pooling", te1.LegacyArgmaxPooling() && te2.LegacyArgmaxPooling(), true)

	for _, name := range []string{config.SDXLBaseName, config.SDXLRefinerName} {
		d, err := config.RealModelDir(name)
		if err != nil {
			t.Fatal(err)
		}
		data, class, err := d.SchedulerConfigJSON()
		if err != nil || class != "EulerDiscreteScheduler" || !strings.Contains(string(data), `"steps_offset": 1`) {
			t.Errorf("%s scheduler: %s %v", name, class, err)
		}
		if _, err := d.WeightFiles("unet", ""); err == nil || !strings.Contains(err.Error(), "without weights") {
			t.Errorf("%s: WeightFiles on an embedded set: %v", name, err)
		}
	}
	refDir, _ := config.RealModelDir(config.SDXLRefinerName)
	check("refiner requires_aesthetics_score", refDir.ModelIndex.RequiresAestheticsScore, true)
	check("refiner force_zeros", refDir.ModelIndex.ForceZerosForEmptyPrompt, false)
	if _, err := refDir.TextEncoderConfig("text_encoder"); err == nil || !strings.Contains(err.Error(), "[null, null]") {
		t.Errorf("refiner text_encoder: %v", err)
	}
	if _, err := config.RealModelDir("sdxl-turbo"); err == nil {
		t.Error("unknown embedded set accepted")
	}
	if b, err := config.RealConfigJSON(config.SDXLBaseName, "unet/config.json"); err != nil || !strings.Contains(string(b), `"projection_class_embeddings_input_dim": 2816`) {
		t.Errorf("RealConfigJSON: %v", err)
	}
}

// TestRealSingleFileKeyCounts ties the embedded configs to the single-file
// key lists: the UNet+VAE list has exactly as many keys and parameters as
// the diffusers-named lists derived from the configs, and the two text
// encoders' single-file list has the two models' parameter total.
func TestRealSingleFileKeyCounts(t *testing.T) {
	sf := loadKeyList(t, "full-keys/sdxl-base-singlefile-unet-vae.json")
	unet, _ := config.SDXLBaseUNet().ParamShapes()
	vae, _ := config.SDXLVAE().ParamShapes()
	var nUNet, nVAE int
	var pUNet, pVAE int64
	for k, s := range sf {
		p := int64(1)
		for _, d := range s {
			p *= int64(d)
		}
		switch {
		case strings.HasPrefix(k, "model.diffusion_model."):
			nUNet++
			pUNet += p
		case strings.HasPrefix(k, "first_stage_model."):
			nVAE++
			pVAE += p
		default:
			t.Errorf("unexpected single-file key %s", k)
		}
	}
	if nUNet != len(unet) || pUNet != unet.Params() || nVAE != len(vae) || pVAE != vae.Params() {
		t.Errorf("single file: UNet %d keys / %d params vs %d / %d; VAE %d / %d vs %d / %d",
			nUNet, pUNet, len(unet), unet.Params(), nVAE, pVAE, len(vae), vae.Params())
	}
	te := loadKeyList(t, "full-keys/sdxl-base-singlefile-text-encoders.json")
	var pTE int64
	for k, s := range te {
		p := int64(1)
		for _, d := range s {
			p *= int64(d)
		}
		if !strings.HasSuffix(k, "position_ids") && !strings.HasSuffix(k, "logit_scale") {
			pTE += p
		}
	}
	want := config.SDXLTextEncoder().ParamShapes("").Params() + config.SDXLTextEncoder2().ParamShapes("").Params()
	if pTE != want {
		t.Errorf("single-file text encoders: %d parameters, configs give %d", pTE, want)
	}
	t.Logf("single file: UNet %d keys, VAE %d keys, text encoders %d parameters, all as derived from the configs", nUNet, nVAE, pTE)
}
