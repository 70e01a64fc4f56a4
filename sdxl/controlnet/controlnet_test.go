package controlnet

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/capture"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/sdxl/unet"
	"github.com/sdxl-go/sdxl/tensor"
	"github.com/sdxl-go/sdxl/tensor/backendtest"
)

// cannySDXLConfig is config.json of diffusers/controlnet-canny-sdxl-1.0,
// the reference full-size SDXL ControlNet (the UNet's encoder half plus
// the conditioning embedding and zero convolutions).
const cannySDXLConfig = `{
  "_class_name": "ControlNetModel",
  "_diffusers_version": "0.20.0.dev0",
  "act_fn": "silu",
  "addition_embed_type": "text_time",
  "addition_embed_type_num_heads": 64,
  "addition_time_embed_dim": 256,
  "attention_head_dim": [5, 10, 20],
  "block_out_channels": [320, 640, 1280],
  "class_embed_type": null,
  "conditioning_channels": 3,
  "conditioning_embedding_out_channels": [16, 32, 96, 256],
  "controlnet_conditioning_channel_order": "rgb",
  "cross_attention_dim": 2048,
  "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
  "downsample_padding": 1,
  "encoder_hid_dim": null,
  "encoder_hid_dim_type": null,
  "flip_sin_to_cos": true,
  "freq_shift": 0,
  "global_pool_conditions": false,
  "in_channels": 4,
  "layers_per_block": 2,
  "mid_block_scale_factor": 1,
  "norm_eps": 1e-05,
  "norm_num_groups": 32,
  "num_attention_heads": null,
  "num_class_embeds": null,
  "only_cross_attention": false,
  "projection_class_embeddings_input_dim": 2816,
  "resnet_time_scale_shift": "default",
  "transformer_layers_per_block": [1, 2, 10],
  "upcast_attention": null,
  "use_linear_projection": true
}`

