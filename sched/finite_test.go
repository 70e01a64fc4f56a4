package sched

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestCheckStep(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(-1))
	ok := []float32{0, 1, -3.5, math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32}
	if FirstNonFinite(ok) != -1 || CheckStep("base", 1, 3, ok, ok) != nil {
		t.Error("finite values refused")
	}
	for _, c := range []struct {
		out, lat []float32
		want     string
	}{
		{[]float32{0, nan}, ok, "base step 2 of 3: the UNet output holds NaN (at index 1): the model gave NaN"},
		{ok, []float32{1, 2, inf}, "base step 2 of 3: the latents after the scheduler step holds -Inf (at index 2): the scheduler step"},
		{[]float32{float32(math.Inf(1))}, []float32{nan}, "the UNet output holds +Inf"},
	} {
		err := CheckStep("base", 2, 3, c.out, c.lat)
		var ne *NonFiniteError
		if !errors.As(err, &ne) || ne.Step != 2 || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v / %v: %v, want %q", c.out, c.lat, err, c.want)
		}
	}
	if err := CheckFinite([]float32{1, nan}, "vae", "the decoded image", CauseModel); err == nil || !strings.HasPrefix(err.Error(), "vae: the decoded image holds NaN") {
		t.Errorf("vae: %v", err)
	}
	if err := CheckInitNoise([]float32{0.5, inf}); err == nil || !strings.Contains(err.Error(), "init noise value 1 is -Inf") {
		t.Errorf("init noise: %v", err)
	}
	if err := CheckInitNoise(ok); err != nil {
		t.Error(err)
	}
}

// BenchmarkFirstNonFinite checks 16 latents of a 1024x1024 image
// (16x4x128x128 values), all finite.
func BenchmarkFirstNonFinite(b *testing.B) {
	x := make([]float32, 16*4*128*128)
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	b.SetBytes(int64(4 * len(x)))
	for b.Loop() {
		if FirstNonFinite(x) != -1 {
			b.Fatal("finite data refused")
		}
	}
}
