// Package tokenizer is the CLIP byte-pair-encoding tokenizer of both SDXL
// text encoders, reproducing the ids that diffusers gets from transformers'
// CLIPTokenizer (transformers 5, backed by the tokenizers library) bit for
// bit.
//
// The pipeline for one text:
//
//  1. Added tokens (<|startoftext|>, <|endoftext|> and the pad token) are cut
//     out of the raw text first and map straight to their ids. SDXL's
//     tokenizer_2 pads with "!" (id 0), so every "!" typed in a prompt becomes
//     id 0 there, exactly as in diffusers (diffusers issue 4153).
//  2. Each remaining segment is normalised (Normalize: NFC, whitespace runs to
//     one space, lowercase) and pre-tokenised (letters runs, single digits,
//     runs of other symbols, English contractions; whitespace dropped).
//  3. Each piece is UTF-8 encoded, mapped through GPT-2's byte table, "</w>"
//     is appended to its last symbol and BPE merges run by rank.
//
// EncodePadded adds BOS 49406 and EOS 49407, truncates to 75 content tokens
// and pads to 77 with the tokenizer's pad id, the sequence the text encoders
// receive.
//
// Tables come from a model folder (vocab.json + merges.txt, or
// tokenizer.json; tokenizer_config.json / special_tokens_map.json name the
// pad token) or from the embedded openai/CLIP bpe_simple_vocab_16e6.txt.gz
// (MIT licence, see LICENSE-NOTE.txt), which holds the same 49408-entry
// table. A Tokenizer is immutable apart from its bounded BPE cache and is
// safe for concurrent use.
package tokenizer

import (
	"fmt"
	"sort"
	"strings"
)

// The CLIP special tokens.
const (
	StartOfText = "<|startoftext|>"
	EndOfText   = "<|endoftext|>"
	// MaxLength is the sequence length of both SDXL text encoders.
	MaxLength = 77
)

// Tokenizer is a loaded CLIP BPE vocabulary with its special tokens.
type Tokenizer struct {
	vocab  map[string]int // token text -> id
	tokens []string       // id -> token text ("" for holes)
	merges map[pair]merge

	byteID    [256]int32 // id of each byte's character
	byteEndID [256]int32 // id of each byte's character + "</w>"

	bos, eos, pad, unk int
	padToken           string

	// added lists the texts cut out of the raw input before normalisation,
	// longest first (the tokenizers library matches leftmost-longest).
	added []addedToken

	cache *bpeCache
}

type addedToken struct {
	text string
	id   int
}

// tables is what a vocabulary source provides.
type tables struct {
	vocab  map[string]int
	merges [][2]string
	// added are extra added tokens from the source (tokenizer.json's
	// added_tokens, tokenizer_config.json's added_tokens_decoder).
	added []addedToken
}

// specials names the special tokens of one tokenizer.
type specials struct {
	bos, eos, unk, pad string
}

func defaultSpecials() specials {
	return specials{bos: StartOfText, eos: EndOfText, unk: EndOfText, pad: EndOfText}
}

// build assembles a Tokenizer; src names the source in errors.
func build(src string, t tables, sp specials) (*Tokenizer, error) {
	if len(t.vocab) == 0 {
		return nil, fmt.Errorf("tokenizer %s: empty vocabulary", src)
	}
	tk := &Tokenizer{vocab: t.vocab, merges: make(map[pair]merge, len(t.merges))}
	if err := tk.indexTokens(src); err != nil {
		return nil, err
	}
	if err := tk.setSpecials(src, sp); err != nil {
		return nil, err
	}
	if err := tk.setMerges(src, t.merges); err != nil {
		return nil, err
	}
	b2r := byteToRune()
	for b := 0; b < 256; b++ {
		ch := string(b2r[b])
		tk.byteID[b] = int32(tk.idOr(ch, tk.unk))
		tk.byteEndID[b] = int32(tk.idOr(ch+"</w>", tk.unk))
	}
	if err := tk.setAdded(src, t.added, sp); err != nil {
		return nil, err
	}
	tk.cache = &bpeCache{m: make(map[string][]int), max: defaultCacheSize}
	return tk, nil
}