func cannyConfig(t testing.TB) *config.ControlNetConfig {
	cfg, err := config.ParseControlNetConfig("controlnet-canny-sdxl-1.0/config.json", []byte(cannySDXLConfig))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestCannySDXLStructure builds the full-size SDXL ControlNet from its
// config: its shared modules must be exactly the SDXL base UNet's (what
// ControlNetModel.from_unet copies), it must fit the base and not the
// refiner.
func TestCannySDXLStructure(t *testing.T) {
	cfg := cannyConfig(t)
	if len(cfg.Unused) != 0 {
		t.Errorf("unused keys %v", cfg.Unused)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckUNet(config.SDXLBaseUNet()); err != nil {
		t.Errorf("base UNet: %v", err)
	}
	if err := c.CheckUNet(config.SDXLRefinerUNet()); err == nil || !strings.Contains(err.Error(), "cross_attention_dim is 2048, the UNet's 1280") {
		t.Errorf("refiner UNet: err = %v", err)
	}
	u, err := unet.New(config.SDXLBaseUNet())
	if err != nil {
		t.Fatal(err)
	}
	shared := map[string][]int{}
	for _, p := range nn.Params(u, "") {
		for _, pre := range []string{"conv_in.", "time_embedding.", "add_embedding.", "down_blocks.", "mid_block."} {
			if strings.HasPrefix(p.Name, pre) {
				shared[p.Name] = p.Tensor().Shape()
			}
		}
	}
	var own, zero int64
	for _, p := range nn.Params(c, "") {
		n := int64(p.Tensor().Numel())
		if strings.HasPrefix(p.Name, "controlnet_") {
			own += n
			if !strings.HasPrefix(p.Name, "controlnet_cond_embedding.") {
				zero += n
			}
			continue
		}
		want, ok := shared[p.Name]
		if !ok || !p.Tensor().Shape().Equal(want) {
			t.Errorf("%s %v: the base UNet has %v", p.Name, p.Tensor().Shape(), want)
		}
		delete(shared, p.Name)
	}
	if len(shared) != 0 {
		t.Errorf("%d UNet encoder parameters missing from the ControlNet", len(shared))
	}
	if got := len(c.ControlNetDownBlocks); got != 9 {
		t.Errorf("%d zero convolutions on the down path, want 9", got)
	}
	t.Logf("canny SDXL ControlNet: %d parameters (%d in the conditioning embedding and zero convolutions, %d of them zero convolutions)",
		nn.CountParams(c), own, zero)
}

func TestParseConfigErrors(t *testing.T) {
	edit := func(old, new string) string { return strings.Replace(cannySDXLConfig, old, new, 1) }
	for _, c := range []struct{ json, want string }{
		{edit(`"layers_per_block": 2`, `"layers_per_block": [2, 2, 2]`), "layers_per_block: must be an integer"},
		{edit(`"cross_attention_dim": 2048`, `"cross_attention_dim": [2048, 2048, 2048]`), "cross_attention_dim: must be an integer"},
		{edit(`"controlnet_conditioning_channel_order": "rgb"`, `"controlnet_conditioning_channel_order": "rbg"`), `channel_order "rbg"`},
		{edit(`"conditioning_channels": 3`, `"conditioning_channels": 0`), "conditioning_channels = 0"},
		{edit(`"conditioning_embedding_out_channels": [16, 32, 96, 256]`, `"conditioning_embedding_out_channels": []`), "has 0 entries"},
		{edit(`"act_fn": "silu"`, `"act_fn": "silu", "mid_block_type": null`), "needs a mid block"},
		{edit(`"transformer_layers_per_block": [1, 2, 10]`, `"transformer_layers_per_block": [1, 2]`), "has 2 entries"},
		{edit(`"block_out_channels": [320, 640, 1280]`, `"block_out_channels": [320, 640]`), "2 block_out_channels for 3"},
	} {
		_, err := config.ParseControlNetConfig("cfg.json", []byte(c.json))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err = %v, want %q", err, c.want)
		}
	}
	// num_attention_heads, when set, replaces attention_head_dim; keys of
	// the UNet that the ControlNet constructor does not take are ignored.
	cfg, err := config.ParseControlNetConfig("cfg.json", []byte(edit(`"num_attention_heads": null`, `"num_attention_heads": 4, "up_block_types": []`)))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Encoder.NumAttentionHeads, []int{4, 4, 4}) || !slices.Equal(cfg.Unused, []string{"up_block_types"}) {
		t.Errorf("heads %v, unused %v", cfg.Encoder.NumAttentionHeads, cfg.Unused)
	}
	// Defaults are the constructor's (an SD 1.5-sized ControlNet).
	cfg, err = config.ParseControlNetConfig("cfg.json", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ConditioningChannels != 3 || cfg.ChannelOrder != "rgb" || cfg.CondDownscale() != 8 ||
		!slices.Equal(cfg.Encoder.BlockOutChannels, []int{320, 640, 1280, 1280}) || cfg.Encoder.CrossAttentionDim[3] != 1280 {
		t.Errorf("defaults: %+v", cfg)
	}
}

// tinyJSON is a small ControlNet for tests that need no golden data.
const tinyJSON = `{
  "addition_embed_type": "text_time", "addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 56,
  "attention_head_dim": [2, 2], "block_out_channels": [16, 32], "conditioning_embedding_out_channels": [8, 16],
  "cross_attention_dim": 24, "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"], "layers_per_block": 1,
  "norm_num_groups": 8, "transformer_layers_per_block": 1, "use_linear_projection": true
}`

func tinyNet(t testing.TB, b tensor.Backend, edit func(string) string) *ControlNet {
	js := tinyJSON
	if edit != nil {
		js = edit(js)
	}
	cfg, err := config.ParseControlNetConfig("tiny.json", []byte(js))
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nn.InitRandom(b, c, tensor.F32, 7)
	return c
}

// tinyInput is a batch of 2 at 4x4 latents (a 8x8 control image: the tiny
// embedding has one stride-2 step).
func tinyInput(b tensor.Backend, scale float64) Input {
	fill := func(seed float32, shape ...int) *tensor.Tensor {
		s := tensor.Shape(shape)
		d := make([]float32, s.Numel())
		for i := range d {
			d[i] = float32(math.Sin(float64(seed) + 0.37*float64(i)))
		}
		return b.FromFloat32(tensor.F32, s, d)
	}
	cond := fill(3, 2, 3, 8, 8)
	c := b.ToFloat32(cond)
	for i := range c {
		c[i] = c[i]*0.5 + 0.5 // [0, 1]
	}
	ids := []float32{8, 8, 0, 0, 8, 8}
	return Input{
		Sample: fill(1, 2, 4, 4, 4), Timesteps: []float32{500},
		EncoderHiddenStates: fill(2, 2, 5, 24), TextEmbeds: fill(4, 2, 8),
		TimeIDs: append(append([]float32(nil), ids...), ids...),
		Cond:    b.FromFloat32(tensor.F32, cond.Shape(), c), Scale: scale,
	}
}

func forward(t *testing.T, b tensor.Backend, c *ControlNet, in Input, rec nn.Recorder) [][]float32 {
	t.Helper()
	out, err := c.Forward(context.Background(), b, in, rec)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Free()
	var res [][]float32
	for _, d := range out.Down {
		res = append(res, b.ToFloat32(d))
	}
	return append(res, b.ToFloat32(out.Mid))
}

// TestScaleModes: residuals scale exactly by conditioning_scale, by the
// guess-mode ramp (torch.logspace(-1, 0, 5) * scale for 4 down residuals
// and the mid one), and global_pool_conditions averages them spatially.
func TestScaleModes(t *testing.T) {
	b := cpu.New()
	c := tinyNet(t, b, nil)
	plain := forward(t, b, c, tinyInput(b, 1), nil)
	if len(plain) != 5 {
		t.Fatalf("%d residuals, want 4 down + mid", len(plain))
	}
	half := forward(t, b, c, tinyInput(b, 0.7), nil)
	in := tinyInput(b, 0.7)
	in.GuessMode = true
	guess := forward(t, b, c, in, nil)
	// torch.logspace(-1, 0, 5): 10^(-1+i/4) rounded to float32.
	ramp := []float32{0.1, 0.17782794, 0.31622776, 0.56234133, 1}
	for k := range plain {
		for i, v := range plain[k] {
			if half[k][i] != v*float32(0.7) {
				t.Fatalf("residual %d [%d]: %g at scale 0.7, %g at 1", k, i, half[k][i], v)
			}
			if want := v * (ramp[k] * float32(0.7)); guess[k][i] != want {
				t.Fatalf("guess mode residual %d [%d]: %g, want %g", k, i, guess[k][i], want)
			}
		}
	}
	pooled := forward(t, b, tinyNet(t, b, func(s string) string {
		return strings.Replace(s, `"layers_per_block": 1`, `"layers_per_block": 1, "global_pool_conditions": true`, 1)
	}), tinyInput(b, 0.7), nil)
	for k := range plain {
		hw := len(plain[k]) / len(pooled[k])
		for j := range pooled[k] {
			var sum float64
			for _, v := range plain[k][j*hw : (j+1)*hw] {
				sum += float64(v * float32(0.7))
			}
			if want := sum / float64(hw); math.Abs(float64(pooled[k][j])-want) > 1e-6*(1+math.Abs(want)) {
				t.Fatalf("pooled residual %d [%d]: %g, want %g", k, j, pooled[k][j], want)
			}
		}
	}
}

func TestLogspaceMatchesTorch(t *testing.T) {
	// torch.logspace(-1, 0, 10) (an SDXL ControlNet's 9 down residuals and
	// the mid one): 10^(-1+i/9) rounded to float32.
	want := []float32{0.1, 0.12915497, 0.16681005, 0.21544346, 0.27825594, 0.35938137, 0.46415889, 0.59948425, 0.77426368, 1}
	got := logspace(-1, 0, 10)
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-8 {
			t.Errorf("logspace[%d] = %.9g, want %.9g", i, got[i], want[i])
		}
	}
}

