// Package prompt turns prompt text into SDXL conditioning with prompt
// weighting, reproducing two reference implementations:
//
//   - Compel 2.4 (damian0815/compel): ParseCompel for its syntax, Compel for
//     its EmbeddingsProvider math, CompelForSDXL for the SDXL wrapper with
//     long prompts (truncate_long_prompts=False);
//   - AUTOMATIC1111's webui: ParseA1111 for its emphasis syntax and
//     EncodeA1111 for its 75-token chunking (comma backtrack, BREAK) and
//     mean-preserving emphasis.
//
// The math runs against the Encoder interface, so it is tested without a
// real model; sdxl/prompt/prompttest checks a real encoder against the
// golden Compel conditionings.
package prompt

import (
	"errors"
	"fmt"
	"math"

	"github.com/sdxl-go/sdxl/sdxl/tokenizer"
)

// Length is the token count of one encoder pass (BOS + 75 + EOS).
const Length = tokenizer.MaxLength

// Encoder is one CLIP text encoder as prompt weighting uses it.
type Encoder interface {
	// Encode runs the encoder on len(ids) rows of Length ids. mask is nil
	// (attend to every position) or holds one row per id row with 1 to
	// attend and 0 to mask that key out, like transformers' attention_mask
	// (combined with the causal mask). It returns the per-token hidden
	// states the conditioning uses, row-major [len(ids), Length, Dim()]
	// (SDXL: hidden_states[-2], before the final layer norm), and for an
	// encoder with a text projection the pooled text embeddings
	// [len(ids), PooledDim] (nil otherwise).
	Encode(ids [][]int32, mask [][]int32) (hidden, pooled []float32, err error)
	// Dim is the hidden size.
	Dim() int
}

// Conditioning is a conditioning tensor [Tokens, Dim] (row-major) with the
// pooled vector when the encoders give one.
type Conditioning struct {
	Embeds []float32
	Tokens int
	Dim    int
	Pooled []float32
}

// TokenPlan is what Compel feeds one encoder for one flattened prompt:
// chunks of Length ids with per-token weights and the attention mask, and
// where each fragment's tokens sit (Compel's get_token_ids_and_expand_weights
// and _get_token_ranges_for_fragments).
type TokenPlan struct {
	IDs     []int32   // n*Length
	Weights []float32 // per id (torch float32)
	Mask    []int32   // per id, 1 everywhere (padding_attention_mask_value=1)
	// Ranges holds the inclusive [start, end] index of each fragment's
	// tokens in IDs, {-1, -1} for a fragment without tokens; with
	// truncation it may be shorter than the fragment list.
	Ranges [][2]int
}

// Chunks is the number of Length-id chunks.
func (p *TokenPlan) Chunks() int { return len(p.IDs) / Length }

// provider is Compel's EmbeddingsProvider for one tokenizer and encoder.
type provider struct {
	tok      *tokenizer.Tokenizer
	enc      Encoder
	truncate bool
	pooled   bool
	emptyZ   []float32 // encoding of BOS EOS pad..., computed once
}

// fragmentIDs is get_token_ids(texts, include_start_and_end_markers=False):
// each fragment tokenized alone, truncated to 75 tokens when truncating.
func (pv *provider) fragmentIDs(texts []string) [][]int {
	out := make([][]int, len(texts))
	for i, t := range texts {
		ids := pv.tok.Encode(t)
		if pv.truncate && len(ids) > Length-2 {
			ids = ids[:Length-2]
		}
		out[i] = ids
	}
	return out
}

// Plan builds the token plan of weighted fragments.
func (pv *provider) Plan(frags []Fragment) (*TokenPlan, error) {
	if len(frags) == 0 {
		frags = []Fragment{{"", 1}}
	}
	texts := make([]string, len(frags))
	for i, f := range frags {
		texts[i] = f.Text
	}
	per := pv.fragmentIDs(texts)
	var ids []int
	var weights []float32
	for i, fi := range per {
		ids = append(ids, fi...)
		for range fi {
			weights = append(weights, float32(frags[i].Weight))
		}
	}
	plan := pv.chunkAndPad(ids, weights)
	ranges, err := pv.ranges(plan.IDs, per, texts)
	if err != nil {
		return nil, err
	}
	plan.Ranges = ranges
	return plan, nil
}

