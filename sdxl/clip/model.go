// Package clip implements the CLIP text transformer of SDXL's two text
// encoders (transformers' CLIPTextModel for text_encoder/, CLIP ViT-L, and
// CLIPTextModelWithProjection for text_encoder_2/, OpenCLIP bigG) and SDXL's
// prompt encoding (diffusers' StableDiffusionXLPipeline.encode_prompt).
//
// The transformer is pre-LayerNorm: token + position embeddings, N encoder
// layers (layer_norm1 -> causal self-attention -> residual, layer_norm2 ->
// MLP -> residual), then final_layer_norm. SDXL conditions the UNet on
// hidden_states[-2] of both encoders (the output of layer N-2, before the last
// layer and without the final norm) and on encoder 2's projected pooled
// output.
//
// Models are built from sdxl/config's TextEncoderConfig out of meta tensors
// (New) and loaded strictly (LoadDir, LoadComponent, LoadSource); LoadTextEncoders
// assembles a pipeline folder's encoders and tokenizers into an SDXL whose
// EncodePrompt mirrors encode_prompt, and HostEncoder plugs one encoder
// into sdxl/prompt's weighting (Compel, A1111).
package clip

import (
	"context"
	"fmt"
	"math"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/tensor"
)

// TextModel is a CLIP text transformer, optionally with the text projection.
// Field tags are the checkpoint names without the "text_model." prefix that
// transformers 4 (and CLIPTextModelWithProjection in 5) writes; LoadSource
// accepts both layouts.
type TextModel struct {
	Config *config.TextEncoderConfig

	TokenEmbedding    *nn.Embedding   `st:"embeddings.token_embedding"`
	PositionEmbedding *nn.Embedding   `st:"embeddings.position_embedding"`
	Layers            []*EncoderLayer `st:"encoder.layers"`
	FinalLayerNorm    *nn.LayerNorm   `st:"final_layer_norm"`
	// TextProjection is nil for CLIPTextModel.
	TextProjection *nn.Linear `st:"text_projection"`
	// Compute, when set, is the dtype the activations run in whatever the
	// weights' dtype (the CPU keeps half-precision weights but computes in
	// float32); nil follows the weights, as diffusers with torch_dtype.
	Compute *tensor.DType

	act activation
}

// EncoderLayer is transformers' CLIPEncoderLayer.
type EncoderLayer struct {
	LayerNorm1 *nn.LayerNorm `st:"layer_norm1"`
	SelfAttn   *Attention    `st:"self_attn"`
	LayerNorm2 *nn.LayerNorm `st:"layer_norm2"`
	MLP        *MLP          `st:"mlp"`
}

// Attention is CLIPAttention: separate q/k/v projections with biases and an
// output projection.
type Attention struct {
	QProj   *nn.Linear `st:"q_proj"`
	KProj   *nn.Linear `st:"k_proj"`
	VProj   *nn.Linear `st:"v_proj"`
	OutProj *nn.Linear `st:"out_proj"`
	Heads   int
}

// MLP is CLIPMLP: fc1 -> activation -> fc2.
type MLP struct {
	FC1 *nn.Linear `st:"fc1"`
	FC2 *nn.Linear `st:"fc2"`
}

// New builds a text model of meta tensors from cfg (see LoadSource and
// nn.InitRandom to materialise it); cfg.WithProjection() adds the text
// projection.
func New(cfg *config.TextEncoderConfig) (*TextModel, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("clip: %w", err)
	}
	act, err := activationOf(cfg.HiddenAct)
	if err != nil {
		return nil, err
	}
	D := cfg.HiddenSize
	eps := float32(cfg.LayerNormEps)
	m := &TextModel{
		Config:            cfg,
		TokenEmbedding:    nn.NewEmbedding(cfg.VocabSize, D),
		PositionEmbedding: nn.NewEmbedding(cfg.MaxPositionEmbeddings, D),
		FinalLayerNorm:    nn.NewLayerNorm(D, eps),
		act:               act,
	}
	for range cfg.NumHiddenLayers {
		m.Layers = append(m.Layers, &EncoderLayer{
			LayerNorm1: nn.NewLayerNorm(D, eps),
			SelfAttn: &Attention{
				QProj:   nn.NewLinear(D, D, true),
				KProj:   nn.NewLinear(D, D, true),
				VProj:   nn.NewLinear(D, D, true),
				OutProj: nn.NewLinear(D, D, true),
				Heads:   cfg.NumAttentionHeads,
			},
			LayerNorm2: nn.NewLayerNorm(D, eps),
			MLP: &MLP{
				FC1: nn.NewLinear(D, cfg.IntermediateSize, true),
				FC2: nn.NewLinear(cfg.IntermediateSize, D, true),
			},
		})
	}
	if cfg.WithProjection() {
		m.TextProjection = nn.NewLinear(D, cfg.ProjectionDim, false)
	}
	return m, nil
}

