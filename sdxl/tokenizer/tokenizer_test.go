package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sdxl-go/sdxl/internal/golden"
)

type idCase struct {
	Text                  string `json:"text"`
	Tokenizer             []int  `json:"tokenizer"`
	TokenizerUntruncated  []int  `json:"tokenizer_untruncated"`
	Tokenizer2            []int  `json:"tokenizer_2"`
	Tokenizer2Untruncated []int  `json:"tokenizer_2_untruncated"`
}

func loadIDCases(t *testing.T) []idCase {
	t.Helper()
	raw, err := os.ReadFile(golden.Path(t, "small/tokenizer_ids.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []idCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 20 {
		t.Fatalf("tokenizer_ids.json: %d cases, want 20", len(cases))
	}
	return cases
}

func toInt(ids []int32) []int {
	out := make([]int, len(ids))
	for i, v := range ids {
		out[i] = int(v)
	}
	return out
}

// checkTokenizer compares one tokenizer against every golden text, padded
// (77) and untruncated.
func checkTokenizer(t *testing.T, name string, tk *Tokenizer, cases []idCase, second bool) {
	t.Helper()
	for _, c := range cases {
		want, wantU := c.Tokenizer, c.TokenizerUntruncated
		if second {
			want, wantU = c.Tokenizer2, c.Tokenizer2Untruncated
		}
		if d := cmp.Diff(wantU, tk.EncodeWithSpecials(c.Text)); d != "" {
			t.Errorf("%s %q untruncated (-want +got):\n%s", name, c.Text, d)
		}
		if d := cmp.Diff(want, toInt(mustPad(t, tk, c.Text))); d != "" {
			t.Errorf("%s %q padded (-want +got):\n%s", name, c.Text, d)
		}
	}
	t.Logf("%s: %d texts match, padded and untruncated", name, len(cases))
}

func TestGoldenIDs(t *testing.T) {
	cases := loadIDCases(t)
	models := filepath.Dir(golden.Path(t, "small/models/sdxl-small-base/model_index.json"))
	base := models
	refiner := golden.Path(t, "small/models/sdxl-small-refiner")
	load := func(dir string) *Tokenizer {
		tk, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	d1, d2, err := DefaultSDXL()
	if err != nil {
		t.Fatal(err)
	}
	checkTokenizer(t, "base tokenizer (vocab.json)", load(filepath.Join(base, "tokenizer")), cases, false)
	checkTokenizer(t, "base tokenizer_2 (vocab.json)", load(filepath.Join(base, "tokenizer_2")), cases, true)
	checkTokenizer(t, "refiner tokenizer_2 (tokenizer.json)", load(filepath.Join(refiner, "tokenizer_2")), cases, true)
	checkTokenizer(t, "embedded pad 49407", d1, cases, false)
	checkTokenizer(t, "embedded pad 0", d2, cases, true)
}

func mustPad(t testing.TB, tk *Tokenizer, text string) []int32 {
	t.Helper()
	ids, err := tk.EncodePadded(text, MaxLength)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestPadLengthError(t *testing.T) {
	tk := mustDefault(t, 49407)
	if _, err := tk.EncodePadded("x", 1); err == nil {
		t.Error("length 1 accepted")
	}
	ids, err := tk.EncodePadded("a photo", 2)
	if err != nil || len(ids) != 2 || ids[0] != 49406 || ids[1] != 49407 {
		t.Errorf("length 2: %v %v", ids, err)
	}
}
