package config_test

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/sdxl/config"
)

// compareShapes fails on any key missing from either side or any shape
// difference, listing a few of each.
func compareShapes(t *testing.T, what string, got, want map[string][]int) {
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
		if len(u.Unused) != 0 {
			t.Errorf("real UNet: unused keys %v", u.Unused)
		}
		// Every attention of both UNets has 64-wide heads.
		for i, ch := range u.BlockOutChannels {
			if ch/u.NumAttentionHeads[i] != 64 {
				t.Errorf("block %d: %d channels in %d heads, want 64 wide", i, ch, u.NumAttentionHeads[i])
			}
		}
	}
	// Pooled text width 1280 + 6 (base) or 5 (refiner) time ids of 256.
	check("base add time ids", addTimeIDs(base, te2), 6)
	check("refiner add time ids", addTimeIDs(ref, te2), 5)
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

// addTimeIDs is how many micro-conditioning numbers the "text_time"
// addition embedding takes beside the pooled text embedding:
// (projection_class_embeddings_input_dim - pooled width) /
// addition_time_embed_dim.
func addTimeIDs(u *config.UNetConfig, te2 *config.TextEncoderConfig) int {
	return (*u.ProjectionClassEmbeddingsInputDim - te2.ProjectionDim) / *u.AdditionTimeEmbedDim
}
