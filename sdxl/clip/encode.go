package clip

import (
	"context"
	"fmt"

	"github.com/sdxl-go/sdxl/tensor"
)

// Tokenizer turns one prompt into exactly length ids the way the pipeline
// calls its tokenizer (padding="max_length", truncation=True): BOS, the
// prompt's tokens truncated to length-2, EOS, then the pad id.
type Tokenizer interface {
	EncodePadded(text string, length int) ([]int32, error)
}

// DefaultMaxLength is CLIPTokenizer.model_max_length in the SDXL repos.
const DefaultMaxLength = 77

// TextEncoders is the text-conditioning half of an SDXL pipeline: the base's two
// encoders, or the refiner's encoder 2 alone (TextEncoder and Tokenizer
// nil), with diffusers' encode_prompt on top.
type TextEncoders struct {
	// TextEncoder is CLIP ViT-L (nil in the refiner).
	TextEncoder *TextModel
	// TextEncoder2 is OpenCLIP bigG with its projection.
	TextEncoder2 *TextModel
	// Tokenizer and Tokenizer2 feed the encoders; they are needed only by
	// EncodePrompt (EncodeIDs takes ids).
	Tokenizer, Tokenizer2 Tokenizer
	// ForceZerosForEmptyPrompt is model_index.json's
	// force_zeros_for_empty_prompt (true for the base, false for the
	// refiner): with no negative prompt the negative conditioning is zeros.
	ForceZerosForEmptyPrompt bool
	// MaxLength is tokenizer.model_max_length (0 means 77).
	MaxLength int
}

func (s *TextEncoders) maxLength() int {
	if s.MaxLength > 0 {
		return s.MaxLength
	}
	return DefaultMaxLength
}

func (s *TextEncoders) check() error {
	if s.TextEncoder2 == nil {
		return fmt.Errorf("clip: SDXL prompt encoding needs text_encoder_2")
	}
	if s.TextEncoder2.TextProjection == nil {
		return fmt.Errorf("clip: text_encoder_2 has no text_projection (config architectures must be CLIPTextModelWithProjection): SDXL's pooled embeddings come from it")
	}
	return nil
}

// EncodeIDs runs the encoders on token rows: ids1 for text_encoder (ignored
// in the refiner) and ids2 for text_encoder_2, one row per prompt. For each
// hidden-state index in hidden it returns the concatenation of both
// encoders' hidden_states[index] along the channels (diffusers uses -2, or
// -(clip_skip+2)); pooled is text_encoder_2's text_embeds. This is the
// primitive both EncodePrompt and Compel-style weighting build on.
func (s *TextEncoders) EncodeIDs(ctx context.Context, b tensor.Backend, ids1, ids2 [][]int32, hidden ...int) (embeds []*tensor.Tensor, pooled *tensor.Tensor, err error) {
	return s.encodeIDs(ctx, b, ids1, ids2, nil, hidden)
}

// encodeIDs is EncodeIDs with optional pooling positions for encoder 2.
func (s *TextEncoders) encodeIDs(ctx context.Context, b tensor.Backend, ids1, ids2 [][]int32, pool []int, hidden []int) (embeds []*tensor.Tensor, pooled *tensor.Tensor, err error) {
	if err := s.check(); err != nil {
		return nil, nil, err
	}
	if len(hidden) == 0 {
		return nil, nil, fmt.Errorf("clip: EncodeIDs needs at least one hidden-state index")
	}
	sc := tensor.NewScope(b)
	defer sc.Release()
	var parts [][]*tensor.Tensor // per encoder, per requested index
	if s.TextEncoder != nil {
		if len(ids1) != len(ids2) {
			return nil, nil, fmt.Errorf("clip: %d token rows for text_encoder but %d for text_encoder_2", len(ids1), len(ids2))
		}
		o, err := s.TextEncoder.Forward(ctx, sc, ids1, Request{HiddenStates: hidden})
		if err != nil {
			return nil, nil, fmt.Errorf("text_encoder: %w", err)
		}
		parts = append(parts, o.HiddenStates)
	}
	o2, err := s.TextEncoder2.Forward(ctx, sc, ids2, Request{HiddenStates: hidden, Final: true, PoolIndex: pool})
	if err != nil {
		return nil, nil, fmt.Errorf("text_encoder_2: %w", err)
	}
	parts = append(parts, o2.HiddenStates)

	embeds = make([]*tensor.Tensor, len(hidden))
	for i := range hidden {
		if len(parts) == 1 {
			embeds[i] = sc.Keep(parts[0][i])
			continue
		}
		// A state requested twice is one tensor: the concatenations read
		// borrows, and the scope frees the states once.
		embeds[i] = sc.Keep(sc.Concat(-1, sc.Borrow(parts[0][i]), sc.Borrow(parts[1][i])))
	}
	return embeds, sc.Keep(o2.TextEmbeds), nil
}

