//go:build !amd64 || purego

package cpu

// fmaPeak has nothing to measure without the assembly kernels.
func fmaPeak(v isa) float64 { return 0 }
