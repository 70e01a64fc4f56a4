package tokenizer

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNFCAndNormalizeAgainstPython(t *testing.T) {
	raw, err := os.ReadFile("testdata/normalize_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var data struct {
		UnicodeVersion string `json:"unicode_version"`
		Cases          []struct{ Text, NFC, Normalized string }
	}
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatal(err)
	}
	bad := 0
	for _, c := range data.Cases {
		if got := NFC(c.Text); got != c.NFC {
			bad++
			t.Errorf("NFC(%+q) = %+q, want %+q", c.Text, got, c.NFC)
		}
		if got := Normalize(c.Text); got != c.Normalized {
			bad++
			t.Errorf("Normalize(%+q) = %+q, want %+q", c.Text, got, c.Normalized)
		}
		if bad > 10 {
			t.Fatal("too many failures")
		}
	}
	t.Logf("%d random strings: NFC and Normalize equal Python's unicodedata %s", len(data.Cases), data.UnicodeVersion)
}

func TestNFCExamples(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"e\u0301", "é"},
		{"Ze\u0301nith", "Zénith"},
		{"e\u0323\u0301", "\u1eb9\u0301"}, // dot below (220) sorts before acute (230), then composes
		{"e\u0301\u0323", "\u1eb9\u0301"}, // reordered first
		{"\u1100\u1161\u11a8", "\uac01"},  // Hangul L+V+T
		{"\u2126", "\u03a9"},              // ohm sign: singleton
		{"\u0958", "\u0915\u093c"},        // composition exclusion stays decomposed
		{"a\u0308\u0308", "ä\u0308"},      // second mark blocked by the same class
		{"\xff", "\ufffd"},                // invalid UTF-8
		{"plain ascii", "plain ascii"},
	} {
		if got := NFC(c.in); got != c.want {
			t.Errorf("NFC(%+q) = %+q, want %+q", c.in, got, c.want)
		}
	}
}

func TestNFCFastPathLimit(t *testing.T) {
	// Below nfcFastLimit nothing decomposes to something else, has a
	// combining class or composes as a second character.
	for r := rune(0); r < nfcFastLimit; r++ {
		if combiningClass(r) != 0 {
			t.Fatalf("U+%04X has a combining class", r)
		}
		if a, b, ok := lookupDecomposition(r); ok {
			if c, ok := lookupComposition(a, b); !ok || c != r || b == 0 {
				t.Fatalf("U+%04X does not recompose from its decomposition", r)
			}
		}
	}
	for _, e := range compositions {
		if e.b < nfcFastLimit {
			t.Fatalf("composition %+v has a second character below the fast-path limit", e)
		}
	}
}

func TestNormalizeRules(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"  A\t\tB\n\nC  ", " a b c "},
		{"İ", "i\u0307"},
		{"ΣΑΣ", "σασ"}, // per character: no final-sigma rule
		{"\u3000x\u00a0y\u2029z", " x y z"},
		{"\x1cx", "\x1cx"}, // not whitespace for Oniguruma's \s
	} {
		if got := Normalize(c.in); got != c.want {
			t.Errorf("Normalize(%+q) = %+q, want %+q", c.in, got, c.want)
		}
	}
}

func TestPreTokenize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"don't stop", []string{"don", "'t", "stop"}},
		{"we'll they're i'm 've 'x", []string{"we", "'ll", "they", "'re", "i", "'m", "'ve", "'", "x"}},
		{"3.14", []string{"3", ".", "1", "4"}},
		{"hello,world!!", []string{"hello", ",", "world", "!!"}},
		{"<|endoftext|>>", []string{"<|", "endoftext", "|>", ">"}},
		{"!<|endoftext|>", []string{"!<|", "endoftext", "|>"}},
		{"émigré café", []string{"émigré", "café"}},
		{"🦁🛋\ufe0f test", []string{"🦁🛋\ufe0f", "test"}},
		{"日本語のテキスト", []string{"日本語のテキスト"}},
		{"x²", []string{"x", "²"}},
	} {
		var got []string
		preTokenize(c.in, func(p string) { got = append(got, p) })
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("preTokenize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func FuzzNFC(f *testing.F) {
	for _, s := range []string{"", "e\u0301", "\u1100\u1161\u11a8", "a\u0308\u0323\u0301", "\xff\xfe", "İ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := NFC(s)
		if !utf8.ValidString(n) {
			t.Fatalf("NFC(%+q) is not valid UTF-8", s)
		}
		if NFC(n) != n {
			t.Fatalf("NFC not idempotent on %+q", s)
		}
		_ = Normalize(s)
	})
}
