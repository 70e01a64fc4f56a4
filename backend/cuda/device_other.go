//go:build !linux

package cuda

// openCUDA: the backend loads the CUDA libraries with dlopen, which it
// supports on Linux only.
func openCUDA(ordinal int, o Options) (device, error) {
	return nil, unavailable("the CUDA backend supports Linux only")
}
