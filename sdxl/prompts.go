package sdxl

import (
	"fmt"

	"github.com/sdxl-go/sdxl/sdxl/clip"
	"github.com/sdxl-go/sdxl/sdxl/prompt"
	"github.com/sdxl-go/sdxl/tensor"
)

// embeds is one stage's text conditioning on the host: per-token
// embeddings [n, L, C] and pooled vectors [n, P], positive and negative
// (negative nil without classifier-free guidance).
type embeds struct {
	pos, neg             []float32
	pooledPos, pooledNeg []float32
	n, tokens, dim, pdim int
}

// upload stacks [neg; pos] (or pos alone) into the UNet's context and
// text_embeds tensors.
func (e *embeds) upload(b tensor.Backend, dt tensor.DType, cfg bool) (ctx, pooled *tensor.Tensor) {
	rows := e.n
	c := e.pos
	pl := e.pooledPos
	if cfg {
		rows = 2 * e.n
		c = append(append(make([]float32, 0, 2*len(e.pos)), e.neg...), e.pos...)
		pl = append(append(make([]float32, 0, 2*len(e.pooledPos)), e.pooledNeg...), e.pooledPos...)
	}
	return b.FromFloat32(dt, tensor.Shape{rows, e.tokens, e.dim}, c), b.FromFloat32(dt, tensor.Shape{rows, e.pdim}, pl)
}

func strs(p *string) []string {
	if p == nil {
		return nil
	}
	return []string{*p}
}

// encodePrompts turns the request's prompts into conditioning for model m.
func (p *Pipeline) encodePrompts(m *Model, req *Request, cfg bool) (*embeds, error) {
	b := p.Backend
	if req.Weighting == WeightingNone {
		pe, err := m.Text.EncodePrompt(b, clip.PromptOptions{
			Prompt:                 []string{req.Prompt},
			Prompt2:                []string{req.Prompt2},
			NegativePrompt:         strs(req.NegativePrompt),
			NegativePrompt2:        strs(req.NegativePrompt2),
			NumImagesPerPrompt:     req.NumImages,
			ClassifierFreeGuidance: cfg,
			ClipSkip:               req.ClipSkip,
		})
		if err != nil {
			return nil, err
		}
		defer pe.Free()
		h, err := pe.Host(b)
		if err != nil {
			return nil, err
		}
		return &embeds{pos: h.PromptEmbeds, neg: h.NegativePromptEmbeds, pooledPos: h.PooledPromptEmbeds,
			pooledNeg: h.NegativePooledPromptEmbeds, n: h.Batch, tokens: h.Tokens, dim: h.Dim, pdim: h.PooledDim}, nil
	}
	if err := checkWeighting(req, m, nil); err != nil {
		return nil, err
	}
	var pos, neg *prompt.Conditioning
	var err error
	zeroNeg := req.NegativePrompt == nil && m.Text.ForceZerosForEmptyPrompt
	negText := ""
	if req.NegativePrompt != nil && cfg {
		// Without guidance the negative prompt is not encoded at all (as in
		// diffusers), so it cannot lengthen the positive conditioning either
		// (weighting pads both to the longer one).
		negText = *req.NegativePrompt
	}
	enc2 := &clip.HostEncoder{Backend: b, Model: m.Text.TextEncoder2}
	switch {
	case req.Weighting == WeightingCompel && !m.IsRefiner():
		enc1 := &clip.HostEncoder{Backend: b, Model: m.Text.TextEncoder}
		c, err := prompt.NewCompelForSDXL(m.Tok1, enc1, m.Tok2, enc2)
		if err != nil {
			return nil, err
		}
		if pos, neg, err = c.Encode(req.Prompt, negText); err != nil {
			return nil, fmt.Errorf("prompt: %v", err)
		}
	case req.Weighting == WeightingCompel:
		// The refiner has encoder 2 only: one Compel over it, positive and
		// negative padded to the same length as CompelForSDXL does.
		c, err := prompt.NewCompel(false, prompt.Pair{Tokenizer: m.Tok2, Encoder: enc2, Pooled: true})
		if err != nil {
			return nil, err
		}
		if pos, err = c.Build(req.Prompt); err != nil {
			return nil, fmt.Errorf("prompt: %v", err)
		}
		if !cfg || zeroNeg {
			break
		}
		if neg, err = c.Build(negText); err != nil {
			return nil, fmt.Errorf("negative prompt: %v", err)
		}
		if err := c.PadToSameLength(pos, neg); err != nil {
			return nil, err
		}
	default: // a1111 (checkWeighting refused the refiner)
		enc1 := &clip.HostEncoder{Backend: b, Model: m.Text.TextEncoder}
		tok2, err := m.Tok2.WithPad(m.Tok2.EOS())
		if err != nil {
			return nil, err
		}
		if pos, err = prompt.EncodeA1111(m.Tok1, enc1, tok2, enc2, req.Prompt, prompt.DefaultCommaBacktrack); err != nil {
			return nil, fmt.Errorf("prompt: %v", err)
		}
		if !cfg || zeroNeg {
			break
		}
		if neg, err = prompt.EncodeA1111(m.Tok1, enc1, tok2, enc2, negText, prompt.DefaultCommaBacktrack); err != nil {
			return nil, fmt.Errorf("negative prompt: %v", err)
		}
		if neg.Tokens != pos.Tokens {
			// webui pads the shorter conditioning with the empty prompt's
			// encoding, chunk by chunk.
			empty, err := prompt.EncodeA1111(m.Tok1, enc1, tok2, enc2, "", prompt.DefaultCommaBacktrack)
			if err != nil {
				return nil, err
			}
			for pos.Tokens < neg.Tokens {
				pos.Embeds = append(pos.Embeds, empty.Embeds...)
				pos.Tokens += empty.Tokens
			}
			for neg.Tokens < pos.Tokens {
				neg.Embeds = append(neg.Embeds, empty.Embeds...)
				neg.Tokens += empty.Tokens
			}
		}
	}
	if err != nil {
		return nil, err
	}
	n := req.NumImages
	e := &embeds{n: n, tokens: pos.Tokens, dim: pos.Dim, pdim: len(pos.Pooled)}
	e.pos, e.pooledPos = repeat(pos.Embeds, n), repeat(pos.Pooled, n)
	if cfg {
		if zeroNeg {
			e.neg, e.pooledNeg = make([]float32, len(e.pos)), make([]float32, len(e.pooledPos))
		} else {
			e.neg, e.pooledNeg = repeat(neg.Embeds, n), repeat(neg.Pooled, n)
		}
	}
	return e, nil
}

