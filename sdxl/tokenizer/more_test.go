package tokenizer

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sdxl-go/sdxl/internal/golden"
)

func mustDefault(t testing.TB, pad int) *Tokenizer {
	t.Helper()
	tk, err := Default(pad)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// TestCLIPReferenceIDs checks the published openai/CLIP and open_clip ids
// of shared/data/clip_tokenizer_golden.json with the first tokenizer (the
// one without the "!" quirk), and the quirk itself with the second.
func TestCLIPReferenceIDs(t *testing.T) {
	p := filepath.Join(golden.RepoRoot(), "..", "shared", "data", "clip_tokenizer_golden.json")
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Skipf("clip_tokenizer_golden.json not found: %v", err)
	}
	var data struct {
		Reference []struct {
			Text string `json:"text"`
			IDs  []int  `json:"ids"`
		} `json:"reference"`
	}
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatal(err)
	}
	tk := mustDefault(t, 49407)
	for _, c := range data.Reference {
		if d := cmp.Diff(c.IDs, tk.EncodeWithSpecials(c.Text)); d != "" {
			t.Errorf("%q (-want +got):\n%s", c.Text, d)
		}
	}
	t.Logf("%d reference texts match", len(data.Reference))
	// diffusers issue 4153: tokenizer_2 turns every "!" into its pad id 0.
	tk2 := mustDefault(t, 0)
	want := []int32{49406, 0, 0, 0, 0, 0, 0, 49407}
	for len(want) < 77 {
		want = append(want, 0)
	}
	if d := cmp.Diff(want, mustPad(t, tk2, "! !! !!!")); d != "" {
		t.Errorf("tokenizer_2 quirk (-want +got):\n%s", d)
	}
}

// TestEmbeddedTableEqualsModelFiles compares the embedded table with the
// small model's vocab.json and merges.txt entry by entry.
func TestEmbeddedTableEqualsModelFiles(t *testing.T) {
	dir := filepath.Join(filepath.Dir(golden.Path(t, "small/models/sdxl-small-base/model_index.json")), "tokenizer")
	files, err := readVocabMerges(dir)
	if err != nil {
		t.Fatal(err)
	}
	emb, err := embeddedTables()
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(files.vocab, emb.vocab); d != "" {
		t.Errorf("vocab differs (-vocab.json +embedded):\n%.2000s", d)
	}
	if d := cmp.Diff(files.merges, emb.merges); d != "" {
		t.Errorf("merges differ (-merges.txt +embedded):\n%.2000s", d)
	}
	t.Logf("embedded table = vocab.json (%d tokens) + merges.txt (%d merges)", len(emb.vocab), len(emb.merges))
}

