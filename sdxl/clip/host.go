package clip

import (
	"fmt"

	"github.com/sdxl-go/sdxl/tensor"
)

// HostEncoder adapts one text encoder to the host-slice interface of
// sdxl/prompt (prompt.Encoder): Encode returns hidden_states[-2] (SDXL's
// conditioning features, before the final layer norm) as row-major
// [rows, L, D] and, for an encoder with a projection, text_embeds
// [rows, P].
type HostEncoder struct {
	Backend tensor.Backend
	Model   *TextModel
}

// Dim is the hidden size.
func (e *HostEncoder) Dim() int { return e.Model.Config.HiddenSize }

// Encode runs the encoder on rows of ids. mask is nil or transformers'
// attention_mask, one row per id row: 0 hides that key position from every
// query (combined with the causal mask), anything else attends.
func (e *HostEncoder) Encode(ids [][]int32, mask [][]int32) (hidden, pooled []float32, err error) {
	req := Request{HiddenStates: []int{-2}, Final: e.Model.TextProjection != nil}
	if mask != nil {
		if len(mask) != len(ids) {
			return nil, nil, fmt.Errorf("clip: attention mask has %d rows for %d token rows", len(mask), len(ids))
		}
		req.AttentionMask = make([][]bool, len(mask))
		for r, row := range mask {
			req.AttentionMask[r] = make([]bool, len(row))
			for j, v := range row {
				req.AttentionMask[r][j] = v != 0
			}
		}
	}
	o, err := e.Model.Forward(e.Backend, ids, req)
	if err != nil {
		return nil, nil, err
	}
	defer o.Free()
	hidden = e.Backend.ToFloat32(o.HiddenStates[0])
	if o.TextEmbeds != nil {
		pooled = e.Backend.ToFloat32(o.TextEmbeds)
	}
	return hidden, pooled, e.Backend.Err()
}
