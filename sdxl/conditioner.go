package sdxl

import (
	"context"
	"fmt"

	"github.com/sdxl-go/sdxl/sdxl/clip"
	"github.com/sdxl-go/sdxl/sdxl/prompt"
	"github.com/sdxl-go/sdxl/tensor"
)

// Prompts are one stage's text inputs as a request gives them.
type Prompts struct {
	Prompt, Prompt2 string
	// Negative and Negative2 nil are diffusers' None (zeros for a model
	// with force_zeros_for_empty_prompt); a pointer to "" encodes "".
	Negative, Negative2 *string
	ClipSkip            int
	// NumImages repeats the conditioning for a batch.
	NumImages int
	// Guidance asks for the negative conditioning (classifier-free
	// guidance); without it the negative prompt is not encoded at all.
	Guidance bool
}

// Conditioning is one stage's text conditioning on the host, row-major:
// Prompt and Negative [N, Tokens, Dim], Pooled and NegativePooled
// [N, PooledDim]; the negative halves are nil without guidance.
type Conditioning struct {
	Prompt, Negative       []float32
	Pooled, NegativePooled []float32
	N, Tokens, Dim         int
	PooledDim              int
}

// Conditioner turns prompts into conditioning; each prompt syntax
// (Weighting) is one.
type Conditioner interface {
	// Check says, before any work, why m cannot encode p (nil if it can).
	Check(m *Model, p Prompts) error
	// Encode computes the conditioning with m's text encoders on b.
	Encode(ctx context.Context, b tensor.Backend, m *Model, p Prompts) (*Conditioning, error)
}

// Conditioner returns the conditioner of a weighting mode.
func (w Weighting) Conditioner() (Conditioner, error) {
	switch w {
	case WeightingNone, "":
		return plainConditioner{}, nil
	case WeightingCompel:
		return compelConditioner{}, nil
	case WeightingA1111:
		return a1111Conditioner{}, nil
	}
	return nil, fmt.Errorf("prompt weighting %q: want none, compel or a1111", w)
}

// plainConditioner is diffusers' own encode_prompt: no syntax, prompts
// truncated at 77 tokens.
type plainConditioner struct{}

func (plainConditioner) Check(*Model, Prompts) error { return nil }

func (plainConditioner) Encode(ctx context.Context, b tensor.Backend, m *Model, p Prompts) (*Conditioning, error) {
	pe, err := m.Text.EncodePrompt(ctx, b, clip.PromptOptions{
		Prompt:                 []string{p.Prompt},
		Prompt2:                []string{p.Prompt2},
		NegativePrompt:         strs(p.Negative),
		NegativePrompt2:        strs(p.Negative2),
		NumImagesPerPrompt:     p.NumImages,
		ClassifierFreeGuidance: p.Guidance,
		ClipSkip:               p.ClipSkip,
	})
	if err != nil {
		return nil, err
	}
	defer pe.Free()
	h, err := pe.Host(b)
	if err != nil {
		return nil, err
	}
	return &Conditioning{Prompt: h.PromptEmbeds, Negative: h.NegativePromptEmbeds, Pooled: h.PooledPromptEmbeds,
		NegativePooled: h.NegativePooledPromptEmbeds, N: h.Batch, Tokens: h.Tokens, Dim: h.Dim, PooledDim: h.PooledDim}, nil
}

func strs(p *string) []string {
	if p == nil {
		return nil
	}
	return []string{*p}
}

// checkWeighted is what every weighting syntax refuses: diffusers applies
// clip_skip and prompt_2 only in its own encode_prompt, which weighted
// prompts bypass (they arrive as prompt_embeds).
func checkWeighted(p Prompts) error {
	if p.ClipSkip != 0 {
		return &FieldError{Field: "ClipSkip", Value: p.ClipSkip, Reason: "works only with prompt weighting none (diffusers applies clip_skip only to its own prompt encoding)"}
	}
	if p.Prompt2 != "" {
		return &FieldError{Field: "Prompt2", Value: p.Prompt2, Reason: "a second prompt (prompt_2) works only with prompt weighting none"}
	}
	if p.Negative2 != nil {
		return &FieldError{Field: "NegativePrompt2", Value: *p.Negative2, Reason: "a second negative prompt (negative_prompt_2) works only with prompt weighting none"}
	}
	return nil
}

// negatives says what the weighted conditioners do with the negative
// prompt: nothing without guidance (then it cannot lengthen the positive
// conditioning either, since weighting pads both to the longer one), zeros
// for None on a force_zeros_for_empty_prompt model, else encode text.
func negatives(m *Model, p Prompts) (text string, zero, encode bool) {
	if !p.Guidance {
		return "", false, false
	}
	if p.Negative == nil && m.Text.ForceZerosForEmptyPrompt {
		return "", true, false
	}
	if p.Negative != nil {
		text = *p.Negative
	}
	return text, false, true
}

