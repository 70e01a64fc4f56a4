package sdxl

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/sdxl-go/sdxl/sdxl/tokenizer"
)

// TokenIDs are the 77 ids each text encoder receives for a text: BOS, up to
// 75 tokens, EOS, padding. A refiner has only tokenizer_2 (Tokenizer nil).
type TokenIDs struct {
	Tokenizer  []int32 `json:"tokenizer,omitempty"`
	Tokenizer2 []int32 `json:"tokenizer_2"`
}

// Tokenizers are an SDXL model's two CLIP tokenizers, without the model.
type Tokenizers struct {
	tok1, tok2 *tokenizer.Tokenizer
}

// LoadTokenizers reads a diffusers folder's tokenizer/ (absent in a
// refiner) and tokenizer_2/, or, for model "", the embedded CLIP table
// with SDXL's pad rules.
func LoadTokenizers(model string) (*Tokenizers, error) {
	if model == "" {
		t1, t2, err := tokenizer.DefaultSDXL()
		return &Tokenizers{t1, t2}, err
	}
	st, err := os.Stat(model)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s: a single-file checkpoint holds no tokenizer; give a diffusers folder, or no model for the standard SDXL tokenizers", model)
	}
	d1, d2 := filepath.Join(model, "tokenizer"), filepath.Join(model, "tokenizer_2")
	if _, err := os.Stat(d2); err != nil {
		return nil, fmt.Errorf("%s: no tokenizer_2/ folder", model)
	}
	t := &Tokenizers{}
	if t.tok2, err = tokenizer.Load(d2); err != nil {
		return nil, err
	}
	if _, err := os.Stat(d1); err == nil {
		if t.tok1, err = tokenizer.Load(d1); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Encode tokenizes text for both encoders.
func (t *Tokenizers) Encode(text string) (TokenIDs, error) {
	var out TokenIDs
	var err error
	if t.tok1 != nil {
		if out.Tokenizer, err = t.tok1.EncodePadded(text, tokenizer.MaxLength); err != nil {
			return out, err
		}
	}
	out.Tokenizer2, err = t.tok2.EncodePadded(text, tokenizer.MaxLength)
	return out, err
}
