//go:build !amd64 || purego

package cpu

// kernel is the portable micro-kernel on machines without the assembly one.
var kernel = kernelGo