// TestBGR: a "bgr" ControlNet sees the control image's channels reversed.
func TestBGR(t *testing.T) {
	b := cpu.New()
	rgb := tinyNet(t, b, nil)
	bgr := tinyNet(t, b, func(s string) string {
		return strings.Replace(s, `"layers_per_block": 1`, `"layers_per_block": 1, "controlnet_conditioning_channel_order": "bgr"`, 1)
	})
	in := tinyInput(b, 1)
	got := forward(t, b, bgr, in, nil)
	flipped := flipChannels(tensor.NewScope(b), in.Cond)
	in.Cond = flipped
	want := forward(t, b, rgb, in, nil)
	for k := range want {
		if !slices.Equal(got[k], want[k]) {
			t.Fatalf("residual %d differs", k)
		}
	}
}

func TestRecordPaths(t *testing.T) {
	b := cpu.New()
	c := tinyNet(t, b, nil)
	rec := capture.MustNew("controlnet_*.**", "conv_in", "mid_block", "down_blocks.1.attentions.0")
	forward(t, b, c, tinyInput(b, 1), rec)
	want := []string{"conv_in", "controlnet_cond_embedding", "controlnet_cond_embedding.blocks.0", "controlnet_cond_embedding.blocks.1",
		"controlnet_cond_embedding.conv_in", "controlnet_cond_embedding.conv_out", "controlnet_down_blocks.0", "controlnet_down_blocks.1",
		"controlnet_down_blocks.2", "controlnet_down_blocks.3", "controlnet_mid_block", "down_blocks.1.attentions.0", "mid_block"}
	got := rec.Paths()
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("recorded %v\nwant %v", got, want)
	}
}