// splitPoint is _find_next_best_split_point with SplitLongTextMode.SENTENCES:
// after the last "." word within the first 75 tokens, else after the last
// "," "." ";" ":" word, else after the last word end, else at 75.
func (pv *provider) splitPoint(ids []int) int {
	const maxLen = Length - 2
	if pv.truncate || len(ids) <= maxLen {
		return maxLen
	}
	find := func(match func(tok string) bool) int {
		for i := maxLen - 1; i >= 0; i-- {
			if match(pv.tok.Token(ids[i])) {
				return i + 1
			}
		}
		return -1
	}
	if p := find(func(t string) bool { return t == ".</w>" }); p > 0 {
		return p
	}
	if p := find(func(t string) bool { return t == ".</w>" || t == ",</w>" || t == ";</w>" || t == ":</w>" }); p > 0 {
		return p
	}
	if p := find(func(t string) bool { return len(t) >= 4 && t[len(t)-4:] == "</w>" }); p > 0 {
		return p
	}
	return maxLen
}

// chunkAndPad is _chunk_and_pad_token_ids.
func (pv *provider) chunkAndPad(ids []int, weights []float32) *TokenPlan {
	plan := &TokenPlan{}
	for {
		sp := min(pv.splitPoint(ids), len(ids))
		plan.IDs = append(plan.IDs, int32(pv.tok.BOS()))
		plan.Weights = append(plan.Weights, 1)
		for i := 0; i < sp; i++ {
			plan.IDs = append(plan.IDs, int32(ids[i]))
			plan.Weights = append(plan.Weights, weights[i])
		}
		plan.IDs = append(plan.IDs, int32(pv.tok.EOS()))
		plan.Weights = append(plan.Weights, 1)
		for len(plan.IDs)%Length != 0 {
			plan.IDs = append(plan.IDs, int32(pv.tok.PadID()))
			plan.Weights = append(plan.Weights, 1)
		}
		ids, weights = ids[sp:], weights[sp:]
		if pv.truncate || len(ids) == 0 {
			break
		}
	}
	plan.Mask = make([]int32, len(plan.IDs))
	for i := range plan.Mask {
		plan.Mask[i] = 1
	}
	return plan
}

// ranges is _get_token_ranges_for_fragments: it walks the chunked ids to
// find each fragment's tokens, stepping over chunk markers when not
// truncating.
func (pv *provider) ranges(all []int32, per [][]int, texts []string) ([][2]int, error) {
	bos, eos, pad := int32(pv.tok.BOS()), int32(pv.tok.EOS()), int32(pv.tok.PadID())
	n := len(all)
	start := 0
	var out [][2]int
	for fi, ids := range per {
		if len(ids) == 0 {
			out = append(out, [2]int{-1, -1})
			continue
		}
		if pv.truncate && start >= Length-1 {
			break
		}
		for {
			if start >= n-1 {
				if pv.truncate {
					start = n - 1
					break
				}
				return nil, fmt.Errorf("compel: cannot find the start of fragment %d %q in the token ids", fi, texts[fi])
			}
			if all[start] == int32(ids[0]) {
				break
			}
			start++
		}
		end, rel := start, 0
		for {
			if end >= n-1 {
				if pv.truncate {
					end = n - 1
					break
				}
				return nil, fmt.Errorf("compel: cannot find the end of fragment %d %q in the token ids", fi, texts[fi])
			}
			switch {
			case all[end] == int32(ids[rel]):
				rel++
				if rel == len(ids) {
					goto found
				}
				end++
			case !pv.truncate && (all[end] == eos || all[end] == pad || all[end] == bos):
				end++
			default:
				return nil, fmt.Errorf("compel: token sequence mismatch for fragment %d %q", fi, texts[fi])
			}
		}
	found:
		out = append(out, [2]int{start, end})
		start = end + 1
	}
	return out, nil
}

