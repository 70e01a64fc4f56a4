package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/sdxl"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestTokenizeGolden(t *testing.T) {
	raw, err := os.ReadFile(golden.Path(t, "small/tokenizer_ids.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Text       string  `json:"text"`
		Tokenizer  []int32 `json:"tokenizer"`
		Tokenizer2 []int32 `json:"tokenizer_2"`
	}
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	base := filepath.Dir(golden.Path(t, "small/models/sdxl-small-base/model_index.json"))
	refiner := golden.Path(t, "small/models/sdxl-small-refiner")
	for _, model := range []string{"", base, refiner} {
		// The whole command once per source, then every text through the
		// same code with the tokenizers loaded once (loading is the slow
		// part).
		args := []string{"tokenize", cases[0].Text}
		if model != "" {
			args = []string{"tokenize", "--model", model, cases[0].Text}
		}
		code, stdout, stderr := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d, stderr %s", args, code, stderr)
		}
		toks, err := sdxl.LoadTokenizers(model)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range cases {
			if i > 0 {
				out, err := toks.Encode(c.Text)
				if err != nil {
					t.Fatal(err)
				}
				js, _ := json.Marshal(out)
				stdout = string(js)
			}
			var got map[string][]int32
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatalf("%v: output %q is not JSON: %v", args, stdout, err)
			}
			want := map[string][]int32{"tokenizer": c.Tokenizer, "tokenizer_2": c.Tokenizer2}
			if model == refiner {
				delete(want, "tokenizer") // the refiner has only tokenizer_2
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("model %q, %q (-want +got):\n%s", model, c.Text, d)
			}
		}
	}
	t.Logf("%d texts x 3 sources (embedded, base folder, refiner folder) match", len(cases))
}

func TestTokenizeErrors(t *testing.T) {
	if code, _, stderr := runCLI(t, "tokenize"); code != 2 || !strings.Contains(stderr, "usage") {
		t.Errorf("no text: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := runCLI(t, "tokenize", "--model", filepath.Join(t.TempDir(), "nope"), "x"); code != 1 || !strings.Contains(stderr, "nope") {
		t.Errorf("missing model: exit %d, stderr %q", code, stderr)
	}
	code, stdout, _ := runCLI(t, "tokenize", "a", "photo")
	if code != 0 || !strings.HasPrefix(stdout, `{"tokenizer":[49406,320,1125,49407,49407`) || !strings.Contains(stdout, `"tokenizer_2":[49406,320,1125,49407,0,0`) {
		t.Errorf("two words: exit %d, %s", code, stdout)
	}
}