func repeat(x []float32, n int) []float32 {
	out := make([]float32, 0, n*len(x))
	for i := 0; i < n; i++ {
		out = append(out, x...)
	}
	return out
}

// PromptEmbeds are precomputed conditionings for one prompt (batch 1),
// row-major: Prompt and Negative [Tokens, Dim], Pooled and NegativePooled
// [PooledDim]. A nil Negative is diffusers' None: zeros when the model has
// force_zeros_for_empty_prompt.
type PromptEmbeds struct {
	Prompt, Negative       []float32
	Pooled, NegativePooled []float32
	Tokens, Dim            int
}

func (g *PromptEmbeds) embeds(m *Model, n int, cfg bool) (*embeds, error) {
	if g.Tokens*g.Dim != len(g.Prompt) || len(g.Pooled) == 0 {
		return nil, fmt.Errorf("prompt embeds: %d values for %d tokens of %d, %d pooled", len(g.Prompt), g.Tokens, g.Dim, len(g.Pooled))
	}
	e := &embeds{n: n, tokens: g.Tokens, dim: g.Dim, pdim: len(g.Pooled)}
	e.pos, e.pooledPos = repeat(g.Prompt, n), repeat(g.Pooled, n)
	if !cfg {
		return e, nil
	}
	switch {
	case g.Negative != nil:
		if len(g.Negative) != len(g.Prompt) || len(g.NegativePooled) != len(g.Pooled) {
			return nil, fmt.Errorf("negative prompt embeds: sizes differ from the positive ones")
		}
		e.neg, e.pooledNeg = repeat(g.Negative, n), repeat(g.NegativePooled, n)
	case m.Text.ForceZerosForEmptyPrompt:
		e.neg, e.pooledNeg = make([]float32, len(e.pos)), make([]float32, len(e.pooledPos))
	default:
		return nil, fmt.Errorf("prompt embeds without negative embeds: this model (no force_zeros_for_empty_prompt) needs them")
	}
	return e, nil
}
