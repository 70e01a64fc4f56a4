//go:build !amd64 || purego

package cpu

import "math"

// kernel is the portable micro-kernel on machines without the assembly one.
var kernel = kernelGo

// expSumVec has no vector implementation here: expSum does all the work.
func expSumVec(x []float32, scale, shift float32) (int, float64) { return 0, 0 }

// maxVec has no vector implementation here: maxf does all the work.
func maxVec(x []float32) (int, float32) { return 0, float32(math.Inf(-1)) }

// scaleVec has no vector implementation here: scalef does all the work.
func scaleVec(x []float32, s float32) int { return 0 }

// geluVec has no vector implementation here: geluRow does all the work.
func geluVec(dst, src []float32) int { return 0 }

// packTransVec has no vector implementation here: packB does all the work.
func packTransVec(dst, src []float32, ldb, k int) int { return 0 }

// packRowsVec has no vector implementation here: packA does all the work.
func packRowsVec(dst, src []float32, lda, k int) int { return 0 }

// sumVec, sqDevVec and affineVec have no vector implementation here: their
// callers do all the work.
func sumVec(x []float32) (int, float64)                      { return 0, 0 }
func sqDevVec(x []float32, mean float64) (int, float64)      { return 0, 0 }
func affineVec(dst, src []float32, scale, shift float64) int { return 0 }

// siluVec has no vector implementation here: silu does all the work.
func siluVec(dst, src []float32) int { return 0 }
