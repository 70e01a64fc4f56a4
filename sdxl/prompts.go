package sdxl

import (
	"fmt"

	"github.com/sdxl-go/sdxl/tensor"
)

// upload stacks [negative; prompt] (or the prompt alone without guidance)
// into the UNet's context and text_embeds tensors.
func (c *Conditioning) upload(b tensor.Backend, dt tensor.DType, cfg bool) (ctx, pooled *tensor.Tensor) {
	rows := c.N
	e, pl := c.Prompt, c.Pooled
	if cfg {
		rows = 2 * c.N
		e = append(append(make([]float32, 0, 2*len(c.Prompt)), c.Negative...), c.Prompt...)
		pl = append(append(make([]float32, 0, 2*len(c.Pooled)), c.NegativePooled...), c.Pooled...)
	}
	return b.FromFloat32(dt, tensor.Shape{rows, c.Tokens, c.Dim}, e), b.FromFloat32(dt, tensor.Shape{rows, c.PooledDim}, pl)
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

// conditioning repeats the given embeds for a batch of n.
func (g *PromptEmbeds) conditioning(m *Model, n int, cfg bool) (*Conditioning, error) {
	if g.Tokens*g.Dim != len(g.Prompt) || len(g.Pooled) == 0 {
		return nil, fmt.Errorf("prompt embeds: %d values for %d tokens of %d, %d pooled", len(g.Prompt), g.Tokens, g.Dim, len(g.Pooled))
	}
	c := &Conditioning{N: n, Tokens: g.Tokens, Dim: g.Dim, PooledDim: len(g.Pooled)}
	c.Prompt, c.Pooled = repeat(g.Prompt, n), repeat(g.Pooled, n)
	if !cfg {
		return c, nil
	}
	switch {
	case g.Negative != nil:
		if len(g.Negative) != len(g.Prompt) || len(g.NegativePooled) != len(g.Pooled) {
			return nil, fmt.Errorf("negative prompt embeds: sizes differ from the positive ones")
		}
		c.Negative, c.NegativePooled = repeat(g.Negative, n), repeat(g.NegativePooled, n)
	case m.Text.ForceZerosForEmptyPrompt:
		c.Negative, c.NegativePooled = make([]float32, len(c.Prompt)), make([]float32, len(c.Pooled))
	default:
		return nil, fmt.Errorf("prompt embeds without negative embeds: this model (no force_zeros_for_empty_prompt) needs them")
	}
	return c, nil
}
