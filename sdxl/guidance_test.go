package sdxl

import "testing"

func TestClassifierFreeGuidance(t *testing.T) {
	u := []float32{0, 1, 2, 3}
	c := []float32{1, 1, 4, 1}
	got := classifierFreeGuidance(u, c, 5, 0, 1)
	want := []float32{5, 1, 12, -7}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("cfg = %v, want %v", got, want)
		}
	}
	r := classifierFreeGuidance(u, c, 5, 1, 1)
	if s1, s2 := stddev(r), stddev(c); s1-s2 > 1e-6 || s2-s1 > 1e-6 {
		t.Fatalf("rescale 1 should give the text prediction's std: %v vs %v", s1, s2)
	}
}
