package tokenizer

import (
	"container/heap"
	"sync"
)

// byteToRune is GPT-2's bytes_to_unicode table: the printable bytes '!'..'~',
// '¡'..'¬' and '®'..'ÿ' map to themselves, the other 68 bytes map in
// ascending order to U+0100, U+0101, ... so every byte has a visible
// character and BPE works on text.
func byteToRune() [256]rune {
	var t [256]rune
	var printable [256]bool
	for b := '!'; b <= '~'; b++ {
		printable[b] = true
	}
	for b := 0xA1; b <= 0xAC; b++ {
		printable[b] = true
	}
	for b := 0xAE; b <= 0xFF; b++ {
		printable[b] = true
	}
	n := rune(0)
	for b := 0; b < 256; b++ {
		if printable[b] {
			t[b] = rune(b)
		} else {
			t[b] = 256 + n
			n++
		}
	}
	return t
}

// byteOrder returns the 256 bytes in vocabulary order: printable ones first
// (the order of bytes_to_unicode's keys), then the others.
func byteOrder() []int {
	order := make([]int, 0, 256)
	t := byteToRune()
	for b := 0; b < 256; b++ {
		if t[b] == rune(b) {
			order = append(order, b)
		}
	}
	for b := 0; b < 256; b++ {
		if t[b] != rune(b) {
			order = append(order, b)
		}
	}
	return order
}

// pair is two adjacent symbol ids.
type pair struct{ a, b int32 }

// merge is one BPE rule: its rank (lower merges first) and the id of the
// joined symbol.
type merge struct {
	rank int32
	id   int32
}

// defaultCacheSize bounds the per-tokenizer BPE cache (the tokenizers
// library uses the same capacity). When full the cache stops growing.
const defaultCacheSize = 10000

// bpeCache memoises piece -> ids. It is owned by one Tokenizer and safe for
// concurrent use.
type bpeCache struct {
	mu  sync.RWMutex
	m   map[string][]int
	max int
}

func (c *bpeCache) get(k string) ([]int, bool) {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	return v, ok
}

func (c *bpeCache) put(k string, v []int) {
	c.mu.Lock()
	if len(c.m) < c.max {
		c.m[k] = v
	}
	c.mu.Unlock()
}

// bpe appends the ids of one pre-tokenised piece to dst: its UTF-8 bytes are
// mapped to byte characters, the last one carries "</w>", and the pair of
// adjacent symbols with the lowest merge rank is merged (leftmost first on a
// tie) until no pair has a rule. This is the order in which both openai/CLIP
// and the tokenizers library merge.
func (t *Tokenizer) bpe(dst []int, piece string) []int {
	if ids, ok := t.cache.get(piece); ok {
		return append(dst, ids...)
	}
	var buf [64]int32
	syms := buf[:0]
	for i := 0; i < len(piece); i++ {
		if i == len(piece)-1 {
			syms = append(syms, t.byteEndID[piece[i]])
		} else {
			syms = append(syms, t.byteID[piece[i]])
		}
	}
	if len(syms) <= longPiece {
		syms = t.mergeScan(syms)
	} else {
		syms = t.mergeHeap(syms)
	}
	ids := make([]int, len(syms))
	for i, s := range syms {
		ids[i] = int(s)
	}
	if len(piece) <= maxCachedPiece {
		t.cache.put(piece, ids)
	}
	return append(dst, ids...)
}

const (
	// longPiece is the symbol count above which merging switches from the
	// quadratic scan (fastest for real words) to a priority queue, so that a
	// pathological 100 kB "word" cannot stall the tokenizer.
	longPiece = 48
	// maxCachedPiece keeps very long pieces out of the cache.
	maxCachedPiece = 256
)

// mergeScan repeatedly merges the lowest-ranked adjacent pair, leftmost on a
// tie.
func (t *Tokenizer) mergeScan(syms []int32) []int32 {
	for len(syms) > 1 {
		best := -1
		var bestM merge
		for i := 0; i+1 < len(syms); i++ {
			m, ok := t.merges[pair{syms[i], syms[i+1]}]
			if ok && (best < 0 || m.rank < bestM.rank) {
				best, bestM = i, m
			}
		}
		if best < 0 {
			break
		}
		syms[best] = bestM.id
		syms = append(syms[:best+1], syms[best+2:]...)
	}
	return syms
}

// candidate is a mergeable pair in mergeHeap's queue, ordered by rank, then
// position (the order of mergeScan).
type candidate struct {
	rank, pos int32
	a, b      int32
}

type candidates []candidate

func (h candidates) Len() int { return len(h) }
func (h candidates) Less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].pos < h[j].pos
}
func (h candidates) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *candidates) Push(x any)   { *h = append(*h, x.(candidate)) }
func (h *candidates) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// mergeHeap gives the same result as mergeScan in O(n log n): symbols form a
// linked list, candidate pairs wait in a heap, and a popped candidate whose
// symbols changed since it was pushed is dropped.
func (t *Tokenizer) mergeHeap(syms []int32) []int32 {
	n := len(syms)
	next := make([]int32, n)
	prev := make([]int32, n)
	alive := make([]bool, n)
	h := make(candidates, 0, n)
	for i := range syms {
		next[i], prev[i], alive[i] = int32(i+1), int32(i-1), true
	}
	next[n-1] = -1
	for i := 0; i+1 < n; i++ {
		if m, ok := t.merges[pair{syms[i], syms[i+1]}]; ok {
			h = append(h, candidate{m.rank, int32(i), syms[i], syms[i+1]})
		}
	}
	heap.Init(&h)
	push := func(i int32) {
		j := next[i]
		if i < 0 || j < 0 {
			return
		}
		if m, ok := t.merges[pair{syms[i], syms[j]}]; ok {
			heap.Push(&h, candidate{m.rank, i, syms[i], syms[j]})
		}
	}
	for h.Len() > 0 {
		c := heap.Pop(&h).(candidate)
		i := c.pos
		j := next[i]
		if !alive[i] || j < 0 || syms[i] != c.a || syms[j] != c.b {
			continue
		}
		syms[i] = t.merges[pair{c.a, c.b}].id
		alive[j] = false
		next[i] = next[j]
		if next[j] >= 0 {
			prev[next[j]] = i
		}
		if p := prev[i]; p >= 0 {
			push(p)
		}
		push(i)
	}
	out := syms[:0]
	for i := int32(0); i >= 0; i = next[i] {
		out = append(out, syms[i])
	}
	return out
}