func TestSpecialCases(t *testing.T) {
	tk := mustDefault(t, 49407)
	tk2 := mustDefault(t, 0)
	enc := func(tk *Tokenizer, s string) []int { return tk.Encode(s) }
	// Specials are matched case-sensitively on the raw text; an upper-case
	// spelling is lowercased and split into "<|", the letters and "|>".
	lower := enc(tk, "<|") // the pieces as ordinary text
	lower = append(lower, enc(tk, "endoftext")...)
	lower = append(lower, enc(tk, "|>")...)
	if d := cmp.Diff(lower, enc(tk, "<|ENDOFTEXT|>")); d != "" {
		t.Errorf("<|ENDOFTEXT|> (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]int{49406, 320, 49407, 1929}, enc(tk, "<|startoftext|>a<|endoftext|>dog")); d != "" {
		t.Errorf("typed specials (-want +got):\n%s", d)
	}
	// "!" is an added token only where it is the pad token.
	if got := enc(tk, "wow!"); got[len(got)-1] != 256 {
		t.Errorf("tokenizer: wow! = %v, want ! as 256 (\"!</w>\")", got)
	}
	if got := enc(tk2, "wow!"); got[len(got)-1] != 0 {
		t.Errorf("tokenizer_2: wow! = %v, want ! as 0", got)
	}
	// WithPad(EOS) removes the quirk; WithPad(0) adds it.
	noQuirk, err := tk2.WithPad(49407)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(enc(tk, "hi!! <|endoftext|>"), enc(noQuirk, "hi!! <|endoftext|>")); d != "" {
		t.Errorf("WithPad(49407) (-want +got):\n%s", d)
	}
	quirk, err := tk.WithPad(0)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(enc(tk2, "hi!! <|endoftext|>"), enc(quirk, "hi!! <|endoftext|>")); d != "" {
		t.Errorf("WithPad(0) (-want +got):\n%s", d)
	}
	if quirk.PadID() != 0 || noQuirk.PadID() != 49407 || tk.BOS() != 49406 || tk.EOS() != 49407 {
		t.Errorf("ids: pad %d %d bos %d eos %d", quirk.PadID(), noQuirk.PadID(), tk.BOS(), tk.EOS())
	}
	if _, err := tk.WithPad(49408); err == nil {
		t.Error("WithPad(49408) accepted an id outside the vocabulary")
	}
	// Truncation keeps BOS + 75 + EOS.
	long := strings.Repeat("cat ", 100)
	ids := mustPad(t, tk, long)
	if len(ids) != 77 || ids[0] != 49406 || ids[75] != 2368 || ids[76] != 49407 {
		t.Errorf("truncated ids = %v", ids)
	}
	if tk.Token(2368) != "cat</w>" || tk.Token(-1) != "" || tk.VocabSize() != 49408 {
		t.Errorf("Token(2368) = %q, VocabSize %d", tk.Token(2368), tk.VocabSize())
	}
}

// TestHeapMergeEqualsScan checks the priority-queue merge against the scan
// on long random words, where the two code paths meet.
func TestHeapMergeEqualsScan(t *testing.T) {
	tk := mustDefault(t, 49407)
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", "e", "r", "s", "t", "th", "in", "é", "日", "!", "ing", "qu"}
	for i := 0; i < 300; i++ {
		var b strings.Builder
		n := 1 + rng.IntN(120)
		for b.Len() < n {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		piece := b.String()
		syms := func() []int32 {
			s := make([]int32, len(piece))
			for j := range piece {
				if j == len(piece)-1 {
					s[j] = tk.byteEndID[piece[j]]
				} else {
					s[j] = tk.byteID[piece[j]]
				}
			}
			return s
		}
		a := tk.mergeScan(syms())
		h := tk.mergeHeap(syms())
		if d := cmp.Diff(a, h); d != "" {
			t.Fatalf("%q: scan and heap differ (-scan +heap):\n%s", piece, d)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing")); err == nil {
		t.Error("Load of a missing folder succeeded")
	}
	os.WriteFile(filepath.Join(dir, "vocab.json"), []byte(`{"a": 0, "b</w>": 1}`), 0o644)
	os.WriteFile(filepath.Join(dir, "merges.txt"), []byte("#version: 0.2\na b</w>\n"), 0o644)
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), "merges.txt") && !strings.Contains(err.Error(), "not in the vocabulary") {
		t.Errorf("bad merge: err = %v", err)
	}
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "tokenizer.json"), []byte(`{"model": {"type": "WordPiece"}}`), 0o644)
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), "WordPiece") {
		t.Errorf("WordPiece: err = %v", err)
	}
	// A folder with only a config uses the embedded table with its pad.
	cfg := t.TempDir()
	os.WriteFile(filepath.Join(cfg, "tokenizer_config.json"), []byte(`{"pad_token": {"content": "!"}}`), 0o644)
	tk, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tk.PadID() != 0 || tk.Encode("!")[0] != 0 {
		t.Errorf("config-only folder: pad %d", tk.PadID())
	}
}