// encodeChunks runs the encoder over a plan's chunks with a mask (nil when
// it is all ones) and returns [n*Length, D].
func (pv *provider) encodeChunks(ids []int32, mask []int32) ([]float32, error) {
	n := len(ids) / Length
	rows := make([][]int32, n)
	var mrows [][]int32
	allOnes := true
	for _, m := range mask {
		if m != 1 {
			allOnes = false
			break
		}
	}
	if mask != nil && !allOnes {
		mrows = make([][]int32, n)
	}
	for c := 0; c < n; c++ {
		rows[c] = ids[c*Length : (c+1)*Length]
		if mrows != nil {
			mrows[c] = mask[c*Length : (c+1)*Length]
		}
	}
	h, _, err := pv.enc.Encode(rows, mrows)
	if err != nil {
		return nil, err
	}
	if len(h) != n*Length*pv.enc.Dim() {
		return nil, fmt.Errorf("compel: encoder returned %d values for %d rows of %d x %d", len(h), n, Length, pv.enc.Dim())
	}
	return h, nil
}

// empty returns empty_z: the encoding of BOS, EOS, then pad ids.
func (pv *provider) empty() ([]float32, error) {
	if pv.emptyZ != nil {
		return pv.emptyZ, nil
	}
	ids, err := pv.tok.PadIDs(nil, Length)
	if err != nil {
		return nil, err
	}
	z, err := pv.encodeChunks(ids, nil)
	if err != nil {
		return nil, err
	}
	pv.emptyZ = z
	return z, nil
}

// weighted is build_weighted_embedding_tensor: each chunk encoded, and
// where a token's weight is not 1 its vector becomes
// empty + (z - empty) * w (float32 throughout, no fused multiply-add).
func (pv *provider) weighted(plan *TokenPlan, mask []int32) ([]float32, error) {
	z, err := pv.encodeChunks(plan.IDs, mask)
	if err != nil {
		return nil, err
	}
	D := pv.enc.Dim()
	for c := 0; c < plan.Chunks(); c++ {
		ws := plan.Weights[c*Length : (c+1)*Length]
		identity := true
		for _, w := range ws {
			if w != 1 {
				identity = false
				break
			}
		}
		if identity {
			continue
		}
		e, err := pv.empty()
		if err != nil {
			return nil, err
		}
		for t, w := range ws {
			if w == 1 {
				continue
			}
			row := z[(c*Length+t)*D : (c*Length+t+1)*D]
			erow := e[t*D : (t+1)*D]
			for k := range row {
				d := float32(row[k] - erow[k])
				m := float32(d * w)
				row[k] = erow[k] + m
			}
		}
	}
	return z, nil
}

// Embeddings is get_embeddings_for_weighted_prompt_fragments for one
// prompt: the weighted encoding, blended toward versions with each
// down-weighted (w < 1) fragment masked out, with lerp weight
// tan((1 - w) * pi / 2) against 1 for the base, normalised.
func (pv *provider) Embeddings(frags []Fragment) ([]float32, *TokenPlan, error) {
	plan, err := pv.Plan(frags)
	if err != nil {
		return nil, nil, err
	}
	base, err := pv.weighted(plan, plan.Mask)
	if err != nil {
		return nil, nil, err
	}
	embs := [][]float32{base}
	lerp := []float64{1}
	for i, r := range plan.Ranges {
		w := 1.0
		if len(frags) > 0 {
			w = frags[i].Weight
		}
		if !(w < 1) {
			continue
		}
		if r[0] < 0 {
			// Compel fails here too (slicing with None).
			return nil, nil, fmt.Errorf("compel: fragment %d %q has weight %g but no tokens", i, frags[i].Text, w)
		}
		mask := append([]int32(nil), plan.Mask...)
		for j := r[0]; j <= r[1] && j < len(mask); j++ {
			mask[j] = 0
		}
		if !pv.truncate {
			for j := 0; j < len(mask); j += Length {
				mask[j] = 1
				mask[j+Length-1] = 1
			}
		}
		without, err := pv.weighted(plan, mask)
		if err != nil {
			return nil, nil, err
		}
		embs = append(embs, without)
		fw := math.Max(1e-5, w)
		lerp = append(lerp, math.Tan((1.0-fw)*math.Pi/2))
	}
	if len(embs) == 1 {
		return base, plan, nil
	}
	return blendEmbeddings(embs, lerp, true), plan, nil
}

