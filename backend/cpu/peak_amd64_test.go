//go:build amd64 && !purego

package cpu

import (
	"sync"
	"time"
)

// fmaPeak is one core's measured FMA throughput in GFLOP/s at v's register
// width (0 for the portable kernel or where the CPU lacks the width),
// measured once per test binary.
func fmaPeak(v isa) float64 {
	switch {
	case v == isaAVX2 && features.avx2FMA:
		return peakYMM()
	case v == isaAVX512 && features.avx512:
		return peakZMM()
	}
	return 0
}

var (
	peakYMM = sync.OnceValue(func() float64 { return timePeak(fmaPeakYMM, 8) })
	peakZMM = sync.OnceValue(func() float64 { return timePeak(fmaPeakZMM, 16) })
)

// timePeak runs loop (12 FMAs of lanes floats per iteration) for about
// 100 ms and keeps the best of 5 rounds.
func timePeak(loop func(n int), lanes int) float64 {
	const n = 1 << 20
	best := 0.0
	for range 5 {
		start := time.Now()
		reps := 0
		for time.Since(start) < 20*time.Millisecond {
			loop(n)
			reps++
		}
		gf := float64(reps) * n * 12 * float64(2*lanes) / time.Since(start).Seconds() / 1e9
		best = max(best, gf)
	}
	return best
}