func TestForwardInputErrors(t *testing.T) {
	b := cpu.New()
	c := tinyNet(t, b, nil)
	for _, tc := range []struct {
		name string
		edit func(*Input)
		want string
	}{
		{"size", func(in *Input) { in.Cond = b.Zeros(tensor.F32, 2, 3, 16, 16) }, "a 16x16 control image gives 8x8 features, the latents are 4x4 (want a 8x8 image)"},
		{"channels", func(in *Input) { in.Cond = b.Zeros(tensor.F32, 2, 1, 8, 8) }, "must be [2, 3, H, W]"},
		{"batch", func(in *Input) { in.Cond = b.Zeros(tensor.F32, 1, 3, 8, 8) }, "must be [2, 3, H, W]"},
		{"none", func(in *Input) { in.Cond = nil }, "got nil"},
		{"scale", func(in *Input) { in.Scale = math.NaN() }, "not a finite number"},
		{"context", func(in *Input) { in.EncoderHiddenStates = b.Zeros(tensor.F32, 2, 5, 7) }, "controlnet: encoder_hidden_states must be [2, L, 24]"},
	} {
		in := tinyInput(b, 1)
		tc.edit(&in)
		_, err := c.Forward(context.Background(), b, in, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// mapSource is an in-memory weight source.
type mapSource map[string]*tensor.Tensor

func (m mapSource) Names() []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
func (m mapSource) Shape(name string) ([]int, bool) {
	t, ok := m[name]
	if !ok {
		return nil, false
	}
	return t.Shape(), true
}
func (m mapSource) ReadFloat32(name string, dst []float32) error {
	copy(dst, m[name].Backend().ToFloat32(m[name]))
	return nil
}

func TestStrictLoad(t *testing.T) {
	b := cpu.New()
	src := mapSource{}
	for _, p := range nn.Params(tinyNet(t, b, nil), "") {
		src[p.Name] = p.Tensor()
	}
	for _, tc := range []struct {
		name string
		edit func(mapSource)
		want string
	}{
		{"missing", func(m mapSource) { delete(m, "controlnet_down_blocks.3.weight") }, `missing weight "controlnet_down_blocks.3.weight"`},
		{"unexpected", func(m mapSource) { m["controlnet_down_blocks.4.weight"] = m["controlnet_mid_block.weight"] }, `unexpected weight "controlnet_down_blocks.4.weight"`},
		{"shape", func(m mapSource) { m["controlnet_cond_embedding.conv_in.weight"] = b.Zeros(tensor.F32, 8, 1, 3, 3) }, `"controlnet_cond_embedding.conv_in.weight" has shape [8 1 3 3], the model expects [8 3 3 3]`},
	} {
		m := mapSource{}
		for k, v := range src {
			m[k] = v
		}
		tc.edit(m)
		c := tinyNet(t, b, nil)
		if err := c.Load(b, m, LoadOptions{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := tinyNet(t, b, nil).Load(b, src, LoadOptions{}); err != nil {
		t.Errorf("complete source: %v", err)
	}
}

// TestFP16Variant loads the small golden ControlNet (stored in F16) as the
// "fp16" variant of a folder and as half-precision weights.
func TestFP16Variant(t *testing.T) {
	src := golden.Path(t, smallDir)
	dir := t.TempDir()
	for from, to := range map[string]string{
		"config.json": "config.json", "diffusion_pytorch_model.safetensors": "diffusion_pytorch_model.fp16.safetensors",
	} {
		if err := os.Symlink(filepath.Join(src, from), filepath.Join(dir, to)); err != nil {
			t.Skip("no symlinks here:", err)
		}
	}
	b := cpu.New()
	if _, err := LoadDir(b, dir, LoadOptions{}); err == nil {
		t.Error("a folder with only the fp16 variant loaded without Variant")
	}
	var calls int
	c16, err := LoadDir(b, dir, LoadOptions{Variant: "fp16", DType: tensor.F16, Progress: func(int, int) { calls++ }})
	if err != nil {
		t.Fatal(err)
	}
	if calls != len(nn.Params(c16, "")) || c16.ConvIn.Weight.DType() != tensor.F16 {
		t.Errorf("%d progress calls, conv_in in %s", calls, c16.ConvIn.Weight.DType())
	}
	c32, err := LoadDir(b, src, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range nn.Params(c32, "") {
		// The file holds fp16 values: widening and narrowing are exact.
		if !slices.Equal(b.ToFloat32(p.Tensor()), b.ToFloat32(nn.Params(c16, "")[i].Tensor())) {
			t.Fatalf("%s differs between the F32 and F16 loads", p.Name)
		}
	}
}

// TestMergeSumRule: two ControlNets (the same model at scales a and b)
// merge to the float64 sum of their residuals, and to one ControlNet at
// a + b, within float32 rounding.
func TestMergeSumRule(t *testing.T) {
	b := cpu.New()
	c := tinyNet(t, b, nil)
	unit := forward(t, b, c, tinyInput(b, 1), nil)
	const sa, sb = 0.3, 0.45
	run := func(s float64) *Output {
		out, err := c.Forward(context.Background(), b, tinyInput(b, s), nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	sum := run(sa)
	sum.Merge(b, run(sb))
	both := run(sa + sb)
	got := append(append([]*tensor.Tensor(nil), sum.Down...), sum.Mid)
	one := append(append([]*tensor.Tensor(nil), both.Down...), both.Mid)
	var worst64, worstOne float64
	defer func() {
		t.Logf("largest relative error: %.3g against the float64 sum, %.3g against one ControlNet at a+b", worst64, worstOne)
	}()
	for k, r := range got {
		g := r.Backend().ToFloat32(r)
		want := make([]float64, len(g))
		var num, den, num2 float64
		o := b.ToFloat32(one[k])
		for i, v := range unit[k] {
			want[i] = float64(v)*sa + float64(v)*sb
			num += (float64(g[i]) - want[i]) * (float64(g[i]) - want[i])
			num2 += (float64(g[i]) - float64(o[i])) * (float64(g[i]) - float64(o[i]))
			den += want[i] * want[i]
		}
		e64, eOne := math.Sqrt(num/den), math.Sqrt(num2/den)
		worst64, worstOne = max(worst64, e64), max(worstOne, eOne)
		if e64 > 1e-6 {
			t.Errorf("residual %d: relative error %.3g against the float64 sum", k, e64)
		}
		if eOne > 1e-6 {
			t.Errorf("residual %d: relative error %.3g against one ControlNet at a+b", k, eOne)
		}
	}
	sum.Free()
	both.Free()
}

// TestPadZeros: guess mode's cat([zeros_like(r), r]).
func TestPadZeros(t *testing.T) {
	b := cpu.New()
	r := b.FromFloat32(tensor.F32, tensor.Shape{1, 2, 1, 1}, []float32{3, 4})
	o := &Output{Down: []*tensor.Tensor{r}, Mid: b.FromFloat32(tensor.F32, tensor.Shape{1, 1, 1, 1}, []float32{5})}
	o.PadZeros(b)
	if got := b.ToFloat32(o.Down[0]); !slices.Equal(got, []float32{0, 0, 3, 4}) || !o.Down[0].Shape().Equal(tensor.Shape{2, 2, 1, 1}) {
		t.Errorf("down: %v %v", got, o.Down[0].Shape())
	}
	if got := b.ToFloat32(o.Mid); !slices.Equal(got, []float32{0, 5}) {
		t.Errorf("mid: %v", got)
	}
}

// TestCancel: a context cancelled before the ControlNet, or during it
// (from a recorder, after conv_in), stops it at its next op with
// context.Canceled, every tensor freed.
func TestCancel(t *testing.T) {
	lb := backendtest.NewLive(cpu.New())
	c := tinyNet(t, lb, nil)
	in := tinyInput(lb, 1)
	lb.Reset()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if out, err := c.Forward(ctx, lb, in, nil); !errors.Is(err, context.Canceled) || out != nil || lb.Count() != 0 {
		t.Errorf("result %v, error %v, %d tensors left", out, err, lb.Count())
	}

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	stopped := false
	out, err := c.Forward(ctx, lb, in, nn.RecorderFunc(func(path string, _ *tensor.Tensor) {
		if stopped && !strings.HasSuffix(path, ".input") {
			t.Errorf("%s ran after the cancel", path)
		}
		if path == "conv_in" {
			cancel()
			stopped = true
		}
	}))
	if !errors.Is(err, context.Canceled) || out != nil || !stopped || lb.Count() != 0 {
		t.Errorf("cancelled after conv_in: result %v, error %v, %d tensors left", out, err, lb.Count())
	}
}