// Request says which outputs Forward computes.
type Request struct {
	// HiddenStates lists indices into transformers' hidden_states tuple
	// (N+1 entries: the embeddings, then each layer's output); negative
	// indices count from the end, so -2 is SDXL's penultimate-layer output.
	HiddenStates []int
	// Final asks for last_hidden_state, the pooled output and, with a
	// projection, text_embeds. Without it the forward stops after the last
	// requested hidden state (SDXL's encoder 1 never runs its last layer).
	Final bool
	// PoolIndex, when not nil, gives the pooled position of each row
	// instead of PoolIndex(ids, eos_token_id) (e.g. for rows batched from
	// separate calls, whose pooling rule transformers decides per call).
	PoolIndex []int
	// AttentionMask, when not nil, is transformers' attention_mask: per row
	// and key position, false hides that token from every query (Compel
	// masks down-weighted fragments this way); it combines with the causal
	// mask. Each row must keep position 0 visible (BOS), as every
	// transformers caller does.
	AttentionMask [][]bool
}

// Output holds what a Request asked for. Tensors belong to the caller.
type Output struct {
	// HiddenStates is parallel to Request.HiddenStates, each [B, L, D].
	HiddenStates []*tensor.Tensor
	// LastHiddenState is final_layer_norm(last layer output) [B, L, D].
	LastHiddenState *tensor.Tensor
	// Pooled is LastHiddenState at PooledIndex per row [B, D]
	// (transformers' pooler_output).
	Pooled *tensor.Tensor
	// PooledIndex is the pooled position of each row.
	PooledIndex []int
	// TextEmbeds is text_projection(Pooled) [B, P] (nil without projection).
	TextEmbeds *tensor.Tensor
}

// Free releases every tensor of o.
func (o *Output) Free() {
	tensor.FreeAll(append(o.HiddenStates, o.LastHiddenState, o.Pooled, o.TextEmbeds)...)
}

// hiddenIndex turns a Python-style hidden_states index into the number of
// layers run (0 = embeddings).
func (m *TextModel) hiddenIndex(i int) (int, error) {
	n := len(m.Layers) + 1
	j := i
	if j < 0 {
		j += n
	}
	if j < 0 || j >= n {
		return 0, fmt.Errorf("clip: hidden_states index %d out of range for %d layers (%d hidden states)", i, len(m.Layers), n)
	}
	return j, nil
}

// checkIDs validates token rows: all the same length, within the position
// table, and within the vocabulary.
func (m *TextModel) checkIDs(ids [][]int32) (L int, err error) {
	if len(ids) == 0 {
		return 0, fmt.Errorf("clip: no token sequences")
	}
	L = len(ids[0])
	if L == 0 || L > m.Config.MaxPositionEmbeddings {
		return 0, fmt.Errorf("clip: sequence length %d, want 1..%d (max_position_embeddings)", L, m.Config.MaxPositionEmbeddings)
	}
	for r, row := range ids {
		if len(row) != L {
			return 0, fmt.Errorf("clip: token row %d has %d ids, row 0 has %d", r, len(row), L)
		}
		for p, id := range row {
			if id < 0 || int(id) >= m.Config.VocabSize {
				return 0, fmt.Errorf("clip: token id %d at row %d position %d is outside the vocabulary (size %d)", id, r, p, m.Config.VocabSize)
			}
		}
	}
	return L, nil
}