// weighted turns positive and negative prompt conditionings into a batch.
func weighted(p Prompts, pos, neg *prompt.Conditioning, zeroNeg bool) *Conditioning {
	n := max(p.NumImages, 1)
	c := &Conditioning{N: n, Tokens: pos.Tokens, Dim: pos.Dim, PooledDim: len(pos.Pooled)}
	c.Prompt, c.Pooled = repeat(pos.Embeds, n), repeat(pos.Pooled, n)
	switch {
	case !p.Guidance:
	case zeroNeg:
		c.Negative, c.NegativePooled = make([]float32, len(c.Prompt)), make([]float32, len(c.Pooled))
	default:
		c.Negative, c.NegativePooled = repeat(neg.Embeds, n), repeat(neg.Pooled, n)
	}
	return c
}

// compelConditioner is Compel's syntax; long prompts are chunked and
// padded like CompelForSDXL. The refiner (encoder 2 only) gets one Compel
// over that encoder, positive and negative padded to the same length as
// CompelForSDXL does.
type compelConditioner struct{}

func (compelConditioner) Check(m *Model, p Prompts) error { return checkWeighted(p) }

func (compelConditioner) Encode(ctx context.Context, b tensor.Backend, m *Model, p Prompts) (*Conditioning, error) {
	tok1, tok2, err := m.tokenizers()
	if err != nil {
		return nil, err
	}
	negText, zero, encodeNeg := negatives(m, p)
	enc2 := &clip.HostEncoder{Backend: b, Model: m.Text.TextEncoder2, Context: ctx}
	var pos, neg *prompt.Conditioning
	if !m.IsRefiner() {
		enc1 := &clip.HostEncoder{Backend: b, Model: m.Text.TextEncoder, Context: ctx}
		c, err := prompt.NewCompelForSDXL(tok1, enc1, tok2, enc2)
		if err != nil {
			return nil, err
		}
		// CompelForSDXL encodes a negative in any case; it is replaced by
		// zeros below when the model wants them.
		if pos, neg, err = c.Encode(p.Prompt, negText); err != nil {
			return nil, fmt.Errorf("prompt: %v", err)
		}
		return weighted(p, pos, neg, zero), nil
	}
	c, err := prompt.NewCompel(false, prompt.Pair{Tokenizer: tok2, Encoder: enc2, Pooled: true})
	if err != nil {
		return nil, err
	}
	if pos, err = c.Build(p.Prompt); err != nil {
		return nil, fmt.Errorf("prompt: %v", err)
	}
	if encodeNeg {
		if neg, err = c.Build(negText); err != nil {
			return nil, fmt.Errorf("negative prompt: %v", err)
		}
		if err := c.PadToSameLength(pos, neg); err != nil {
			return nil, err
		}
	}
	return weighted(p, pos, neg, zero), nil
}

// a1111Conditioner is AUTOMATIC1111's emphasis syntax. It needs both text
// encoders: the refiner cannot use it.
type a1111Conditioner struct{}

func (a1111Conditioner) Check(m *Model, p Prompts) error {
	if err := checkWeighted(p); err != nil {
		return err
	}
	if m.IsRefiner() {
		return &FieldError{Field: "Weighting", Value: WeightingA1111, Reason: fmt.Sprintf("prompt weighting a1111 needs the base's two text encoders; the refiner (%s) supports none and compel", m.Path)}
	}
	return nil
}

func (a1111Conditioner) Encode(ctx context.Context, b tensor.Backend, m *Model, p Prompts) (*Conditioning, error) {
	tok1, tok2, err := m.tokenizers()
	if err != nil {
		return nil, err
	}
	enc1 := &clip.HostEncoder{Backend: b, Model: m.Text.TextEncoder, Context: ctx}
	enc2 := &clip.HostEncoder{Backend: b, Model: m.Text.TextEncoder2, Context: ctx}
	if tok2, err = tok2.WithPad(tok2.EOS()); err != nil {
		return nil, err
	}
	encode := func(text string) (*prompt.Conditioning, error) {
		return prompt.EncodeA1111(tok1, enc1, tok2, enc2, text, prompt.DefaultCommaBacktrack)
	}
	pos, err := encode(p.Prompt)
	if err != nil {
		return nil, fmt.Errorf("prompt: %v", err)
	}
	negText, zero, encodeNeg := negatives(m, p)
	var neg *prompt.Conditioning
	if encodeNeg {
		if neg, err = encode(negText); err != nil {
			return nil, fmt.Errorf("negative prompt: %v", err)
		}
		if err := padA1111(pos, neg, encode); err != nil {
			return nil, err
		}
	}
	return weighted(p, pos, neg, zero), nil
}

// padA1111 pads the shorter conditioning with the empty prompt's encoding,
// chunk by chunk, as webui does.
func padA1111(pos, neg *prompt.Conditioning, encode func(string) (*prompt.Conditioning, error)) error {
	if neg.Tokens == pos.Tokens {
		return nil
	}
	empty, err := encode("")
	if err != nil {
		return err
	}
	for _, c := range []*prompt.Conditioning{pos, neg} {
		for c.Tokens < max(pos.Tokens, neg.Tokens) {
			c.Embeds = append(c.Embeds, empty.Embeds...)
			c.Tokens += empty.Tokens
		}
	}
	return nil
}

func repeat(x []float32, n int) []float32 {
	out := make([]float32, 0, n*len(x))
	for i := 0; i < n; i++ {
		out = append(out, x...)
	}
	return out
}
