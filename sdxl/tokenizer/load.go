package tokenizer

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// bpeVocabGz is openai/CLIP's bpe_simple_vocab_16e6.txt.gz (MIT, see
// LICENSE-NOTE.txt): a header line, then the merges in rank order.
//
//go:embed bpe_simple_vocab_16e6.txt.gz
var bpeVocabGz []byte

// clipMerges is the number of merges CLIP uses from that file
// (49152 - 256 - 2, as in openai/CLIP's SimpleTokenizer).
const clipMerges = 49152 - 256 - 2

// embeddedTables parses the embedded file once; the result is read-only.
var embeddedTables = sync.OnceValues(func() (tables, error) {
	return parseBPEVocab(bytes.NewReader(bpeVocabGz))
})

// parseBPEVocab builds the CLIP vocabulary from bpe_simple_vocab_16e6.txt.gz:
// the 256 byte characters in bytes_to_unicode order, the same with "</w>",
// every merge joined, then <|startoftext|> and <|endoftext|>.
func parseBPEVocab(r io.Reader) (tables, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return tables{}, fmt.Errorf("embedded bpe_simple_vocab_16e6.txt.gz: %w", err)
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	var merges [][2]string
	line := 0
	for sc.Scan() {
		line++
		if line == 1 {
			continue // header
		}
		if len(merges) == clipMerges {
			break
		}
		a, b, ok := strings.Cut(sc.Text(), " ")
		if !ok || a == "" || b == "" {
			return tables{}, fmt.Errorf("embedded bpe_simple_vocab_16e6.txt.gz: line %d %q is not a merge", line, sc.Text())
		}
		merges = append(merges, [2]string{a, b})
	}
	if err := sc.Err(); err != nil {
		return tables{}, fmt.Errorf("embedded bpe_simple_vocab_16e6.txt.gz: %w", err)
	}
	if len(merges) != clipMerges {
		return tables{}, fmt.Errorf("embedded bpe_simple_vocab_16e6.txt.gz: %d merges, want %d", len(merges), clipMerges)
	}
	vocab := make(map[string]int, 49408)
	b2r := byteToRune()
	order := byteOrder()
	for _, b := range order {
		vocab[string(b2r[b])] = len(vocab)
	}
	for _, b := range order {
		vocab[string(b2r[b])+"</w>"] = len(vocab)
	}
	for _, m := range merges {
		vocab[m[0]+m[1]] = len(vocab)
	}
	vocab[StartOfText] = len(vocab)
	vocab[EndOfText] = len(vocab)
	if len(vocab) != 49408 {
		return tables{}, fmt.Errorf("embedded bpe_simple_vocab_16e6.txt.gz: %d distinct tokens, want 49408", len(vocab))
	}
	return tables{vocab: vocab, merges: merges}, nil
}

// Default returns the CLIP tokenizer built from the embedded table with the
// given pad id: 49407 (<|endoftext|>) is SDXL's tokenizer/, 0 ("!") its
// tokenizer_2/.
func Default(padID int) (*Tokenizer, error) {
	t, err := embeddedTables()
	if err != nil {
		return nil, err
	}
	tk, err := build("embedded", t, defaultSpecials())
	if err != nil {
		return nil, err
	}
	if padID == tk.pad {
		return tk, nil
	}
	return tk.WithPad(padID)
}

// DefaultSDXL returns SDXL's two tokenizers from the embedded table: pad
// <|endoftext|> for the first, "!" (id 0) for the second.
func DefaultSDXL() (tok1, tok2 *Tokenizer, err error) {
	if tok1, err = Default(49407); err != nil {
		return nil, nil, err
	}
	if tok2, err = Default(0); err != nil {
		return nil, nil, err
	}
	return tok1, tok2, nil
}