// PromptOptions are encode_prompt's arguments. String semantics follow
// diffusers called with Python strings, element by element: an empty
// Prompt2 or NegativePrompt2 entry (or a nil slice) falls back to Prompt /
// NegativePrompt ("" is falsy in `prompt_2 or prompt`), while NegativePrompt
// distinguishes nil (None) from "" (an explicit empty prompt): only None
// triggers force_zeros_for_empty_prompt. (A pipeline that, like the
// goldens' script, treats an empty --negative-prompt as "not given" passes
// nil.)
type PromptOptions struct {
	Prompt          []string
	Prompt2         []string
	NegativePrompt  []string
	NegativePrompt2 []string
	// NumImagesPerPrompt repeats each prompt's rows (0 means 1).
	NumImagesPerPrompt int
	// ClassifierFreeGuidance requests the negative conditioning
	// (do_classifier_free_guidance, i.e. guidance_scale > 1).
	ClassifierFreeGuidance bool
	// ClipSkip selects hidden_states[-(ClipSkip+2)] for the positive
	// prompt (0 is diffusers' None: hidden_states[-2]). As in diffusers
	// the negative prompt always uses hidden_states[-2].
	ClipSkip int
}

// PromptEmbeds is encode_prompt's result. Negative fields are nil without
// classifier-free guidance.
type PromptEmbeds struct {
	PromptEmbeds               *tensor.Tensor // [B*n, 77, C]
	NegativePromptEmbeds       *tensor.Tensor // [B*n, 77, C]
	PooledPromptEmbeds         *tensor.Tensor // [B*n, P]
	NegativePooledPromptEmbeds *tensor.Tensor // [B*n, P]
}

// Free releases every tensor.
func (p *PromptEmbeds) Free() {
	tensor.FreeAll(p.PromptEmbeds, p.NegativePromptEmbeds, p.PooledPromptEmbeds, p.NegativePooledPromptEmbeds)
}

// HostPromptEmbeds is PromptEmbeds copied to the host (row-major; the
// negative slices are nil without classifier-free guidance).
type HostPromptEmbeds struct {
	PromptEmbeds, NegativePromptEmbeds             []float32 // [Batch, Tokens, Dim]
	PooledPromptEmbeds, NegativePooledPromptEmbeds []float32 // [Batch, PooledDim]
	Batch, Tokens, Dim, PooledDim                  int
}

// Host copies the embeddings to the host.
func (p *PromptEmbeds) Host(b tensor.Backend) (*HostPromptEmbeds, error) {
	h := &HostPromptEmbeds{
		Batch: p.PromptEmbeds.Dim(0), Tokens: p.PromptEmbeds.Dim(1), Dim: p.PromptEmbeds.Dim(2),
		PooledDim:          p.PooledPromptEmbeds.Dim(1),
		PromptEmbeds:       b.ToFloat32(p.PromptEmbeds),
		PooledPromptEmbeds: b.ToFloat32(p.PooledPromptEmbeds),
	}
	if p.NegativePromptEmbeds != nil {
		h.NegativePromptEmbeds = b.ToFloat32(p.NegativePromptEmbeds)
		h.NegativePooledPromptEmbeds = b.ToFloat32(p.NegativePooledPromptEmbeds)
	}
	return h, b.Err()
}

// pick returns xs[i] unless it is missing or empty, then fallback[i].
func pick(xs, fallback []string, i int) string {
	if i < len(xs) && xs[i] != "" {
		return xs[i]
	}
	return fallback[i]
}

