package clip

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/tensor"
)

// tolText is DESIGN.md §2's tolerance for text encoders and prompt embeds.
const tolText = 1e-5

const tinyGolden = "tiny/goldens/text_encoders.safetensors"

func tinyDir(t *testing.T, enc string) string {
	t.Helper()
	return golden.Path(t, "tiny/models/sdxl-tiny-base/"+enc)
}

func loadTiny(t *testing.T, b tensor.Backend, enc, variant string) *TextModel {
	t.Helper()
	m, err := LoadDir(b, tinyDir(t, enc), LoadOptions{Variant: variant})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// idRows converts a golden [B, L] float tensor of token ids to rows.
func idRows(t *testing.T, f *golden.File, name string) [][]int32 {
	t.Helper()
	d, s := f.Get(name)
	if len(s) != 2 {
		t.Fatalf("%s: shape %v, want [B L]", name, s)
	}
	rows := make([][]int32, s[0])
	for r := range rows {
		rows[r] = make([]int32, s[1])
		for i := range rows[r] {
			rows[r][i] = int32(d[r*s[1]+i])
		}
	}
	return rows
}

func check(t *testing.T, b tensor.Backend, f *golden.File, name string, got *tensor.Tensor, tol float64) {
	t.Helper()
	want, shape := f.Get(name)
	if !got.Shape().Equal(shape) {
		t.Errorf("%s: shape %v, want %v", name, got.Shape(), shape)
		return
	}
	golden.Check(t, name, b.ToFloat32(got), want, tol)
}

func TestTinyTextEncoders(t *testing.T) {
	f := golden.Open(t, tinyGolden)
	b := cpu.New()
	te1 := loadTiny(t, b, "text_encoder", "")
	te2 := loadTiny(t, b, "text_encoder_2", "")
	if te1.TextProjection != nil || te2.TextProjection == nil {
		t.Fatalf("projection: te1 %v te2 %v, want only te2", te1.TextProjection != nil, te2.TextProjection != nil)
	}

	o1, err := te1.Forward(context.Background(), b, idRows(t, f, "ids_1"), Request{HiddenStates: []int{0, -2}, Final: true})
	if err != nil {
		t.Fatal(err)
	}
	check(t, b, f, "te1.embeddings", o1.HiddenStates[0], tolText)
	check(t, b, f, "te1.hidden_states_m2", o1.HiddenStates[1], tolText)
	check(t, b, f, "te1.last_hidden_state", o1.LastHiddenState, tolText)
	check(t, b, f, "te1.pooler_output", o1.Pooled, tolText)

	o2, err := te2.Forward(context.Background(), b, idRows(t, f, "ids_2"), Request{HiddenStates: []int{-2}, Final: true})
	if err != nil {
		t.Fatal(err)
	}
	check(t, b, f, "te2.hidden_states_m2", o2.HiddenStates[0], tolText)
	check(t, b, f, "te2.last_hidden_state", o2.LastHiddenState, tolText)
	check(t, b, f, "te2.text_embeds", o2.TextEmbeds, tolText)
	wantIdx, _ := f.Get("te2.pooled_index")
	for r, p := range o2.PooledIndex {
		if float32(p) != wantIdx[r] {
			t.Errorf("te2 pooled index row %d = %d, want %v", r, p, wantIdx[r])
		}
	}
}

// TestTinyHiddenStatesOnly checks that stopping early (no Final) gives the
// same hidden_states[-2] as a full run and that index errors are reported.
func TestTinyHiddenStatesOnly(t *testing.T) {
	f := golden.Open(t, tinyGolden)
	b := cpu.New()
	te1 := loadTiny(t, b, "text_encoder", "")
	o, err := te1.Forward(context.Background(), b, idRows(t, f, "ids_1"), Request{HiddenStates: []int{-2, 4, -2}})
	if err != nil {
		t.Fatal(err)
	}
	if o.LastHiddenState != nil || o.Pooled != nil {
		t.Errorf("final outputs computed without Final")
	}
	for i := range o.HiddenStates {
		check(t, b, f, "te1.hidden_states_m2", o.HiddenStates[i], tolText)
	}
	for _, bad := range []int{6, -7} {
		if _, err := te1.Forward(context.Background(), b, idRows(t, f, "ids_1"), Request{HiddenStates: []int{bad}}); err == nil || !strings.Contains(err.Error(), fmt.Sprint(bad)) {
			t.Errorf("hidden index %d: err = %v", bad, err)
		}
	}
	if _, err := te1.Forward(context.Background(), b, [][]int32{{998, 1000, 999}}, Request{Final: true}); err == nil || !strings.Contains(err.Error(), "1000") {
		t.Errorf("out-of-vocabulary id: err = %v", err)
	}
	if _, err := te1.Forward(context.Background(), b, [][]int32{make([]int32, 78)}, Request{Final: true}); err == nil || !strings.Contains(err.Error(), "78") {
		t.Errorf("too long: err = %v", err)
	}
}

// TestTinyFP16Variant loads the fp16 weight files (widened to float32): the
// loader must accept them; the numbers differ from the fp32 goldens only
// by the weights' rounding.
func TestTinyFP16Variant(t *testing.T) {
	f := golden.Open(t, tinyGolden)
	b := cpu.New()
	te2 := loadTiny(t, b, "text_encoder_2", "fp16")
	o, err := te2.Forward(context.Background(), b, idRows(t, f, "ids_2"), Request{Final: true})
	if err != nil {
		t.Fatal(err)
	}
	check(t, b, f, "te2.text_embeds", o.TextEmbeds, 1e-2)
	if _, err := LoadDir(b, tinyDir(t, "text_encoder_2"), LoadOptions{Variant: "bf16"}); err == nil || !strings.Contains(err.Error(), "bf16") {
		t.Errorf("missing variant: err = %v", err)
	}
}

// mapSource is an in-memory nn.Source for loader tests.
type mapSource map[string][]float32

func (m mapSource) Names() []string {
	var n []string
	for k := range m {
		n = append(n, k)
	}
	return n
}

func (m mapSource) Shape(name string) ([]int, bool) {
	d, ok := m[name]
	if !ok {
		return nil, false
	}
	return []int{len(d)}, true
}

func (m mapSource) ReadFloat32(name string, dst []float32) error {
	copy(dst, m[name])
	return nil
}

// shapedSource wraps a file source and lets tests rename, add or drop keys.
type shapedSource struct {
	nn.Source
	names  []string
	rename map[string]string // ours -> underlying
	extra  map[string][]int
}

func newShaped(src nn.Source, fwd func(string) string, extra map[string][]int) *shapedSource {
	s := &shapedSource{Source: src, rename: map[string]string{}, extra: extra}
	for _, n := range src.Names() {
		if o := fwd(n); o != "" {
			s.rename[o] = n
			s.names = append(s.names, o)
		}
	}
	for n := range extra {
		s.names = append(s.names, n)
	}
	return s
}

func (s *shapedSource) Names() []string { return s.names }
func (s *shapedSource) Shape(n string) ([]int, bool) {
	if sh, ok := s.extra[n]; ok {
		return sh, true
	}
	u, ok := s.rename[n]
	if !ok {
		return nil, false
	}
	return s.Source.Shape(u)
}
func (s *shapedSource) ReadFloat32(n string, dst []float32) error {
	if _, ok := s.extra[n]; ok {
		return fmt.Errorf("extra key %q must not be read", n)
	}
	return s.Source.ReadFloat32(s.rename[n], dst)
}

func TestLoadLayouts(t *testing.T) {
	fg := golden.Open(t, tinyGolden)
	b := cpu.New()
	dir := tinyDir(t, "text_encoder")
	cfg, err := config.ReadTextEncoderConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	sf, err := safetensors.Open(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	base, err := config.NewWeightSet(sf)
	if err != nil {
		t.Fatal(err)
	}
	ids := idRows(t, fg, "ids_1")
	cases := []struct {
		name    string
		fwd     func(string) string
		extra   map[string][]int
		wantErr string
	}{
		{"transformers 5 (no prefix)", func(n string) string { return n }, nil, ""},
		{"transformers 4 (text_model.) with buffers", func(n string) string { return "text_model." + n },
			map[string][]int{"text_model.embeddings.position_ids": {1, 77}, "logit_scale": {}}, ""},
		{"missing key", func(n string) string {
			if n == "encoder.layers.3.mlp.fc2.bias" {
				return ""
			}
			return n
		}, nil, `missing weight "encoder.layers.3.mlp.fc2.bias"`},
		{"unexpected key", func(n string) string { return n }, map[string][]int{"encoder.layers.5.mlp.fc1.weight": {37, 32}},
			`unexpected weight "encoder.layers.5.mlp.fc1.weight"`},
		{"both layouts at once", func(n string) string { return n },
			map[string][]int{"text_model.final_layer_norm.bias": {32}}, `both map to "final_layer_norm.bias"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = m.LoadSource(b, newShaped(base, c.fwd, c.extra), tensor.F32)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			o, err := m.Forward(context.Background(), b, ids, Request{Final: true})
			if err != nil {
				t.Fatal(err)
			}
			check(t, b, fg, "te1.last_hidden_state", o.LastHiddenState, tolText)
		})
	}
	m, _ := New(cfg)
	bad := mapSource{"embeddings.token_embedding.weight": make([]float32, 3)}
	if err := m.LoadSource(b, bad, tensor.F32); err == nil || !strings.Contains(err.Error(), "token_embedding") {
		t.Errorf("wrong shape: err = %v", err)
	}
}

func TestUnsupportedActivation(t *testing.T) {
	cfg := *config.SDXLTextEncoder()
	cfg.HiddenAct = "gelu_new"
	if _, err := New(&cfg); err == nil || !strings.Contains(err.Error(), `hidden_act "gelu_new"`) {
		t.Errorf("err = %v", err)
	}
	cfg.HiddenAct = "no_such_act"
	if _, err := New(&cfg); err == nil || !strings.Contains(err.Error(), "no_such_act") {
		t.Errorf("err = %v", err)
	}
}

func TestPoolIndex(t *testing.T) {
	for _, c := range []struct {
		ids  [][]int32
		eos  int
		want []int
	}{
		// Real tokenizer output: the first 49407 whatever the config says
		// (tokenizer 1 pads with 49407, tokenizer 2 with 0).
		{[][]int32{{49406, 320, 49407, 49407}, {49406, 49407, 0, 0}}, 2, []int{2, 1}},
		// Tiny vocabulary: the first config EOS.
		{[][]int32{{998, 5, 999, 999}, {998, 999, 0, 0}}, 999, []int{2, 1}},
		// No EOS at all: torch's argmax of an all-false row is 0.
		{[][]int32{{998, 5, 6}}, 999, []int{0}},
	} {
		got := PoolIndex(c.ids, c.eos)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("PoolIndex(%v, %d) = %v, want %v", c.ids, c.eos, got, c.want)
		}
	}
}

// tinyTokenizer stands in for the tokenizers of the tiny goldens, which
// give prompts as id lists: BOS 998, the ids truncated to 75, EOS 999, then
// the pad id (999 for tokenizer 1, 0 for tokenizer 2).
type tinyTokenizer struct {
	prompts map[string][]int32
	pad     int32
}

func (k tinyTokenizer) EncodePadded(text string, length int) ([]int32, error) {
	ids, ok := k.prompts[text]
	if !ok {
		return nil, fmt.Errorf("unknown tiny prompt %q", text)
	}
	ids = ids[:min(len(ids), length-2)]
	out := append([]int32{998}, ids...)
	out = append(out, 999)
	for len(out) < length {
		out = append(out, k.pad)
	}
	return out, nil
}

func tinyTokenizers(t *testing.T, f *golden.File) (Tokenizer, Tokenizer) {
	t.Helper()
	var params struct {
		Prompts map[string][]int32 `json:"prompts"`
	}
	if err := json.Unmarshal([]byte(f.Metadata["__params__"]), &params); err != nil {
		t.Fatal(err)
	}
	t1, t2 := tinyTokenizer{params.Prompts, 999}, tinyTokenizer{params.Prompts, 0}
	// The stand-ins must reproduce the golden ids.
	for i, p := range []string{"prompt_a", "", "prompt_long"} {
		for _, c := range []struct {
			tok  Tokenizer
			name string
		}{{t1, "ids_1"}, {t2, "ids_2"}} {
			got, err := c.tok.EncodePadded(p, 77)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(idRows(t, f, c.name)[i]) {
				t.Fatalf("stand-in tokenizer %s for %q: %v, golden %v", c.name, p, got, idRows(t, f, c.name)[i])
			}
		}
	}
	return t1, t2
}

func TestTinyEncodePrompt(t *testing.T) {
	f := golden.Open(t, tinyGolden)
	b := cpu.New()
	tok1, tok2 := tinyTokenizers(t, f)
	te1 := loadTiny(t, b, "text_encoder", "")
	te2 := loadTiny(t, b, "text_encoder_2", "")
	base := &TextEncoders{TextEncoder: te1, TextEncoder2: te2, Tokenizer: tok1, Tokenizer2: tok2, ForceZerosForEmptyPrompt: true}
	refiner := &TextEncoders{TextEncoder2: te2, Tokenizer2: tok2}

	t.Run("encode", func(t *testing.T) {
		p, err := base.EncodePrompt(context.Background(), b, PromptOptions{Prompt: []string{"prompt_a", "", "prompt_long"}, ClassifierFreeGuidance: true})
		if err != nil {
			t.Fatal(err)
		}
		check(t, b, f, "encode.prompt_embeds", p.PromptEmbeds, tolText)
		check(t, b, f, "encode.pooled_prompt_embeds", p.PooledPromptEmbeds, tolText)
		// negative_prompt=None with force_zeros_for_empty_prompt: zeros.
		for _, z := range []*tensor.Tensor{p.NegativePromptEmbeds, p.NegativePooledPromptEmbeds} {
			for _, v := range b.ToFloat32(z) {
				if v != 0 {
					t.Fatalf("negative embeds are not zeros (%v)", v)
				}
			}
		}
		if !p.NegativePromptEmbeds.Shape().Equal(p.PromptEmbeds.Shape()) || !p.NegativePooledPromptEmbeds.Shape().Equal(p.PooledPromptEmbeds.Shape()) {
			t.Errorf("zero negatives have shapes %v %v", p.NegativePromptEmbeds.Shape(), p.NegativePooledPromptEmbeds.Shape())
		}
	})
	t.Run("encode_dual", func(t *testing.T) {
		p, err := base.EncodePrompt(context.Background(), b, PromptOptions{Prompt: []string{"prompt_a"}, Prompt2: []string{"prompt_b"},
			NegativePrompt: []string{"neg_a"}, ClassifierFreeGuidance: true})
		if err != nil {
			t.Fatal(err)
		}
		check(t, b, f, "encode_dual.prompt_embeds", p.PromptEmbeds, tolText)
		check(t, b, f, "encode_dual.pooled_prompt_embeds", p.PooledPromptEmbeds, tolText)
		check(t, b, f, "encode_dual.negative_prompt_embeds", p.NegativePromptEmbeds, tolText)
		check(t, b, f, "encode_dual.negative_pooled_prompt_embeds", p.NegativePooledPromptEmbeds, tolText)
		h, err := p.Host(b)
		if err != nil {
			t.Fatal(err)
		}
		if h.Batch != 1 || h.Tokens != 77 || h.Dim != 64 || h.PooledDim != 32 {
			t.Errorf("host shapes %d %d %d %d", h.Batch, h.Tokens, h.Dim, h.PooledDim)
		}
		want, _ := f.Get("encode_dual.negative_prompt_embeds")
		golden.Check(t, "host negative_prompt_embeds", h.NegativePromptEmbeds, want, tolText)
		// The same through the id-level entry point with the golden ids.
		q, err := base.EncodePromptIDs(context.Background(), b, IDPrompts{
			IDs1: idRows(t, f, "encode_dual.ids_1"), IDs2: idRows(t, f, "encode_dual.ids_2"),
			NegIDs1: idRows(t, f, "encode_dual.neg_ids_1"), NegIDs2: idRows(t, f, "encode_dual.neg_ids_2"),
		}, PromptOptions{ClassifierFreeGuidance: true})
		if err != nil {
			t.Fatal(err)
		}
		check(t, b, f, "encode_dual.prompt_embeds", q.PromptEmbeds, tolText)
		check(t, b, f, "encode_dual.negative_pooled_prompt_embeds", q.NegativePooledPromptEmbeds, tolText)
	})
	t.Run("encode_clipskip1", func(t *testing.T) {
		p, err := base.EncodePrompt(context.Background(), b, PromptOptions{Prompt: []string{"prompt_a"}, ClipSkip: 1})
		if err != nil {
			t.Fatal(err)
		}
		check(t, b, f, "encode_clipskip1.prompt_embeds", p.PromptEmbeds, tolText)
		check(t, b, f, "encode_clipskip1.pooled_prompt_embeds", p.PooledPromptEmbeds, tolText)
		if p.NegativePromptEmbeds != nil {
			t.Errorf("negatives without classifier-free guidance")
		}
	})
	t.Run("clip_skip with negative", func(t *testing.T) {
		// Batched positive and negative rows: clip_skip applies to the
		// positive only, the negative keeps hidden_states[-2].
		p, err := base.EncodePrompt(context.Background(), b, PromptOptions{Prompt: []string{"prompt_a"}, NegativePrompt: []string{"neg_a"},
			ClipSkip: 1, ClassifierFreeGuidance: true})
		if err != nil {
			t.Fatal(err)
		}
		check(t, b, f, "encode_clipskip1.prompt_embeds", p.PromptEmbeds, tolText)
		check(t, b, f, "encode_clipskip1.pooled_prompt_embeds", p.PooledPromptEmbeds, tolText)
		check(t, b, f, "encode_dual.negative_prompt_embeds", p.NegativePromptEmbeds, tolText)
		check(t, b, f, "encode_dual.negative_pooled_prompt_embeds", p.NegativePooledPromptEmbeds, tolText)
	})
	t.Run("encode_refiner", func(t *testing.T) {
		p, err := refiner.EncodePrompt(context.Background(), b, PromptOptions{Prompt: []string{"prompt_a"}, NegativePrompt: []string{""}, ClassifierFreeGuidance: true})
		if err != nil {
			t.Fatal(err)
		}
		check(t, b, f, "encode_refiner.prompt_embeds", p.PromptEmbeds, tolText)
		check(t, b, f, "encode_refiner.pooled_prompt_embeds", p.PooledPromptEmbeds, tolText)
		check(t, b, f, "encode_refiner.negative_prompt_embeds", p.NegativePromptEmbeds, tolText)
		check(t, b, f, "encode_refiner.negative_pooled_prompt_embeds", p.NegativePooledPromptEmbeds, tolText)
		// force_zeros_for_empty_prompt is false in the refiner, so a None
		// negative prompt is encoded as "" too.
		q, err := refiner.EncodePrompt(context.Background(), b, PromptOptions{Prompt: []string{"prompt_a"}, ClassifierFreeGuidance: true})
		if err != nil {
			t.Fatal(err)
		}
		check(t, b, f, "encode_refiner.negative_prompt_embeds", q.NegativePromptEmbeds, tolText)
	})
	t.Run("num_images_per_prompt", func(t *testing.T) {
		p, err := base.EncodePrompt(context.Background(), b, PromptOptions{Prompt: []string{"prompt_a", "", "prompt_long"}, NumImagesPerPrompt: 2,
			ClassifierFreeGuidance: true})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := f.Get("encode.prompt_embeds")
		wantP, _ := f.Get("encode.pooled_prompt_embeds")
		got, gotP := b.ToFloat32(p.PromptEmbeds), b.ToFloat32(p.PooledPromptEmbeds)
		if p.PromptEmbeds.Dim(0) != 6 || p.NegativePromptEmbeds.Dim(0) != 6 || p.PooledPromptEmbeds.Dim(0) != 6 || p.NegativePooledPromptEmbeds.Dim(0) != 6 {
			t.Fatalf("shapes %v %v %v %v", p.PromptEmbeds.Shape(), p.NegativePromptEmbeds.Shape(), p.PooledPromptEmbeds.Shape(), p.NegativePooledPromptEmbeds.Shape())
		}
		row, prow := 77*64, 32
		for r := range 6 {
			golden.Check(t, fmt.Sprintf("repeated prompt_embeds row %d", r), got[r*row:(r+1)*row], want[r/2*row:(r/2+1)*row], tolText)
			golden.Check(t, fmt.Sprintf("repeated pooled row %d", r), gotP[r*prow:(r+1)*prow], wantP[r/2*prow:(r/2+1)*prow], tolText)
		}
	})
	t.Run("errors", func(t *testing.T) {
		if _, err := base.EncodePrompt(context.Background(), b, PromptOptions{Prompt: []string{"prompt_a"}, NegativePrompt: []string{"neg_a", "neg_a"}, ClassifierFreeGuidance: true}); err == nil || !strings.Contains(err.Error(), "negative_prompt has 2 entries") {
			t.Errorf("batch mismatch: err = %v", err)
		}
		if _, err := base.EncodePrompt(context.Background(), b, PromptOptions{Prompt: []string{"no such prompt"}}); err == nil || !strings.Contains(err.Error(), "no such prompt") {
			t.Errorf("tokenizer error: err = %v", err)
		}
		if _, err := (&TextEncoders{TextEncoder: te1, TextEncoder2: te1}).EncodePrompt(context.Background(), b, PromptOptions{Prompt: []string{"prompt_a"}}); err == nil || !strings.Contains(err.Error(), "text_projection") {
			t.Errorf("encoder 2 without projection: err = %v", err)
		}
	})
}

// TestLoadTextEncodersTiny loads the tiny pipelines' text side through
// model_index.json: the refiner has no text_encoder and does not zero
// empty negatives; the tiny tokenizers are null.
func TestLoadTextEncodersTiny(t *testing.T) {
	f := golden.Open(t, tinyGolden)
	b := cpu.New()
	for _, c := range []struct {
		model      string
		te1, zeros bool
		embeds     string
	}{
		{"sdxl-tiny-base", true, true, "encode_dual.prompt_embeds"},
		{"sdxl-tiny-refiner", false, false, ""},
	} {
		d, err := config.OpenModelDir(golden.Path(t, "tiny/models/"+c.model))
		if err != nil {
			t.Fatal(err)
		}
		s, err := LoadTextEncoders(b, d, LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if (s.TextEncoder != nil) != c.te1 || s.ForceZerosForEmptyPrompt != c.zeros || s.Tokenizer != nil || s.Tokenizer2 != nil {
			t.Errorf("%s: text_encoder %v, force_zeros %v, tokenizers %v %v", c.model, s.TextEncoder != nil, s.ForceZerosForEmptyPrompt, s.Tokenizer, s.Tokenizer2)
		}
		if _, err := s.EncodePrompt(context.Background(), b, PromptOptions{Prompt: []string{"a"}}); err == nil || !strings.Contains(err.Error(), "not set") {
			t.Errorf("%s: EncodePrompt without tokenizers: err = %v", c.model, err)
		}
		if c.embeds != "" {
			p, err := s.EncodePromptIDs(context.Background(), b, IDPrompts{IDs1: idRows(t, f, "encode_dual.ids_1"), IDs2: idRows(t, f, "encode_dual.ids_2")}, PromptOptions{})
			if err != nil {
				t.Fatal(err)
			}
			check(t, b, f, c.embeds, p.PromptEmbeds, tolText)
		}
	}
}

// TestTinyF16Storage runs the encoders with float16 weights and
// activations (the CPU backend rounds every op's output to fp16, as a GPU
// would store it): the causal mask uses fp16's most negative value, and the
// result stays within DESIGN.md's fp16 bound of the fp32 goldens.
func TestTinyF16Storage(t *testing.T) {
	f := golden.Open(t, tinyGolden)
	b := cpu.New()
	for _, c := range []struct{ enc, ids, want string }{
		{"text_encoder", "ids_1", "te1.hidden_states_m2"},
		{"text_encoder_2", "ids_2", "te2.text_embeds"},
	} {
		m, err := LoadDir(b, tinyDir(t, c.enc), LoadOptions{DType: tensor.F16, Variant: "fp16"})
		if err != nil {
			t.Fatal(err)
		}
		o, err := m.Forward(context.Background(), b, idRows(t, f, c.ids), Request{HiddenStates: []int{-2}, Final: true})
		if err != nil {
			t.Fatal(err)
		}
		got := o.HiddenStates[0]
		if c.want == "te2.text_embeds" {
			got = o.TextEmbeds
		}
		if got.DType() != tensor.F16 {
			t.Errorf("%s: output dtype %v, want F16", c.enc, got.DType())
		}
		check(t, b, f, c.want, got, 1e-2)
	}
}
