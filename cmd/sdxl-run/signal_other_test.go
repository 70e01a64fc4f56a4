//go:build !unix

package main

// signalHook is unix-only (the signal tests send POSIX signals).
func signalHook(string) func(string) { return func(string) {} }
