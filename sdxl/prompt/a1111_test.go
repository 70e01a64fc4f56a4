package prompt

import (
	"math"
	"strings"
	"testing"
)

func TestChunkA1111(t *testing.T) {
	t1, _ := sdxlTokenizers(t)
	// BREAK closes the chunk: two chunks, the second starting with "dog".
	frags, err := ParseA1111("a (cat:1.5) BREAK dog")
	if err != nil {
		t.Fatal(err)
	}
	chunks, count := ChunkA1111(t1, frags, DefaultCommaBacktrack)
	if len(chunks) != 2 || count != 75+1 {
		t.Fatalf("%d chunks, token count %d", len(chunks), count)
	}
	c0, c1 := chunks[0], chunks[1]
	if c0.IDs[0] != 49406 || c0.IDs[1] != 320 || c0.IDs[2] != 2368 || c0.IDs[3] != 49407 || c0.IDs[76] != 49407 || c0.Multipliers[2] != 1.5 || c0.Multipliers[1] != 1 {
		t.Errorf("chunk 0: %v %v", c0.IDs[:5], c0.Multipliers[:5])
	}
	if c1.IDs[1] != 1929 || c1.IDs[2] != 49407 || len(c1.IDs) != 77 {
		t.Errorf("chunk 1: %v", c1.IDs[:4])
	}
	// Comma backtrack: 70 "cat", a comma, 10 "dog". The chunk fills at 75
	// with the comma 5 tokens back, so the 4 dogs after it move on.
	text := strings.Repeat("cat ", 70) + "," + strings.Repeat(" dog", 10)
	frags, _ = ParseA1111(text)
	chunks, _ = ChunkA1111(t1, frags, DefaultCommaBacktrack)
	if len(chunks) != 2 || chunks[0].IDs[71] != 267 || chunks[0].IDs[72] != 49407 || chunks[1].IDs[10] != 1929 || chunks[1].IDs[11] != 49407 {
		t.Errorf("comma backtrack: %d chunks, chunk0[70:74]=%v chunk1[9:12]=%v", len(chunks), chunks[0].IDs[70:74], chunks[1].IDs[9:12])
	}
	// Without backtrack the chunk is simply full.
	chunks, _ = ChunkA1111(t1, frags, 0)
	if chunks[0].IDs[72] != 1929 || chunks[0].IDs[75] != 1929 || chunks[1].IDs[6] != 1929 || chunks[1].IDs[7] != 49407 {
		t.Errorf("no backtrack: %v / %v", chunks[0].IDs[70:77], chunks[1].IDs[:8])
	}
	// Empty prompt: one chunk of BOS and EOS.
	chunks, count = ChunkA1111(t1, []Fragment{{"", 1}}, 20)
	if len(chunks) != 1 || count != 0 || chunks[0].IDs[1] != 49407 {
		t.Errorf("empty: %d chunks, count %d", len(chunks), count)
	}
}

func TestEncodeA1111Emphasis(t *testing.T) {
	t1, t2 := sdxlTokenizers(t)
	t2o, err := t2.WithPad(49407) // open_clip splitting, padded with 0 below
	if err != nil {
		t.Fatal(err)
	}
	e1, e2 := &fakeEncoder{dim: 4}, &fakeEncoder{dim: 6}
	got, err := EncodeA1111(t1, e1, t2o, e2, "a (red:1.3) cat!", DefaultCommaBacktrack)
	if err != nil {
		t.Fatal(err)
	}
	if got.Tokens != 77 || got.Dim != 10 || len(got.Pooled) != 6 {
		t.Fatalf("shape %d x %d, pooled %d", got.Tokens, got.Dim, len(got.Pooled))
	}
	// Encoder 2 sees open_clip ids: "!" as 256 ("!</w>"), zeros after EOS.
	ids2, _ := t2o.EncodePadded("a red cat!", 77)
	if ids2[4] != 256 {
		t.Fatalf("ids %v", ids2[:6])
	}
	for i := 6; i < 77; i++ {
		ids2[i] = 0
	}
	raw2, pooled, _ := e2.Encode([][]int32{ids2}, nil)
	var before, after float64
	for i, v := range raw2 {
		before += float64(v)
		m := float32(1)
		if i/6 == 2 {
			m = 1.3
		}
		after += float64(v * m)
	}
	ratio := float32(float32(before/float64(len(raw2))) / float32(after/float64(len(raw2))))
	for tkn := 0; tkn < 77; tkn++ {
		for k := 0; k < 6; k++ {
			m := float32(1)
			if tkn == 2 {
				m = 1.3
			}
			want := float32(float32(raw2[tkn*6+k]*m) * ratio)
			if g := got.Embeds[tkn*10+4+k]; g != want {
				t.Fatalf("token %d dim %d: %v, want %v", tkn, k, g, want)
			}
		}
	}
	for i := range pooled {
		if pooled[i] != got.Pooled[i] {
			t.Fatal("pooled is not encoder 2's unweighted first chunk")
		}
	}
	// the mean of each encoder's block is preserved
	var m1 float64
	for tkn := 0; tkn < 77; tkn++ {
		for k := 0; k < 6; k++ {
			m1 += float64(got.Embeds[tkn*10+4+k])
		}
	}
	if math.Abs(m1-before) > 1e-4*math.Max(1, math.Abs(before)) {
		t.Errorf("mean changed: %v vs %v", m1, before)
	}
}
