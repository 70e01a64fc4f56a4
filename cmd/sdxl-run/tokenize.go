package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/sdxl-go/sdxl/sdxl"
)

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
func tokenizeText(model, text string) (sdxl.TokenIDs, error) {
	t, err := sdxl.LoadTokenizers(model)
	if err != nil {
		return sdxl.TokenIDs{}, fmt.Errorf("--model %v", err)
	}
	return t.Encode(text)
}