// PoolIndex returns, per row, the position transformers pools at. When
// every row's largest id is 49407 (the real CLIP <|endoftext|>, i.e. any
// output of the CLIP tokenizers) it is the first largest id (the legacy
// argmax rule); otherwise the first id equal to eos_token_id (0 if none,
// as torch's argmax of an all-false row). Both rules pick the first EOS
// for tokenizer output; the second is what the tiny test vocabulary needs.
func PoolIndex(ids [][]int32, eos int) []int {
	allMax := true
	for _, row := range ids {
		mx := int32(math.MinInt32)
		for _, id := range row {
			mx = max(mx, id)
		}
		if mx != 49407 {
			allMax = false
		}
	}
	out := make([]int, len(ids))
	for r, row := range ids {
		if allMax {
			best := 0
			for p, id := range row {
				if id > row[best] {
					best = p
				}
			}
			out[r] = best
			continue
		}
		for p, id := range row {
			if int(id) == eos {
				out[r] = p
				break
			}
		}
	}
	return out
}

// maskValue is torch.finfo(dtype).min, the additive mask value
// transformers' eager attention uses; masked weights underflow to an exact
// 0 after the softmax.
func maskValue(dt tensor.DType) float32 {
	switch dt {
	case tensor.F16:
		return -65504
	case tensor.BF16:
		return -3.3895314e38 // largest finite bfloat16
	}
	return -math.MaxFloat32
}

// attentionMask is the additive mask: [L, L] causal (0 on and below the
// diagonal, maskValue above), or [B, 1, L, L] when keys are also hidden
// per row.
func attentionMask(b tensor.Backend, dt tensor.DType, L int, keys [][]bool) *tensor.Tensor {
	neg := maskValue(dt)
	rows := max(len(keys), 1)
	data := make([]float32, rows*L*L)
	for r := range rows {
		m := data[r*L*L : (r+1)*L*L]
		for i := range L {
			for j := range L {
				if j > i || (keys != nil && !keys[r][j]) {
					m[i*L+j] = neg
				}
			}
		}
	}
	if keys == nil {
		return b.FromFloat32(dt, tensor.Shape{L, L}, data)
	}
	return b.FromFloat32(dt, tensor.Shape{rows, 1, L, L}, data)
}

// Forward runs the transformer on token rows of equal length (B rows of L
// ids) and returns what req asks for. Errors come from invalid ids or
// requests, or from ctx: the pass stops at the first op after it ends.
// Shape mismatches inside are programming errors and panic.
func (m *TextModel) Forward(ctx context.Context, b tensor.Backend, ids [][]int32, req Request) (_ *Output, err error) {
	L, want, layers, err := m.checkRequest(ids, req)
	if err != nil {
		return nil, err
	}
	s := tensor.NewScopeContext(ctx, b)
	defer s.Exit(&err)
	B, D := len(ids), m.Config.HiddenSize
	flat := make([]int32, 0, B*L)
	for _, row := range ids {
		flat = append(flat, row...)
	}
	pos := make([]int32, L)
	for i := range pos {
		pos[i] = int32(i)
	}
	h := s.Add(m.computed(s, m.TokenEmbedding.Forward(s, flat)).Reshape(B, L, D), m.computed(s, m.PositionEmbedding.Forward(s, pos)))

	out := &Output{HiddenStates: make([]*tensor.Tensor, len(want))}
	// keep records hidden_states[j] (a state may be requested twice) and
	// returns whether it is one, which later reads then borrow.
	keep := func(j int, x *tensor.Tensor) bool {
		kept := false
		for i, w := range want {
			if w == j {
				out.HiddenStates[i], kept = x, true
			}
		}
		return kept
	}
	kept := keep(0, h)
	var mask *tensor.Tensor
	if layers > 0 {
		mask = s.Borrow(attentionMask(s, h.DType(), L, req.AttentionMask))
	}
	for j := 1; j <= layers; j++ {
		x := h
		if kept {
			x = s.Borrow(h)
		}
		h = m.Layers[j-1].forward(s, x, mask, m.act)
		kept = keep(j, h)
	}
	if req.Final {
		if kept {
			h = s.Borrow(h)
		}
		m.final(s, out, h, ids, req)
	}
	for _, t := range append(out.HiddenStates, out.LastHiddenState, out.Pooled, out.TextEmbeds) {
		s.Keep(t)
	}
	return out, nil
}

