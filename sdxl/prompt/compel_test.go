package prompt

import (
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sdxl-go/sdxl/sdxl/tokenizer"
)

// fakeEncoder is a small deterministic causal "encoder": position t's
// vector is the mean over attended positions s <= t of a hash of (id, s),
// so masking, order and ids all change the output. Pooled is the vector at
// the first EOS.
type fakeEncoder struct {
	dim   int
	calls int
}

func (f *fakeEncoder) Dim() int { return f.dim }

func (f *fakeEncoder) Encode(ids [][]int32, mask [][]int32) ([]float32, []float32, error) {
	f.calls++
	var hidden, pooled []float32
	for r, row := range ids {
		h := make([]float32, len(row)*f.dim)
		for t := range row {
			n := 0
			for s := 0; s <= t; s++ {
				if mask != nil && mask[r][s] == 0 {
					continue
				}
				n++
				for k := 0; k < f.dim; k++ {
					h[t*f.dim+k] += float32(math.Sin(float64(row[s])*0.37 + float64(s)*1.3 + float64(k)*0.71))
				}
			}
			for k := 0; k < f.dim; k++ {
				h[t*f.dim+k] /= float32(max(n, 1))
			}
		}
		hidden = append(hidden, h...)
		for t, id := range row {
			if id == 49407 {
				pooled = append(pooled, h[t*f.dim:(t+1)*f.dim]...)
				break
			}
		}
	}
	return hidden, pooled, nil
}

func sdxlTokenizers(t *testing.T) (*tokenizer.Tokenizer, *tokenizer.Tokenizer) {
	t.Helper()
	t1, t2, err := tokenizer.DefaultSDXL()
	if err != nil {
		t.Fatal(err)
	}
	return t1, t2
}

const (
	lionPrompt  = "Colorful Roaring Lion sitting on a (victorian)1.2 couch, (flat icon)+, vector+"
	animePrompt = "(Anime Portrait)1.2 of a young woman, pretty+ stunning+ blue eyes, soft face, long pink hair, bow hairclip, pink school uniform, high quality, hq, 4k, 8k, award-winning, happy white cat in her arms, dawn+, close-up+, (cherry blossoms)---, (wearing golden blossom earrings)+, (bokeh effect)-, cute, lake with (white cranes)++ in the background, butterflies--, reflections--"
	animeNeg    = "Bad quality, artifacts, low quality, lowres, deformed+, malformed+, extra hands, extra limbs, bad eyes, ugly, lowres, washed out, poor quality"
)