// indexTokens builds the id → token table, refusing negative, huge and
// shared ids.
func (tk *Tokenizer) indexTokens(src string) error {
	maxID := -1
	for tok, id := range tk.vocab {
		if id < 0 {
			return fmt.Errorf("tokenizer %s: token %q has negative id %d", src, tok, id)
		}
		maxID = max(maxID, id)
	}
	if maxID >= 1<<30 {
		return fmt.Errorf("tokenizer %s: id %d too large", src, maxID)
	}
	tk.tokens = make([]string, maxID+1)
	for tok, id := range tk.vocab {
		if tk.tokens[id] != "" {
			return fmt.Errorf("tokenizer %s: id %d used by both %q and %q", src, id, tk.tokens[id], tok)
		}
		tk.tokens[id] = tok
	}
	return nil
}

// lookup is a vocabulary id, or an error naming what needed it.
func (tk *Tokenizer) lookup(src, what, tok string) (int, error) {
	id, ok := tk.vocab[tok]
	if !ok {
		return 0, fmt.Errorf("tokenizer %s: %s %q is not in the vocabulary", src, what, tok)
	}
	return id, nil
}

func (tk *Tokenizer) setSpecials(src string, sp specials) error {
	for _, s := range []struct {
		what, tok string
		dst       *int
	}{{"bos token", sp.bos, &tk.bos}, {"eos token", sp.eos, &tk.eos}, {"unk token", sp.unk, &tk.unk}, {"pad token", sp.pad, &tk.pad}} {
		id, err := tk.lookup(src, s.what, s.tok)
		if err != nil {
			return err
		}
		*s.dst = id
	}
	tk.padToken = sp.pad
	return nil
}

// setMerges ranks the merges; for a pair listed twice the first (lowest)
// rank wins.
func (tk *Tokenizer) setMerges(src string, merges [][2]string) error {
	for i, m := range merges {
		var ids [3]int
		for k, tok := range [3]string{m[0], m[1], m[0] + m[1]} {
			id, ok := tk.vocab[tok]
			if !ok {
				side := [3]string{"left side", "right side", "result"}[k]
				return fmt.Errorf("tokenizer %s: merge %d %s %q is not in the vocabulary", src, i+1, side, tok)
			}
			ids[k] = id
		}
		p := pair{int32(ids[0]), int32(ids[1])}
		if _, dup := tk.merges[p]; !dup {
			tk.merges[p] = merge{rank: int32(i), id: int32(ids[2])}
		}
	}
	return nil
}

// setAdded lists the added tokens, longest first: the sources' list plus
// the named specials, as transformers registers bos/eos/unk/pad as added
// special tokens.
func (tk *Tokenizer) setAdded(src string, added []addedToken, sp specials) error {
	seen := map[string]bool{}
	addTok := func(text string, id int) {
		if text == "" || seen[text] {
			return
		}
		seen[text] = true
		tk.added = append(tk.added, addedToken{text, id})
	}
	for _, a := range added {
		if a.id < 0 || a.id >= len(tk.tokens) {
			return fmt.Errorf("tokenizer %s: added token %q has id %d outside the vocabulary (0..%d)", src, a.text, a.id, len(tk.tokens)-1)
		}
		addTok(a.text, a.id)
	}
	addTok(sp.bos, tk.bos)
	addTok(sp.eos, tk.eos)
	addTok(sp.unk, tk.unk)
	addTok(sp.pad, tk.pad)
	sort.SliceStable(tk.added, func(i, j int) bool { return len(tk.added[i].text) > len(tk.added[j].text) })
	return nil
}

func (t *Tokenizer) idOr(tok string, def int) int {
	if id, ok := t.vocab[tok]; ok {
		return id
	}
	return def
}

// WithPad returns a tokenizer sharing t's tables whose pad token is the one
// with the given id; that token becomes an added token (cut out of raw text)
// the way transformers treats a pad token. WithPad(EOS()) on SDXL's
// tokenizer_2 gives open_clip's splitting, where "!" is ordinary text.
func (t *Tokenizer) WithPad(id int) (*Tokenizer, error) {
	if id < 0 || id >= len(t.tokens) || t.tokens[id] == "" {
		return nil, fmt.Errorf("tokenizer: pad id %d is not in the vocabulary", id)
	}
	c := *t
	c.pad = id
	c.padToken = t.tokens[id]
	c.added = nil
	seen := map[string]bool{}
	for _, a := range t.added {
		if a.text == t.padToken && a.text != t.tokens[t.bos] && a.text != t.tokens[t.eos] && a.text != t.tokens[t.unk] {
			continue // the old pad token is no longer special
		}
		seen[a.text] = true
		c.added = append(c.added, a)
	}
	if !seen[c.padToken] {
		c.added = append(c.added, addedToken{c.padToken, id})
		sort.SliceStable(c.added, func(i, j int) bool { return len(c.added[i].text) > len(c.added[j].text) })
	}
	// The BPE cache holds pre-tokenised pieces only, which do not depend on
	// the added tokens, so it can be shared.
	return &c, nil
}

