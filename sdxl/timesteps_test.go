package sdxl

import "testing"

func TestTimestepCutoff(t *testing.T) {
	// 1000 - 0.8*1000 is 200.00000000000003 in float64.
	if c := timestepCutoff(1000, 0.8); c != 200 {
		t.Fatalf("cutoff(0.8) = %v", c)
	}
	if c := timestepCutoff(1000, 0.7505); c != 250 { // 249.5 rounds half to even
		t.Fatalf("cutoff(0.7505) = %v", c)
	}
}

func TestDenoisingEndAndStart(t *testing.T) {
	// Euler, 10 steps, leading spacing with steps_offset 1.
	ts := []float64{901, 801, 701, 601, 501, 401, 301, 201, 101, 1}
	if got := applyDenoisingEnd(ts, 1000, 0.8); len(got) != 8 {
		t.Fatalf("denoising_end 0.8 keeps %d steps, want 8", len(got))
	}
	begin, err := img2imgTimesteps(ts, 10, 0.3, 1, 1000, 0.8)
	if err != nil || begin != 8 {
		t.Fatalf("denoising_start 0.8: begin %d, %v; want 8", begin, err)
	}
	begin, err = img2imgTimesteps(ts, 10, 0.3, 1, 1000, 0)
	if err != nil || begin != 7 {
		t.Fatalf("strength 0.3: begin %d, %v; want 7", begin, err)
	}
	// Heun: doubled timesteps; an even count gets one more.
	heun := []float64{901, 801, 801, 701, 701, 601, 601, 501, 501, 401, 401, 301, 301, 201, 201, 101, 101, 1, 1}
	begin, _ = img2imgTimesteps(heun, 10, 1, 2, 1000, 0.8)
	if n := len(heun) - begin; n != 5 {
		t.Fatalf("heun denoising_start: %d steps, want 5", n)
	}
	if _, err := img2imgTimesteps(ts, 10, 0.05, 1, 1000, 0); err == nil {
		t.Fatal("strength leaving no steps accepted")
	}
}

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