// checkRequest validates ids and req and returns the sequence length, the
// requested hidden states as layer counts and the layers to run.
func (m *TextModel) checkRequest(ids [][]int32, req Request) (L int, want []int, layers int, err error) {
	if L, err = m.checkIDs(ids); err != nil {
		return 0, nil, 0, err
	}
	want = make([]int, len(req.HiddenStates))
	for i, h := range req.HiddenStates {
		if want[i], err = m.hiddenIndex(h); err != nil {
			return 0, nil, 0, err
		}
		layers = max(layers, want[i])
	}
	if req.Final {
		layers = len(m.Layers)
	}
	B := len(ids)
	if req.AttentionMask != nil {
		if len(req.AttentionMask) != B {
			return 0, nil, 0, fmt.Errorf("clip: attention mask has %d rows for %d token rows", len(req.AttentionMask), B)
		}
		for r, row := range req.AttentionMask {
			if len(row) != L {
				return 0, nil, 0, fmt.Errorf("clip: attention mask row %d has %d entries for %d tokens", r, len(row), L)
			}
			if !row[0] {
				return 0, nil, 0, fmt.Errorf("clip: attention mask row %d hides position 0, leaving the first query nothing to attend to", r)
			}
		}
	}
	if req.PoolIndex != nil {
		if len(req.PoolIndex) != B {
			return 0, nil, 0, fmt.Errorf("clip: %d pooling positions for %d token rows", len(req.PoolIndex), B)
		}
		for r, p := range req.PoolIndex {
			if p < 0 || p >= L {
				return 0, nil, 0, fmt.Errorf("clip: pooling position %d of row %d is outside the %d tokens", p, r, L)
			}
		}
	}
	return L, want, layers, nil
}

// computed casts an embedding lookup to the Compute dtype, if set (before
// the embeddings are summed: a sum in the weights' half precision would
// round).
func (m *TextModel) computed(s *tensor.Scope, x *tensor.Tensor) *tensor.Tensor {
	if m.Compute == nil || x.DType() == *m.Compute {
		return x
	}
	return s.Cast(x, *m.Compute)
}

// final computes last_hidden_state from the last layer's output h, the
// pooled output and the projection into out.
func (m *TextModel) final(s *tensor.Scope, out *Output, h *tensor.Tensor, ids [][]int32, req Request) {
	B, L, D := h.Dim(0), h.Dim(1), h.Dim(2)
	out.LastHiddenState = m.FinalLayerNorm.Forward(s, h)
	out.PooledIndex = PoolIndex(ids, m.Config.EOSTokenID)
	if req.PoolIndex != nil {
		out.PooledIndex = req.PoolIndex
	}
	rows := make([]int32, B)
	for r, p := range out.PooledIndex {
		rows[r] = int32(r*L + p)
	}
	out.Pooled = s.Embedding(s.Borrow(out.LastHiddenState).Reshape(B*L, D), rows)
	if m.TextProjection != nil {
		out.TextEmbeds = m.TextProjection.Forward(s, s.Borrow(out.Pooled))
	}
}

// forward is one pre-LN encoder layer on x [B, L, D].
func (l *EncoderLayer) forward(s *tensor.Scope, x, mask *tensor.Tensor, act activation) *tensor.Tensor {
	h := s.Add(x, l.SelfAttn.forward(s, l.LayerNorm1.Forward(s, s.Borrow(x)), mask))
	return s.Add(h, l.MLP.forward(s, l.LayerNorm2.Forward(s, s.Borrow(h)), act))
}

// forward is causal self-attention on x [B, L, D].
func (a *Attention) forward(s *tensor.Scope, x, mask *tensor.Tensor) *tensor.Tensor {
	q := a.QProj.Forward(s, s.Borrow(x))
	k := a.KProj.Forward(s, s.Borrow(x))
	v := a.VProj.Forward(s, x)
	return a.OutProj.Forward(s, nn.MultiHeadAttention(s, q, k, v, a.Heads, mask))
}

// forward is fc1 -> activation -> fc2.
func (m *MLP) forward(s *tensor.Scope, x *tensor.Tensor, act activation) *tensor.Tensor {
	h := m.FC1.Forward(s, x)
	switch act {
	case actGELU:
		h = s.GELU(h)
	default:
		h = s.QuickGELU(h)
	}
	return m.FC2.Forward(s, h)
}