// tokenize runs one tokenizer over texts.
func tokenize(tok Tokenizer, which string, texts []string, length int) ([][]int32, error) {
	if tok == nil {
		return nil, fmt.Errorf("clip: %s is not set", which)
	}
	out := make([][]int32, len(texts))
	for i, t := range texts {
		ids, err := tok.EncodePadded(t, length)
		if err != nil {
			return nil, fmt.Errorf("%s: prompt %q: %w", which, t, err)
		}
		if len(ids) != length {
			return nil, fmt.Errorf("%s: prompt %q gave %d ids, want %d", which, t, len(ids), length)
		}
		out[i] = ids
	}
	return out, nil
}

// EncodePrompt is diffusers' StableDiffusionXLPipeline.encode_prompt (the
// img2img and refiner pipelines share it) from prompt strings.
func (s *TextEncoders) EncodePrompt(ctx context.Context, b tensor.Backend, opt PromptOptions) (*PromptEmbeds, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	B := len(opt.Prompt)
	if B == 0 {
		return nil, fmt.Errorf("clip: no prompt")
	}
	for _, a := range []struct {
		name string
		xs   []string
	}{{"prompt_2", opt.Prompt2}, {"negative_prompt", opt.NegativePrompt}, {"negative_prompt_2", opt.NegativePrompt2}} {
		if a.xs != nil && len(a.xs) != B {
			return nil, fmt.Errorf("clip: %s has %d entries but prompt has %d", a.name, len(a.xs), B)
		}
	}
	L := s.maxLength()
	tokenizeBoth := func(p1, p2 []string) (ids1, ids2 [][]int32, err error) {
		if s.TextEncoder != nil {
			if ids1, err = tokenize(s.Tokenizer, "tokenizer", p1, L); err != nil {
				return nil, nil, err
			}
		}
		ids2, err = tokenize(s.Tokenizer2, "tokenizer_2", p2, L)
		return ids1, ids2, err
	}
	p2 := make([]string, B)
	for i := range B {
		p2[i] = pick(opt.Prompt2, opt.Prompt, i)
	}
	ids1, ids2, err := tokenizeBoth(opt.Prompt, p2)
	if err != nil {
		return nil, err
	}
	var nids1, nids2 [][]int32
	zeros := opt.NegativePrompt == nil && s.ForceZerosForEmptyPrompt
	if opt.ClassifierFreeGuidance && !zeros {
		neg := opt.NegativePrompt
		if neg == nil {
			neg = make([]string, B) // negative_prompt or ""
		}
		neg2 := make([]string, B)
		for i := range B {
			neg2[i] = pick(opt.NegativePrompt2, neg, i)
		}
		if nids1, nids2, err = tokenizeBoth(neg, neg2); err != nil {
			return nil, err
		}
	}
	return s.EncodePromptIDs(ctx, b, IDPrompts{IDs1: ids1, IDs2: ids2, NegIDs1: nids1, NegIDs2: nids2}, opt)
}

// IDPrompts are tokenised prompts for EncodePromptIDs: one row per prompt,
// IDs1/NegIDs1 for text_encoder (nil in the refiner). NegIDs2 nil means no
// negative prompt was given (diffusers' negative_prompt=None).
type IDPrompts struct {
	IDs1, IDs2       [][]int32
	NegIDs1, NegIDs2 [][]int32
}

