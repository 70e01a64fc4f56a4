package clip

import (
	"context"
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
	// Context, when set, stops an encoding in progress once it ends
	// (prompt.Encoder has no context argument).
	Context context.Context
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
	ctx := e.Context
	if ctx == nil {
		ctx = context.Background()
	}
	s := tensor.NewScope(e.Backend)
	defer s.Release()
	o, err := e.Model.Forward(ctx, s, ids, req)
	if err != nil {
		return nil, nil, err
	}
	hidden = s.ToFloat32(o.HiddenStates[0])
	if o.TextEmbeds != nil {
		pooled = s.ToFloat32(o.TextEmbeds)
	}
	return hidden, pooled, e.Backend.Err()
}
