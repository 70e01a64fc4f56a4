package unet

import (
	"context"
	"encoding/json"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/capture"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/tensor"
)

func TestParamCountsRealConfigs(t *testing.T) {
	for _, c := range []struct {
		file string
		cfg  *config.UNetConfig
		want int64
	}{
		{"SDXL base", config.SDXLBaseUNet(), 2567463684},
		{"SDXL refiner", config.SDXLRefinerUNet(), 2259526660},
	} {
		u, err := New(c.cfg)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if u.InChannels() != 4 || u.AdditionTimeEmbedDim() != 256 {
			t.Errorf("%s: in_channels %d, addition_time_embed_dim %d", c.file, u.InChannels(), u.AdditionTimeEmbedDim())
		}
		got := nn.CountParams(u)
		if got != c.want {
			t.Errorf("%s: %d parameters, want %d", c.file, got, c.want)
		}
		t.Logf("%s: %d parameters", c.file, got)
	}
}

// TestFullKeys checks that every key of the full-size diffusers state dicts
// binds to a parameter of the same shape and that no parameter is left
// over.
func TestFullKeys(t *testing.T) {
	for _, c := range []struct {
		config *config.UNetConfig
		keys   string
	}{
		{config.SDXLBaseUNet(), "full-keys/sdxl-base-unet.json"},
		{config.SDXLRefinerUNet(), "full-keys/sdxl-refiner-unet.json"},
	} {
		path := golden.Path(t, c.keys)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var want map[string][]int
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatal(err)
		}
		u, err := New(c.config)
		if err != nil {
			t.Fatal(err)
		}
		checkKeys(t, c.keys, nn.Params(u, ""), want)
	}
}

func checkKeys(t *testing.T, what string, params []nn.Param, want map[string][]int) {
	t.Helper()
	got := map[string]tensor.Shape{}
	for _, p := range params {
		got[p.Name] = p.Tensor().Shape()
	}
	var missing, extra, shape []string
	for k, s := range want {
		g, ok := got[k]
		switch {
		case !ok:
			missing = append(missing, k)
		case !g.Equal(s):
			shape = append(shape, k)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	sort.Strings(shape)
	if len(missing)+len(extra)+len(shape) > 0 {
		t.Errorf("%s: %d keys without a parameter %v, %d parameters without a key %v, %d shape mismatches %v",
			what, len(missing), head(missing), len(extra), head(extra), len(shape), head(shape))
	}
	t.Logf("%s: %d keys, %d parameters bound", what, len(want), len(got))
}

func head(s []string) []string {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}

// goldenUNet runs the tiny UNet golden: both forwards, output and every
// recorded act.* tensor.
func goldenUNet(t *testing.T, goldenFile, modelDir string) {
	g := golden.Open(t, goldenFile)
	dir := golden.Path(t, modelDir)
	b := cpu.New()
	u, err := LoadDir(b, dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string) *tensor.Tensor {
		d, s := g.Get(name)
		return b.FromFloat32(tensor.F32, s, d)
	}
	sample := get("in.sample")
	ctx := get("in.encoder_hidden_states")
	text := get("in.text_embeds")
	ids, _ := g.Get("in.time_ids")
	t1, _ := g.Get("in.timestep")
	t2, _ := g.Get("in2.timestep")

	rec := capture.MustNew("**", "**.input")
	out, err := u.Forward(context.Background(), b, Input{Sample: sample, Timesteps: t1, EncoderHiddenStates: ctx, TextEmbeds: text, TimeIDs: ids}, rec)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := g.Get("out.sample")
	golden.Check(t, "out.sample", b.ToFloat32(out), want, 1e-4)

	var acts []string
	for name := range g.Tensors {
		if strings.HasPrefix(name, "act.") {
			acts = append(acts, name)
		}
	}
	sort.Strings(acts)
	if len(acts) == 0 {
		t.Fatal("golden has no act.* tensors")
	}
	for _, name := range acts {
		path := strings.TrimPrefix(name, "act.")
		a, ok := rec.Get(path)
		if !ok {
			t.Errorf("%s: not recorded", name)
			continue
		}
		w, ws := g.Get(name)
		if !tensor.Shape(ws).Equal(a.Shape) {
			t.Errorf("%s: shape %v, want %v", name, a.Shape, ws)
			continue
		}
		golden.Check(t, name, a.Data, w, 1e-4)
	}

	// Child modules without a golden: present, shaped as in diffusers, and
	// consistent with their parents.
	blk := "down_blocks.1.attentions.0.transformer_blocks.0"
	for _, c := range []struct {
		path  string
		shape []int
	}{
		{blk + ".attn2.to_k", []int{ctx.Dim(0), ctx.Dim(1), u.DownBlocks[1].Attentions[0].Blocks[0].Attn2.ToK.Weight.Dim(0)}},
		{blk + ".norm1", nil}, {blk + ".ff.net.0", nil}, {blk + ".ff.net.2", nil},
		{"down_blocks.0.resnets.0.conv1", nil}, {"down_blocks.0.resnets.0.time_emb_proj", nil},
		{"down_blocks.0.downsamplers.0.conv", nil}, {"conv_norm_out", nil}, {"conv_act", nil},
	} {
		a, ok := rec.Get(c.path)
		if !ok {
			t.Errorf("%s: not recorded", c.path)
			continue
		}
		if c.shape != nil && !tensor.Shape(c.shape).Equal(a.Shape) {
			t.Errorf("%s: shape %v, want %v", c.path, a.Shape, c.shape)
		}
	}
	ff, _ := rec.Get(blk + ".ff")
	net2, _ := rec.Get(blk + ".ff.net.2")
	ds, _ := rec.Get("down_blocks.0.downsamplers.0")
	dsConv, _ := rec.Get("down_blocks.0.downsamplers.0.conv")
	if golden.MaxAbs(ff.Data, net2.Data) != 0 || golden.MaxAbs(ds.Data, dsConv.Data) != 0 {
		t.Error("a module's output differs from its last child's")
	}

	out2, err := u.Forward(context.Background(), b, Input{Sample: sample, Timesteps: t2, EncoderHiddenStates: ctx, TextEmbeds: text, TimeIDs: ids}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want2, _ := g.Get("out2.sample")
	golden.Check(t, "out2.sample (per-sample timesteps)", b.ToFloat32(out2), want2, 1e-4)
}

func TestGoldenTinyBase(t *testing.T) {
	goldenUNet(t, "tiny/goldens/unet_base.safetensors", "tiny/models/sdxl-tiny-base/unet")
}

func TestGoldenTinyRefiner(t *testing.T) {
	goldenUNet(t, "tiny/goldens/unet_refiner.safetensors", "tiny/models/sdxl-tiny-refiner/unet")
}