// TestLionTokenPlan: the ids and per-token weights Compel feeds both
// encoders for the golden weighted prompt, derived by hand from compel's
// code and the golden ids of the unweighted text.
func TestLionTokenPlan(t *testing.T) {
	t1, t2 := sdxlTokenizers(t)
	c, err := NewCompel(true, Pair{t1, &fakeEncoder{dim: 4}, false}, Pair{t2, &fakeEncoder{dim: 4}, true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseCompel(lionPrompt)
	if err != nil {
		t.Fatal(err)
	}
	plans, err := c.Plans(p.Prompts[0].Fragments)
	if err != nil {
		t.Fatal(err)
	}
	content := []int32{11444, 26428, 5567, 4919, 525, 320, 12350, 12724, 267, 6313, 5646, 267, 21533}
	w := []float32{1, 1, 1, 1, 1, 1, 1.2, 1, 1, 1.1, 1.1, 1, 1.1}
	for i, plan := range plans {
		pad := int32(49407)
		if i == 1 {
			pad = 0
		}
		wantIDs := append(append([]int32{49406}, content...), 49407)
		wantW := append(append([]float32{1}, w...), 1)
		for len(wantIDs) < 77 {
			wantIDs = append(wantIDs, pad)
			wantW = append(wantW, 1)
		}
		if d := cmp.Diff(wantIDs, plan.IDs); d != "" {
			t.Errorf("encoder %d ids (-want +got):\n%s", i+1, d)
		}
		if d := cmp.Diff(wantW, plan.Weights); d != "" {
			t.Errorf("encoder %d weights (-want +got):\n%s", i+1, d)
		}
		wantR := [][2]int{{1, 6}, {7, 7}, {8, 9}, {10, 11}, {12, 12}, {13, 13}}
		if d := cmp.Diff(wantR, plan.Ranges); d != "" {
			t.Errorf("encoder %d fragment ranges (-want +got):\n%s", i+1, d)
		}
	}
}

// TestAnimeTokenPlan checks the long prompt's chunking: 102 tokens split
// after the last "," within the first 75 (no "." in the prompt), the
// down-weighted fragments' ranges, and 154 positions for both encoders.
func TestAnimeTokenPlan(t *testing.T) {
	t1, t2 := sdxlTokenizers(t)
	p, err := ParseCompel(animePrompt)
	if err != nil {
		t.Fatal(err)
	}
	frags := p.Prompts[0].Fragments
	for i, tk := range []*tokenizer.Tokenizer{t1, t2} {
		pv := &provider{tok: tk, enc: &fakeEncoder{dim: 2}}
		plan, err := pv.Plan(frags)
		if err != nil {
			t.Fatal(err)
		}
		if plan.Chunks() != 2 {
			t.Fatalf("encoder %d: %d chunks, want 2", i+1, plan.Chunks())
		}
		// the content tokens, in order, are every fragment's tokens
		var all []int32
		var weights []float32
		for _, f := range frags {
			for _, id := range tk.Encode(f.Text) {
				all = append(all, int32(id))
				weights = append(weights, float32(f.Weight))
			}
		}
		c0 := plan.IDs[:77]
		n0 := 0
		for n0 < 75 && c0[1+n0] != 49407 {
			n0++
		}
		if c0[0] != 49406 || c0[n0] != 267 {
			t.Errorf("encoder %d: chunk 0 has %d tokens ending in %d, want a comma", i+1, n0, c0[n0])
		}
		for j := n0 + 1; j < len(all) && j < 75; j++ {
			if all[j] == 267 {
				t.Errorf("encoder %d: a later comma at %d fits in chunk 0 (split at %d)", i+1, j, n0)
			}
		}
		got := append(append([]int32{}, c0[1:1+n0]...), plan.IDs[78:78+len(all)-n0]...)
		if d := cmp.Diff(all, got); d != "" {
			t.Errorf("encoder %d content (-want +got):\n%s", i+1, d)
		}
		gotW := append(append([]float32{}, plan.Weights[1:1+n0]...), plan.Weights[78:78+len(all)-n0]...)
		if d := cmp.Diff(weights, gotW); d != "" {
			t.Errorf("encoder %d weights (-want +got):\n%s", i+1, d)
		}
		if plan.IDs[77] != 49406 || plan.IDs[78+len(all)-n0] != 49407 {
			t.Errorf("encoder %d: chunk 1 framing wrong", i+1)
		}
		// every down-weighted fragment has its tokens at its range
		for fi, r := range plan.Ranges {
			ids := tk.Encode(frags[fi].Text)
			var seen []int32
			for j := r[0]; j <= r[1]; j++ {
				if j > n0 && j <= 77 { // chunk 0's EOS and padding, chunk 1's BOS
					continue
				}
				seen = append(seen, plan.IDs[j])
			}
			want := make([]int32, len(ids))
			for j, id := range ids {
				want[j] = int32(id)
			}
			if d := cmp.Diff(want, seen); d != "" {
				t.Errorf("encoder %d fragment %d %q (-want +got):\n%s", i+1, fi, frags[fi].Text, d)
			}
		}
		t.Logf("encoder %d: %d tokens, split after %d", i+1, len(all), n0)
	}
}

// TestWeightingMath checks build_weighted_embedding_tensor and the
// down-weighting blend against direct computations with the fake encoder.
func TestWeightingMath(t *testing.T) {
	t1, _ := sdxlTokenizers(t)
	enc := &fakeEncoder{dim: 3}
	pv := &provider{tok: t1, enc: enc, truncate: true}
	frags := []Fragment{{"a red", 1}, {"cat", 1.5}, {"on a mat", 0.5}}
	got, plan, err := pv.Embeddings(frags)
	if err != nil {
		t.Fatal(err)
	}
	empty, _ := pv.empty()
	raw, _, _ := enc.Encode([][]int32{plan.IDs}, nil)
	mask := append([]int32(nil), plan.Mask...)
	r := plan.Ranges[2]
	for j := r[0]; j <= r[1]; j++ {
		mask[j] = 0
	}
	rawMasked, _, _ := enc.Encode([][]int32{plan.IDs}, [][]int32{mask})
	weight := func(z []float32) []float32 {
		out := append([]float32(nil), z...)
		for tkn, w := range plan.Weights {
			if w == 1 {
				continue
			}
			for k := 0; k < 3; k++ {
				i := tkn*3 + k
				out[i] = empty[i] + float32(float32(z[i]-empty[i])*w)
			}
		}
		return out
	}
	base, without := weight(raw), weight(rawMasked)
	// lerp weight tan((1-0.5)*pi/2) = 1 against 1: the mean of the two
	lw := float32(math.Tan(0.5 * math.Pi / 2))
	sum := 1 + lw
	w0, w1 := float32(1/sum), float32(lw/sum)
	for i := range got {
		want := float32(base[i]*w0) + float32(without[i]*w1)
		if got[i] != want {
			t.Fatalf("element %d: %v, want %v", i, got[i], want)
		}
	}
	if plan.Weights[3] != 1.5 || plan.Weights[4] != 0.5 || r != [2]int{4, 6} {
		t.Errorf("plan weights %v ranges %v", plan.Weights[:8], plan.Ranges)
	}
	// no weights: the encoder output unchanged, one call
	enc.calls = 0
	z, _, err := pv.Embeddings([]Fragment{{"a cat", 1}})
	if err != nil || enc.calls != 1 {
		t.Fatalf("unweighted: %v, %d calls", err, enc.calls)
	}
	ids, _ := t1.EncodePadded("a cat", 77)
	direct, _, _ := enc.Encode([][]int32{ids}, nil)
	if d := cmp.Diff(direct, z); d != "" {
		t.Errorf("unweighted differs:\n%s", d)
	}
}

// TestCompelForSDXLShapes runs the anime golden prompts through the SDXL
// wrapper with fake encoders of the small model's sizes (16 and 32).
func TestCompelForSDXLShapes(t *testing.T) {
	t1, t2 := sdxlTokenizers(t)
	e1, e2 := &fakeEncoder{dim: 16}, &fakeEncoder{dim: 32}
	s, err := NewCompelForSDXL(t1, e1, t2, e2)
	if err != nil {
		t.Fatal(err)
	}
	pos, neg, err := s.Encode(animePrompt, animeNeg)
	if err != nil {
		t.Fatal(err)
	}
	if pos.Tokens != 154 || neg.Tokens != 154 || pos.Dim != 48 || len(pos.Pooled) != 32 || len(neg.Pooled) != 32 {
		t.Fatalf("pos %d x %d, neg %d x %d, pooled %d", pos.Tokens, pos.Dim, neg.Tokens, neg.Dim, len(pos.Pooled))
	}
	// the negative's second chunk is the empty prompt's encoding
	empty1, _ := s.c1.providers[0].empty()
	empty2, _ := s.c2.providers[0].empty()
	for tkn := 0; tkn < 77; tkn++ {
		row := neg.Embeds[(77+tkn)*48 : (78+tkn)*48]
		if !cmp.Equal(row[:16], empty1[tkn*16:(tkn+1)*16]) || !cmp.Equal(row[16:], empty2[tkn*32:(tkn+1)*32]) {
			t.Fatalf("negative padding row %d is not the empty prompt", tkn)
		}
	}
	// pooled: encoder 2 on the raw text, truncated to 77
	ids, _ := t2.EncodePadded(animePrompt, 77)
	_, wantPooled, _ := e2.Encode([][]int32{ids}, nil)
	if d := cmp.Diff(wantPooled, pos.Pooled); d != "" {
		t.Errorf("pooled (-want +got):\n%s", d)
	}
}

func TestCompelBlendAndConjunction(t *testing.T) {
	t1, _ := sdxlTokenizers(t)
	c, _ := NewCompel(false, Pair{t1, &fakeEncoder{dim: 2}, false})
	a, _ := c.Build("a cat")
	b, _ := c.Build("a dog")
	bl, err := c.Build(`("a cat", "a dog").blend(0.25, 0.75)`)
	if err != nil {
		t.Fatal(err)
	}
	for i := range bl.Embeds {
		want := float32(a.Embeds[i]*0.25) + float32(b.Embeds[i]*0.75)
		if bl.Embeds[i] != want {
			t.Fatalf("blend element %d = %v, want %v", i, bl.Embeds[i], want)
		}
	}
	and, err := c.Build(`("a cat", "a dog").and()`)
	if err != nil || and.Tokens != 154 || !cmp.Equal(and.Embeds[:77*2], a.Embeds) || !cmp.Equal(and.Embeds[77*2:], b.Embeds) {
		t.Fatalf("and: %v tokens %d", err, and.Tokens)
	}
	if _, err := c.Build("()"); err == nil || !strings.Contains(err.Error(), "no text") {
		t.Errorf("empty prompt: %v", err)
	}
}