// EncodePromptIDs is encode_prompt after tokenisation: the ids stand for
// the already-resolved prompt/prompt_2 and negative rows (opt's strings
// are not used; its flags are). With ClassifierFreeGuidance and no negative
// rows, the negatives are zeros when ForceZerosForEmptyPrompt holds and an
// error otherwise (the caller must tokenise "").
func (s *TextEncoders) EncodePromptIDs(ctx context.Context, b tensor.Backend, p IDPrompts, opt PromptOptions) (*PromptEmbeds, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	n := max(opt.NumImagesPerPrompt, 1)
	idx := -2
	if opt.ClipSkip != 0 {
		idx = -(opt.ClipSkip + 2)
	}
	B := len(p.IDs2)
	withNeg := opt.ClassifierFreeGuidance && p.NegIDs2 != nil
	if opt.ClassifierFreeGuidance && !withNeg && !s.ForceZerosForEmptyPrompt {
		return nil, fmt.Errorf("clip: classifier-free guidance without negative ids needs force_zeros_for_empty_prompt")
	}
	if withNeg && len(p.NegIDs2) != B {
		return nil, fmt.Errorf("clip: negative prompt has batch size %d, but prompt has %d", len(p.NegIDs2), B)
	}
	sc := tensor.NewScope(b)
	defer sc.Release()
	out := &PromptEmbeds{}
	if !withNeg {
		hs, pooled, err := s.encodeIDs(ctx, sc, p.IDs1, p.IDs2, nil, []int{idx})
		if err != nil {
			return nil, err
		}
		out.PromptEmbeds, out.PooledPromptEmbeds = hs[0], pooled
		if opt.ClassifierFreeGuidance {
			out.NegativePromptEmbeds = sc.Zeros(hs[0].DType(), hs[0].Shape()...)
			out.NegativePooledPromptEmbeds = sc.Zeros(pooled.DType(), pooled.Shape()...)
		}
	} else if err := s.encodeBoth(ctx, sc, p, idx, out); err != nil {
		return nil, err
	}
	for _, f := range []**tensor.Tensor{&out.PromptEmbeds, &out.NegativePromptEmbeds, &out.PooledPromptEmbeds, &out.NegativePooledPromptEmbeds} {
		if *f != nil && n > 1 {
			*f = repeatRows(sc, *f, n)
		}
		sc.Keep(*f)
	}
	return out, nil
}

// encodeBoth encodes the positive and negative rows as one batch: the same
// numbers as diffusers' two calls (rows are independent; the pooling rule
// is still decided per call), at half the weight traffic per token.
func (s *TextEncoders) encodeBoth(ctx context.Context, sc *tensor.Scope, p IDPrompts, idx int, out *PromptEmbeds) error {
	cat := func(a, c [][]int32) [][]int32 { return append(append([][]int32{}, a...), c...) }
	var ids1 [][]int32
	if s.TextEncoder != nil {
		if len(p.NegIDs1) != len(p.IDs1) {
			return fmt.Errorf("clip: negative prompt has batch size %d for text_encoder, but prompt has %d", len(p.NegIDs1), len(p.IDs1))
		}
		ids1 = cat(p.IDs1, p.NegIDs1)
	}
	eos := s.TextEncoder2.Config.EOSTokenID
	pool := append(PoolIndex(p.IDs2, eos), PoolIndex(p.NegIDs2, eos)...)
	// The negative prompt always uses hidden_states[-2] (diffusers
	// ignores clip_skip there).
	hidden := []int{idx}
	if idx != -2 {
		hidden = append(hidden, -2)
	}
	hs, pooled, err := s.encodeIDs(ctx, sc, ids1, cat(p.IDs2, p.NegIDs2), pool, hidden)
	if err != nil {
		return err
	}
	B := len(p.IDs2)
	pos, neg := hs[0], hs[len(hs)-1]
	if len(hs) == 1 {
		pos = sc.Borrow(pos)
	}
	out.PromptEmbeds = sc.Slice(pos, 0, 0, B)
	out.NegativePromptEmbeds = sc.Slice(neg, 0, B, 2*B)
	out.PooledPromptEmbeds = sc.Slice(sc.Borrow(pooled), 0, 0, B)
	out.NegativePooledPromptEmbeds = sc.Slice(pooled, 0, B, 2*B)
	return nil
}

// repeatRows repeats each row of the leading axis n times in place
// ([a, b] -> [a, a, b, b]), diffusers' repeat(1, n, 1).view(B*n, ...).
func repeatRows(s *tensor.Scope, x *tensor.Tensor, n int) *tensor.Tensor {
	var parts []*tensor.Tensor
	for r := range x.Dim(0) {
		src := x
		if r < x.Dim(0)-1 {
			src = s.Borrow(x)
		}
		row := s.Slice(src, 0, r, r+1)
		for range n {
			parts = append(parts, row)
		}
	}
	return s.Concat(0, parts...)
}