// Load reads a tokenizer folder (a diffusers model's tokenizer/ or
// tokenizer_2/): vocab.json + merges.txt, or tokenizer.json, with the
// special tokens from tokenizer_config.json and special_tokens_map.json
// (bos <|startoftext|>, eos, unk and pad <|endoftext|> when absent). A
// folder with neither vocabulary file uses the embedded table with the
// folder's special tokens.
func Load(dir string) (*Tokenizer, error) {
	sp := defaultSpecials()
	var added []addedToken
	if err := readSpecials(dir, &sp, &added); err != nil {
		return nil, err
	}
	var t tables
	var err error
	src := dir
	switch {
	case exists(filepath.Join(dir, "vocab.json")) && exists(filepath.Join(dir, "merges.txt")):
		t, err = readVocabMerges(dir)
	case exists(filepath.Join(dir, "tokenizer.json")):
		src = filepath.Join(dir, "tokenizer.json")
		t, err = readTokenizerJSON(src)
	default:
		if _, serr := os.Stat(dir); serr != nil {
			return nil, fmt.Errorf("tokenizer: %w", serr)
		}
		src = dir + " (embedded table)"
		t, err = embeddedTables()
	}
	if err != nil {
		return nil, err
	}
	t.added = append(t.added, added...)
	return build(src, t, sp)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// readVocabMerges reads Hugging Face's vocab.json and merges.txt.
func readVocabMerges(dir string) (tables, error) {
	vp := filepath.Join(dir, "vocab.json")
	raw, err := os.ReadFile(vp)
	if err != nil {
		return tables{}, fmt.Errorf("tokenizer: %w", err)
	}
	var vocab map[string]int
	if err := json.Unmarshal(raw, &vocab); err != nil {
		return tables{}, fmt.Errorf("tokenizer %s: %w", vp, err)
	}
	mp := filepath.Join(dir, "merges.txt")
	f, err := os.Open(mp)
	if err != nil {
		return tables{}, fmt.Errorf("tokenizer: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	var merges [][2]string
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimRight(sc.Text(), "\r")
		if (line == 1 && strings.HasPrefix(s, "#version")) || s == "" {
			continue
		}
		a, b, ok := strings.Cut(s, " ")
		if !ok || a == "" || b == "" || strings.Contains(b, " ") {
			return tables{}, fmt.Errorf("tokenizer %s: line %d %q is not a merge \"a b\"", mp, line, s)
		}
		merges = append(merges, [2]string{a, b})
	}
	if err := sc.Err(); err != nil {
		return tables{}, fmt.Errorf("tokenizer %s: %w", mp, err)
	}
	return tables{vocab: vocab, merges: merges}, nil
}

// tokenizerJSON is the part of a tokenizers-library tokenizer.json that a
// CLIP tokenizer needs.
type tokenizerJSON struct {
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
	} `json:"added_tokens"`
	Model struct {
		Type            string            `json:"type"`
		Vocab           map[string]int    `json:"vocab"`
		Merges          []json.RawMessage `json:"merges"`
		EndOfWordSuffix *string           `json:"end_of_word_suffix"`
	} `json:"model"`
}

func readTokenizerJSON(p string) (tables, error) {
	raw, err := os.ReadFile(p)
	if err != nil {
		return tables{}, fmt.Errorf("tokenizer: %w", err)
	}
	var tj tokenizerJSON
	if err := json.Unmarshal(raw, &tj); err != nil {
		return tables{}, fmt.Errorf("tokenizer %s: %w", p, err)
	}
	if tj.Model.Type != "" && tj.Model.Type != "BPE" {
		return tables{}, fmt.Errorf("tokenizer %s: model type %q, want BPE", p, tj.Model.Type)
	}
	if s := tj.Model.EndOfWordSuffix; s != nil && *s != "</w>" {
		return tables{}, fmt.Errorf("tokenizer %s: end_of_word_suffix %q, want \"</w>\" (CLIP)", p, *s)
	}
	t := tables{vocab: tj.Model.Vocab}
	for i, m := range tj.Model.Merges {
		// Newer files store ["a", "b"], older ones "a b".
		var pairArr []string
		var str string
		switch {
		case json.Unmarshal(m, &pairArr) == nil && len(pairArr) == 2:
			t.merges = append(t.merges, [2]string{pairArr[0], pairArr[1]})
		case json.Unmarshal(m, &str) == nil:
			a, b, ok := strings.Cut(str, " ")
			if !ok {
				return tables{}, fmt.Errorf("tokenizer %s: merge %d %q is not \"a b\"", p, i+1, str)
			}
			t.merges = append(t.merges, [2]string{a, b})
		default:
			return tables{}, fmt.Errorf("tokenizer %s: merge %d %s is neither [a, b] nor \"a b\"", p, i+1, m)
		}
	}
	for _, a := range tj.AddedTokens {
		if id, ok := t.vocab[a.Content]; ok && id != a.ID {
			return tables{}, fmt.Errorf("tokenizer %s: added token %q has id %d but the vocabulary says %d", p, a.Content, a.ID, id)
		}
		if _, ok := t.vocab[a.Content]; !ok {
			t.vocab[a.Content] = a.ID
		}
		t.added = append(t.added, addedToken{a.Content, a.ID})
	}
	return t, nil
}

// readSpecials reads the special tokens of tokenizer_config.json and
// special_tokens_map.json (the former wins, as in transformers) and the
// added_tokens_decoder entries of tokenizer_config.json.
func readSpecials(dir string, sp *specials, added *[]addedToken) error {
	for _, name := range []string{"special_tokens_map.json", "tokenizer_config.json"} {
		p := filepath.Join(dir, name)
		raw, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("tokenizer: %w", err)
		}
		var cfg map[string]json.RawMessage
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return fmt.Errorf("tokenizer %s: %w", p, err)
		}
		for key, dst := range map[string]*string{"bos_token": &sp.bos, "eos_token": &sp.eos, "unk_token": &sp.unk, "pad_token": &sp.pad} {
			v, ok := cfg[key]
			if !ok || string(v) == "null" {
				continue
			}
			s, err := tokenText(v)
			if err != nil {
				return fmt.Errorf("tokenizer %s: %s: %w", p, key, err)
			}
			*dst = s
		}
		if v, ok := cfg["added_tokens_decoder"]; ok {
			var dec map[string]json.RawMessage
			if err := json.Unmarshal(v, &dec); err != nil {
				return fmt.Errorf("tokenizer %s: added_tokens_decoder: %w", p, err)
			}
			for k, e := range dec {
				id, err := strconv.Atoi(k)
				if err != nil {
					return fmt.Errorf("tokenizer %s: added_tokens_decoder key %q is not an id", p, k)
				}
				s, err := tokenText(e)
				if err != nil {
					return fmt.Errorf("tokenizer %s: added_tokens_decoder %q: %w", p, k, err)
				}
				*added = append(*added, addedToken{s, id})
			}
		}
	}
	return nil
}

// tokenText reads a special token written as "text" or {"content": "text"}.
func tokenText(v json.RawMessage) (string, error) {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s, nil
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if json.Unmarshal(v, &obj) == nil && obj.Content != nil {
		return *obj.Content, nil
	}
	return "", fmt.Errorf("%s is neither a string nor {\"content\": ...}", v)
}
