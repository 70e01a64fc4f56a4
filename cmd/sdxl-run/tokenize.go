package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sdxl-go/sdxl/sdxl/tokenizer"
)

// tokenizeOutput is what `sdxl-run tokenize` prints: the 77 ids each text
// encoder receives (BOS, up to 75 tokens, EOS, padding). A refiner folder
// has no tokenizer/, so "tokenizer" is omitted there.
type tokenizeOutput struct {
	Tokenizer  []int32 `json:"tokenizer,omitempty"`
	Tokenizer2 []int32 `json:"tokenizer_2"`
}

func runTokenize(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sdxl-run tokenize", flag.ContinueOnError)
	fs.SetOutput(stderr)
	model := fs.String("model", "", "diffusers model folder (its tokenizer/ and tokenizer_2/); default: the embedded CLIP table with SDXL's pad rules")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sdxl-run tokenize [--model PATH] TEXT")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stderr); err != nil {
		return report(stderr, "sdxl-run tokenize", err)
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	// Several arguments are one text, as a shell user typing words expects.
	text := strings.Join(fs.Args(), " ")
	out, err := tokenizeText(*model, text)
	if err != nil {
		fmt.Fprintln(stderr, "sdxl-run tokenize:", err)
		return 1
	}
	js, err := json.Marshal(out)
	if err != nil {
		fmt.Fprintln(stderr, "sdxl-run tokenize:", err)
		return 1
	}
	fmt.Fprintln(stdout, string(js))
	return 0
}

// tokenizeText loads the tokenizers (model folder or embedded defaults) and
// encodes text with both.
func tokenizeText(model, text string) (tokenizeOutput, error) {
	tok1, tok2, err := loadTokenizers(model)
	if err != nil {
		return tokenizeOutput{}, err
	}
	return encodeBoth(tok1, tok2, text)
}

// loadTokenizers returns the model folder's tokenizer/ (nil when absent, as
// in a refiner) and tokenizer_2/, or the embedded SDXL pair when model is "".
func loadTokenizers(model string) (tok1, tok2 *tokenizer.Tokenizer, err error) {
	if model == "" {
		return tokenizer.DefaultSDXL()
	}
	st, err := os.Stat(model)
	if err != nil {
		return nil, nil, err
	}
	if !st.IsDir() {
		return nil, nil, fmt.Errorf("--model %s: a single-file checkpoint holds no tokenizer; pass a diffusers folder or omit --model for the standard SDXL tokenizers", model)
	}
	d1, d2 := filepath.Join(model, "tokenizer"), filepath.Join(model, "tokenizer_2")
	if _, err := os.Stat(d2); err != nil {
		return nil, nil, fmt.Errorf("--model %s: no tokenizer_2/ folder", model)
	}
	if tok2, err = tokenizer.Load(d2); err != nil {
		return nil, nil, err
	}
	if _, err := os.Stat(d1); err == nil {
		if tok1, err = tokenizer.Load(d1); err != nil {
			return nil, nil, err
		}
	}
	return tok1, tok2, nil
}

func encodeBoth(tok1, tok2 *tokenizer.Tokenizer, text string) (tokenizeOutput, error) {
	var err error
	var out tokenizeOutput
	if tok1 != nil {
		if out.Tokenizer, err = tok1.EncodePadded(text, tokenizer.MaxLength); err != nil {
			return out, err
		}
	}
	out.Tokenizer2, err = tok2.EncodePadded(text, tokenizer.MaxLength)
	return out, err
}
