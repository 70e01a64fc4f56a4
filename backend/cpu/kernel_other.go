//go:build !amd64 || purego

package cpu

import (
	"math"

	"github.com/sdxl-go/sdxl/tensor"
)

// microKernels are the kernels of this build: portable Go only.
var microKernels = []microKernel{genericKernel}

// expSumVec has no vector implementation here: expSum does all the work.
func expSumVec(v isa, x []float32, scale, shift float32) (int, float64) { return 0, 0 }

// maxVec has no vector implementation here: maxf does all the work.
func maxVec(v isa, x []float32) (int, float32) { return 0, float32(math.Inf(-1)) }

// scaleVec has no vector implementation here: scalef does all the work.
func scaleVec(v isa, x []float32, s float32) int { return 0 }

// geluVec has no vector implementation here: geluRow does all the work.
func geluVec(v isa, dst, src []float32) int { return 0 }

// packTransVec has no vector implementation here: packB does all the work.
func packTransVec(v isa, dst, src []float32, ldb, k int) int { return 0 }

// packRowsVec has no vector implementation here: packA does all the work.
func packRowsVec(v isa, mr int, dst, src []float32, lda, k int) int { return 0 }

// sumVec, sqDevVec and affineVec have no vector implementation here: their
// callers do all the work.
func sumVec(v isa, x []float32) (int, float64)                      { return 0, 0 }
func sqDevVec(v isa, x []float32, mean float64) (int, float64)      { return 0, 0 }
func affineVec(v isa, dst, src []float32, scale, shift float64) int { return 0 }

// siluVec has no vector implementation here: silu does all the work.
func siluVec(v isa, dst, src []float32) int { return 0 }

// widenVec has no vector implementation here: widenHalf does all the work.
func widenVec(v isa, dt tensor.DType, dst []float32, src []uint16) int { return 0 }