func TestConcurrentEncode(t *testing.T) {
	tk := mustDefault(t, 0)
	prompts := benchPrompts(400)
	want := make([][]int, len(prompts))
	ref := mustDefault(t, 0)
	for i, p := range prompts {
		want[i] = ref.Encode(p)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := range prompts {
				j := (i*7 + g*13) % len(prompts)
				if !cmp.Equal(want[j], tk.Encode(prompts[j])) {
					errs <- prompts[j]
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for p := range errs {
		t.Errorf("concurrent Encode(%q) differs", p)
	}
}

func FuzzEncode(f *testing.F) {
	for _, s := range []string{"", "a photo of a cat", "!!! wow !!!", "<|endoftext|>", "<|ENDOFTEXT|>x", "e\u0301\u0323", "\xff", strings.Repeat("ab", 200)} {
		f.Add(s)
	}
	tk := mustDefault(f, 0)
	f.Fuzz(func(t *testing.T, s string) {
		for _, id := range tk.Encode(s) {
			if id < 0 || id >= tk.VocabSize() {
				t.Fatalf("%q: id %d out of range", s, id)
			}
		}
		if ids := mustPad(t, tk, s); len(ids) != 77 || ids[0] != 49406 {
			t.Fatalf("%q: padded ids %v", s, ids)
		}
	})
}

// benchPrompts makes n distinct prompts of the usual kind (20-70 tokens of
// subjects, styles, quality tags, weights and numbers), deterministically.
func benchPrompts(n int) []string {
	words := strings.Fields(`a photo of an astronaut riding horse on mars portrait young woman man old
		colorful roaring lion sitting victorian couch flat icon vector cinematic lighting highly detailed
		sharp focus 8k 4k uhd dslr soft bokeh film grain fujifilm kodak portra 400 masterpiece best quality
		trending artstation concept art digital painting illustration by greg rutkowski alphonse mucha
		sunset golden hour volumetric fog studio ghibli anime cyberpunk city neon rain reflections
		fantasy landscape mountains lake forest castle dragon knight armor intricate ornate elegant
		watercolor oil canvas octane render unreal engine ray tracing wide angle macro close-up
		smiling blue eyes long pink hair school uniform cherry blossoms butterflies white cranes dawn`)
	rng := rand.New(rand.NewPCG(7, 11))
	out := make([]string, n)
	for i := range out {
		var b strings.Builder
		k := 12 + rng.IntN(45)
		for j := 0; j < k; j++ {
			if j > 0 {
				if rng.IntN(5) == 0 {
					b.WriteString(", ")
				} else {
					b.WriteByte(' ')
				}
			}
			w := words[rng.IntN(len(words))]
			if rng.IntN(3) == 0 {
				w = strings.ToUpper(w[:1]) + w[1:]
			}
			b.WriteString(w)
		}
		fmt.Fprintf(&b, ", seed %d", i)
		out[i] = b.String()
	}
	return out
}

// BenchmarkEncode10kPrompts: one iteration tokenizes 10,000 prompts, padded
// to 77, with a warm tokenizer (the normal case: one tokenizer per process).
func BenchmarkEncode10kPrompts(b *testing.B) {
	prompts := benchPrompts(10000)
	tk := mustDefault(b, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, p := range prompts {
			if _, err := tk.EncodePadded(p, 77); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkEncode10kPromptsCold: the same with a new tokenizer (empty BPE
// cache) per iteration; the table parsing is shared and not timed.
func BenchmarkEncode10kPromptsCold(b *testing.B) {
	prompts := benchPrompts(10000)
	if _, err := Default(0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tk := mustDefault(b, 0)
		for _, p := range prompts {
			if _, err := tk.EncodePadded(p, 77); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkLoadEmbedded times building a tokenizer from the embedded gzip
// table from scratch (what the first Default call costs).
func BenchmarkLoadEmbedded(b *testing.B) {
	for i := 0; i < b.N; i++ {
		t, err := parseBPEVocab(strings.NewReader(string(bpeVocabGz)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := build("bench", t, defaultSpecials()); err != nil {
			b.Fatal(err)
		}
	}
}
