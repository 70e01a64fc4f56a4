//go:build !linux

package vae

// maxRSS is unknown off Linux.
func maxRSS() int64 { return 0 }