// blendEmbeddings is apply_embedding_weights: sum_k emb_k * w_k with the
// weights as float32, divided by their float32 sum when normalising.
func blendEmbeddings(embs [][]float32, weights []float64, normalize bool) []float32 {
	w := make([]float32, len(weights))
	var sum float32
	for i, x := range weights {
		w[i] = float32(x)
		sum += w[i]
	}
	if normalize {
		for i := range w {
			w[i] = float32(w[i] / sum)
		}
	}
	out := make([]float32, len(embs[0]))
	for j := range out {
		var acc float32
		for k := range embs {
			acc += float32(embs[k][j] * w[k])
		}
		out[j] = acc
	}
	return out
}

// Pair is one tokenizer and its encoder.
type Pair struct {
	Tokenizer *tokenizer.Tokenizer
	Encoder   Encoder
	// Pooled says whether the pooled vector comes from this encoder
	// (compel's requires_pooled).
	Pooled bool
}

// Compel mirrors compel.Compel over one or more tokenizer/encoder pairs;
// with several (compel's EmbeddingsProviderMulti) the conditionings are
// concatenated along the feature axis and the pooled vectors of the pairs
// marked Pooled likewise.
type Compel struct {
	providers []*provider
}

// NewCompel returns a Compel; truncate is truncate_long_prompts.
func NewCompel(truncate bool, pairs ...Pair) (*Compel, error) {
	if len(pairs) == 0 {
		return nil, errors.New("compel: no tokenizer/encoder pair")
	}
	c := &Compel{}
	for i, p := range pairs {
		if p.Tokenizer == nil || p.Encoder == nil {
			return nil, fmt.Errorf("compel: pair %d lacks a tokenizer or an encoder", i)
		}
		c.providers = append(c.providers, &provider{tok: p.Tokenizer, enc: p.Encoder, truncate: truncate, pooled: p.Pooled})
	}
	return c, nil
}

// Dim is the conditioning width (the sum of the encoders' hidden sizes).
func (c *Compel) Dim() int {
	d := 0
	for _, pv := range c.providers {
		d += pv.enc.Dim()
	}
	return d
}

