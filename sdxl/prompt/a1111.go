package prompt

import (
	"errors"
	"fmt"

	"github.com/sdxl-go/sdxl/sdxl/tokenizer"
)

// A1111Chunk is one 77-id pass of AUTOMATIC1111's prompt chunking: BOS, 75
// tokens (EOS-filled), EOS, and one multiplier per id.
type A1111Chunk struct {
	IDs         []int32
	Multipliers []float32
}

// DefaultCommaBacktrack is webui's comma_padding_backtrack default.
const DefaultCommaBacktrack = 20

// ChunkA1111 is webui's tokenize_line for one tokenizer: every parsed
// fragment tokenized alone (no truncation), tokens gathered into 75-token
// chunks; when a chunk is full and its last comma is at most backtrack
// tokens back, the tokens after that comma move to the next chunk; BREAK
// closes the current chunk. It returns the chunks and webui's token count.
func ChunkA1111(tok *tokenizer.Tokenizer, frags []Fragment, backtrack int) ([]A1111Chunk, int) {
	const chunkLen = Length - 2
	comma, hasComma := tok.ID(",</w>")
	eos := int32(tok.EOS())
	var chunks []A1111Chunk
	var ids []int32
	var mults []float32
	tokenCount := 0
	lastComma := -1
	next := func(isLast bool) {
		if isLast {
			tokenCount += len(ids)
		} else {
			tokenCount += chunkLen
		}
		for len(ids) < chunkLen {
			ids = append(ids, eos)
			mults = append(mults, 1)
		}
		c := A1111Chunk{IDs: make([]int32, 0, Length), Multipliers: make([]float32, 0, Length)}
		c.IDs = append(append(append(c.IDs, int32(tok.BOS())), ids...), eos)
		c.Multipliers = append(append(append(c.Multipliers, 1), mults...), 1)
		chunks = append(chunks, c)
		lastComma = -1
		ids, mults = nil, nil
	}
	for _, f := range frags {
		if f.Text == "BREAK" && f.Weight == BreakWeight {
			next(false)
			continue
		}
		w := float32(f.Weight)
		for _, t := range tok.Encode(f.Text) {
			if hasComma && t == comma {
				lastComma = len(ids)
			} else if backtrack != 0 && len(ids) == chunkLen && lastComma != -1 && len(ids)-lastComma <= backtrack {
				cut := lastComma + 1
				relocIDs := append([]int32(nil), ids[cut:]...)
				relocMults := append([]float32(nil), mults[cut:]...)
				ids, mults = ids[:cut], mults[:cut]
				next(false)
				ids, mults = relocIDs, relocMults
			}
			if len(ids) == chunkLen {
				next(false)
			}
			ids = append(ids, int32(t))
			mults = append(mults, w)
		}
	}
	if len(ids) > 0 || len(chunks) == 0 {
		next(true)
	}
	return chunks, tokenCount
}

// EncodeA1111 is webui's SDXL conditioning for one prompt (emphasis
// "Original"): the prompt parsed with ParseA1111 and chunked per encoder
// (tok2 should split "!" as ordinary text, as open_clip's tokenizer does:
// use WithPad(EOS)), every chunk encoded (encoder 2 with the ids after the
// first EOS set to 0, open_clip's padding), each chunk's vectors multiplied
// by their multipliers and rescaled so the chunk's mean is unchanged, and
// the two encoders' outputs concatenated along features. The pooled vector
// is encoder 2's for the first chunk, unweighted. Positive and negative
// conditionings of different lengths are left to the caller (webui's
// pad_cond_uncond pads with the empty prompt's encoding).
func EncodeA1111(tok1 *tokenizer.Tokenizer, enc1 Encoder, tok2 *tokenizer.Tokenizer, enc2 Encoder, text string, backtrack int) (*Conditioning, error) {
	frags, err := ParseA1111(text)
	if err != nil {
		return nil, err
	}
	c1, _ := ChunkA1111(tok1, frags, backtrack)
	c2, _ := ChunkA1111(tok2, frags, backtrack)
	if len(c1) != len(c2) {
		return nil, fmt.Errorf("a1111: the tokenizers chunk %q differently (%d and %d chunks)", text, len(c1), len(c2))
	}
	z1, _, err := encodeA1111Chunks(enc1, c1, -1)
	if err != nil {
		return nil, err
	}
	z2, pooled, err := encodeA1111Chunks(enc2, c2, 0)
	if err != nil {
		return nil, err
	}
	if pooled == nil {
		return nil, errors.New("a1111: encoder 2 returned no pooled output")
	}
	d1, d2 := enc1.Dim(), enc2.Dim()
	n := len(c1) * Length
	out := &Conditioning{Embeds: make([]float32, n*(d1+d2)), Tokens: n, Dim: d1 + d2, Pooled: pooled}
	for t := 0; t < n; t++ {
		copy(out.Embeds[t*(d1+d2):], z1[t*d1:(t+1)*d1])
		copy(out.Embeds[t*(d1+d2)+d1:], z2[t*d2:(t+1)*d2])
	}
	return out, nil
}

// encodeA1111Chunks encodes the chunks one by one (webui's process_tokens)
// and applies the "Original" emphasis; padID >= 0 replaces every id after
// the first EOS. It returns [chunks*Length, D] and the first chunk's pooled
// vector.
func encodeA1111Chunks(enc Encoder, chunks []A1111Chunk, padID int) ([]float32, []float32, error) {
	D := enc.Dim()
	var out, pooled []float32
	for ci, c := range chunks {
		ids := append([]int32(nil), c.IDs...)
		if padID >= 0 {
			for i, id := range ids {
				if id == c.IDs[len(c.IDs)-1] { // the first EOS
					for j := i + 1; j < len(ids); j++ {
						ids[j] = int32(padID)
					}
					break
				}
			}
		}
		z, p, err := enc.Encode([][]int32{ids}, nil)
		if err != nil {
			return nil, nil, err
		}
		if len(z) != Length*D {
			return nil, nil, fmt.Errorf("a1111: encoder returned %d values, want %d", len(z), Length*D)
		}
		if ci == 0 {
			pooled = p
		}
		applyOriginalEmphasis(z, c.Multipliers, D)
		out = append(out, z...)
	}
	return out, pooled, nil
}

// applyOriginalEmphasis is webui's EmphasisOriginal: z *= multiplier per
// token, then z *= old_mean / new_mean (means over the whole chunk,
// accumulated in float64).
func applyOriginalEmphasis(z []float32, mults []float32, D int) {
	mean := func() float32 {
		var s float64
		for _, v := range z {
			s += float64(v)
		}
		return float32(s / float64(len(z)))
	}
	before := mean()
	for t, m := range mults {
		row := z[t*D : (t+1)*D]
		for k := range row {
			row[k] = float32(row[k] * m)
		}
	}
	after := mean()
	ratio := float32(before / after)
	for k := range z {
		z[k] = float32(z[k] * ratio)
	}
}