// BOS returns the begin-of-text id (49406 for CLIP).
func (t *Tokenizer) BOS() int { return t.bos }

// EOS returns the end-of-text id (49407 for CLIP).
func (t *Tokenizer) EOS() int { return t.eos }

// PadID returns the padding id: 49407 for SDXL's tokenizer/, 0 ("!") for
// tokenizer_2/.
func (t *Tokenizer) PadID() int { return t.pad }

// VocabSize returns the number of ids (49408 for CLIP).
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// Token returns the text of an id ("" if unknown), like transformers'
// convert_ids_to_tokens: "a</w>" for a word-final "a".
func (t *Tokenizer) Token(id int) string {
	if id < 0 || id >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// ID returns the id of a token text and whether it exists.
func (t *Tokenizer) ID(token string) (int, bool) {
	id, ok := t.vocab[token]
	return id, ok
}

// Encode returns the ids of text without BOS/EOS, untruncated.
func (t *Tokenizer) Encode(text string) []int {
	ids := make([]int, 0, len(text)/3+4)
	// next[i] is the position of the next occurrence of added token i at or
	// after the scan position (len(text) if none); each is searched again
	// only once the scan has passed it, so the scan stays linear.
	var nextBuf [8]int
	next := nextBuf[:0]
	for i := range t.added {
		next = append(next, indexFrom(text, t.added[i].text, 0))
	}
	pos := 0
	for pos < len(text) {
		best := -1
		for i := range t.added {
			if next[i] < pos {
				next[i] = indexFrom(text, t.added[i].text, pos)
			}
			// Leftmost wins; added is sorted longest first, so on a tie the
			// longer token stays (the tokenizers library matches
			// leftmost-longest).
			if next[i] < len(text) && (best < 0 || next[i] < next[best]) {
				best = i
			}
		}
		if best < 0 {
			ids = t.encodeSegment(ids, text[pos:])
			break
		}
		ids = t.encodeSegment(ids, text[pos:next[best]])
		ids = append(ids, t.added[best].id)
		pos = next[best] + len(t.added[best].text)
	}
	return ids
}

// indexFrom returns the position of sub in s at or after from, or len(s).
func indexFrom(s, sub string, from int) int {
	if i := strings.Index(s[from:], sub); i >= 0 {
		return from + i
	}
	return len(s)
}

func (t *Tokenizer) encodeSegment(dst []int, seg string) []int {
	if seg == "" {
		return dst
	}
	preTokenize(Normalize(seg), func(piece string) {
		dst = t.bpe(dst, piece)
	})
	return dst
}

// EncodeWithSpecials returns BOS + Encode(text) + EOS, untruncated and
// unpadded (transformers with truncation=False, no padding).
func (t *Tokenizer) EncodeWithSpecials(text string) []int {
	ids := t.Encode(text)
	out := make([]int, 0, len(ids)+2)
	out = append(out, t.bos)
	out = append(out, ids...)
	return append(out, t.eos)
}

// EncodePadded returns the ids an SDXL text encoder receives for text:
// BOS, at most length-2 content tokens, EOS, then the pad id up to length
// (transformers with padding="max_length", truncation=True). length must be
// at least 2. It satisfies clip.Tokenizer.
func (t *Tokenizer) EncodePadded(text string, length int) ([]int32, error) {
	return t.PadIDs(t.Encode(text), length)
}

// PadIDs frames content ids (without specials) as EncodePadded does.
func (t *Tokenizer) PadIDs(ids []int, length int) ([]int32, error) {
	if length < 2 {
		return nil, fmt.Errorf("tokenizer: sequence length %d leaves no room for BOS and EOS", length)
	}
	out := make([]int32, length)
	out[0] = int32(t.bos)
	n := min(len(ids), length-2)
	for i := 0; i < n; i++ {
		out[1+i] = int32(ids[i])
	}
	out[1+n] = int32(t.eos)
	for i := 2 + n; i < length; i++ {
		out[i] = int32(t.pad)
	}
	return out, nil
}