// Plans returns each pair's token plan for a flattened prompt's fragments.
func (c *Compel) Plans(frags []Fragment) ([]*TokenPlan, error) {
	var out []*TokenPlan
	for _, pv := range c.providers {
		p, err := pv.Plan(frags)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Empty returns the empty-prompt conditioning [Length, Dim] (empty_z of
// every pair, concatenated).
func (c *Compel) Empty() (*Conditioning, error) {
	var parts [][]float32
	for _, pv := range c.providers {
		e, err := pv.empty()
		if err != nil {
			return nil, err
		}
		parts = append(parts, e)
	}
	return c.concatFeatures(parts, Length)
}

// concatFeatures joins per-provider [tokens, D_i] blocks along features.
func (c *Compel) concatFeatures(parts [][]float32, tokens int) (*Conditioning, error) {
	D := c.Dim()
	out := &Conditioning{Embeds: make([]float32, tokens*D), Tokens: tokens, Dim: D}
	off := 0
	for i, pv := range c.providers {
		d := pv.enc.Dim()
		if len(parts[i]) != tokens*d {
			return nil, fmt.Errorf("compel: encoder %d gives %d tokens, encoder 0 gives %d (the tokenizers chunked the prompt differently)", i, len(parts[i])/d, tokens)
		}
		for t := 0; t < tokens; t++ {
			copy(out.Embeds[t*D+off:t*D+off+d], parts[i][t*d:(t+1)*d])
		}
		off += d
	}
	return out, nil
}

// flattened encodes one flattened prompt with every provider.
func (c *Compel) flattened(frags []Fragment) (*Conditioning, error) {
	var parts [][]float32
	tokens := -1
	for _, pv := range c.providers {
		z, plan, err := pv.Embeddings(frags)
		if err != nil {
			return nil, err
		}
		if tokens < 0 {
			tokens = len(plan.IDs)
		}
		parts = append(parts, z)
	}
	return c.concatFeatures(parts, tokens)
}

// Build is build_conditioning_tensor: the prompt parsed as Compel syntax,
// each part encoded (blends blended, swaps as their original side padded to
// the edited length, .and() parts weighted against the empty prompt and
// concatenated along tokens), and the pooled vector from the raw text.
func (c *Compel) Build(text string) (*Conditioning, error) {
	parsed, err := ParseCompel(text)
	if err != nil {
		return nil, err
	}
	return c.BuildParsed(text, parsed)
}

// BuildParsed is Build for an already parsed prompt; text is used for the
// pooled vector only.
func (c *Compel) BuildParsed(text string, parsed *CompelParse) (*Conditioning, error) {
	var out *Conditioning
	for i, pr := range parsed.Prompts {
		var cond *Conditioning
		var err error
		switch {
		case pr.Blend != nil:
			conds := make([]*Conditioning, len(pr.Blend.Prompts))
			for j, fs := range pr.Blend.Prompts {
				if conds[j], err = c.flattened(fs); err != nil {
					return nil, err
				}
			}
			if err := c.PadToSameLength(conds...); err != nil {
				return nil, err
			}
			embs := make([][]float32, len(conds))
			for j := range conds {
				embs[j] = conds[j].Embeds
			}
			cond = &Conditioning{Embeds: blendEmbeddings(embs, pr.Blend.Weights, pr.Blend.Normalize), Tokens: conds[0].Tokens, Dim: conds[0].Dim}
		case pr.Edited != nil:
			if cond, err = c.flattened(pr.Fragments); err != nil {
				return nil, err
			}
			// The original is padded to the edited side's length, which
			// depends only on its chunk count.
			maxTok := cond.Tokens
			for _, pv := range c.providers {
				plan, err := pv.Plan(pr.Edited)
				if err != nil {
					return nil, err
				}
				maxTok = max(maxTok, len(plan.IDs))
			}
			if err := c.padTo(cond, maxTok); err != nil {
				return nil, err
			}
		default:
			if cond, err = c.flattened(pr.Fragments); err != nil {
				return nil, err
			}
		}
		if w := parsed.Weights[i]; w != 1 {
			empty, err := c.Empty()
			if err != nil {
				return nil, err
			}
			if err := c.PadToSameLength(empty, cond); err != nil {
				return nil, err
			}
			w32 := float32(w)
			for k := range cond.Embeds {
				d := float32(cond.Embeds[k] - empty.Embeds[k])
				cond.Embeds[k] = empty.Embeds[k] + float32(d*w32)
			}
		}
		if out == nil {
			out = cond
		} else {
			out.Embeds = append(out.Embeds, cond.Embeds...)
			out.Tokens += cond.Tokens
		}
	}
	pooled, err := c.Pooled(text)
	if err != nil {
		return nil, err
	}
	out.Pooled = pooled
	return out, nil
}

// Pooled is get_pooled_embeddings: the raw text (syntax characters
// included) tokenized to Length ids, truncated and padded, encoded without
// a mask; the pooled vectors of the Pooled pairs, concatenated (nil when
// none is marked).
func (c *Compel) Pooled(text string) ([]float32, error) {
	var out []float32
	for _, pv := range c.providers {
		if !pv.pooled {
			continue
		}
		ids, err := pv.tok.EncodePadded(text, Length)
		if err != nil {
			return nil, err
		}
		_, pooled, err := pv.enc.Encode([][]int32{ids}, nil)
		if err != nil {
			return nil, err
		}
		if pooled == nil {
			return nil, errors.New("compel: the pooled encoder returned no pooled output")
		}
		out = append(out, pooled...)
	}
	return out, nil
}

// padTo appends empty-prompt chunks until cond has tokens rows.
func (c *Compel) padTo(cond *Conditioning, tokens int) error {
	if cond.Tokens == tokens {
		return nil
	}
	if (tokens-cond.Tokens)%Length != 0 || tokens < cond.Tokens {
		return fmt.Errorf("compel: cannot pad %d tokens to %d with %d-token chunks", cond.Tokens, tokens, Length)
	}
	empty, err := c.Empty()
	if err != nil {
		return err
	}
	for cond.Tokens < tokens {
		cond.Embeds = append(cond.Embeds, empty.Embeds...)
		cond.Tokens += Length
	}
	return nil
}

// PadToSameLength is pad_conditioning_tensors_to_same_length: shorter
// conditionings get empty-prompt chunks appended.
func (c *Compel) PadToSameLength(conds ...*Conditioning) error {
	maxTok := 0
	for _, x := range conds {
		maxTok = max(maxTok, x.Tokens)
	}
	for _, x := range conds {
		if err := c.padTo(x, maxTok); err != nil {
			return err
		}
	}
	return nil
}

// CompelForSDXL mirrors compel's CompelForSDXL: one Compel per encoder,
// both with truncate_long_prompts=False, the pooled vector from encoder 2.
type CompelForSDXL struct {
	c1, c2 *Compel
}

// NewCompelForSDXL builds the wrapper from SDXL's two tokenizers and
// encoders.
func NewCompelForSDXL(tok1 *tokenizer.Tokenizer, enc1 Encoder, tok2 *tokenizer.Tokenizer, enc2 Encoder) (*CompelForSDXL, error) {
	c1, err := NewCompel(false, Pair{Tokenizer: tok1, Encoder: enc1})
	if err != nil {
		return nil, err
	}
	c2, err := NewCompel(false, Pair{Tokenizer: tok2, Encoder: enc2, Pooled: true})
	if err != nil {
		return nil, err
	}
	return &CompelForSDXL{c1, c2}, nil
}

// Encode returns the conditionings of prompt and negative: per encoder,
// positive and negative padded to the same length with that encoder's
// empty-prompt encoding, then the two encoders' sequences padded to the
// same length the same way and concatenated along features (768+1280 for
// SDXL).
func (s *CompelForSDXL) Encode(prompt, negative string) (pos, neg *Conditioning, err error) {
	l := make([]*Conditioning, 2)
	r := make([]*Conditioning, 2)
	for i, text := range []string{prompt, negative} {
		if l[i], err = s.c1.Build(text); err != nil {
			return nil, nil, err
		}
		if r[i], err = s.c2.Build(text); err != nil {
			return nil, nil, err
		}
	}
	if err := s.c1.PadToSameLength(l...); err != nil {
		return nil, nil, err
	}
	if err := s.c2.PadToSameLength(r...); err != nil {
		return nil, nil, err
	}
	for i := range l {
		switch {
		case l[i].Tokens > r[i].Tokens:
			err = s.c2.padTo(r[i], l[i].Tokens)
		case r[i].Tokens > l[i].Tokens:
			err = s.c1.padTo(l[i], r[i].Tokens)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	out := make([]*Conditioning, 2)
	for i := range l {
		D := l[i].Dim + r[i].Dim
		c := &Conditioning{Embeds: make([]float32, l[i].Tokens*D), Tokens: l[i].Tokens, Dim: D, Pooled: r[i].Pooled}
		for t := 0; t < c.Tokens; t++ {
			copy(c.Embeds[t*D:t*D+l[i].Dim], l[i].Embeds[t*l[i].Dim:(t+1)*l[i].Dim])
			copy(c.Embeds[t*D+l[i].Dim:(t+1)*D], r[i].Embeds[t*r[i].Dim:(t+1)*r[i].Dim])
		}
		out[i] = c
	}
	return out[0], out[1], nil
}
