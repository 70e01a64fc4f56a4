package cuda

import "fmt"

// DeviceInfo describes the GPU and the libraries a Backend uses.
type DeviceInfo struct {
	Name             string   // e.g. "NVIDIA H200"
	Ordinal          int      // the device number given to New
	Major, Minor     int      // compute capability
	SMs              int      // streaming multiprocessors
	MaxThreadsPerSM  int      // resident threads per multiprocessor (2048 on sm_80 and sm_90)
	TotalMemory      int64    // bytes
	DriverVersion    int      // e.g. 13000 for CUDA 13.0
	NVRTCVersion     [2]int   // major, minor
	CUBLASVersion    int      // e.g. 130000
	Libraries        []string // the paths (or sonames) loaded
	IncludeDir       string   // toolkit headers for NVRTC ("" if none found)
	KernelCacheDir   string   // on-disk cache of compiled kernels ("" if off)
	FlashUnavailable string   // why the tensor-core attention kernel cannot be used ("" if it can)
}

// device is the narrow interface between the backend's ops and a GPU: the
// CUDA driver, cuBLAS and NVRTC in production (cudaDevice), an emulator in
// tests. Every method runs on the backend's device thread, and every
// asynchronous method queues work on the device's single stream.
type device interface {
	info() DeviceInfo
	// memAlloc and memFree manage raw device memory (the pool sits on top).
	memAlloc(n int) (uint64, error)
	memFree(p uint64) error
	// memsetZero clears n bytes.
	memsetZero(p uint64, n int) error
	// upload copies host bytes to the device; src may be reused as soon as
	// it returns.
	upload(dst uint64, src []byte) error
	// download copies device bytes to the host and waits for them (and so
	// for all earlier work).
	download(dst []byte, src uint64) error
	// prepare compiles and loads a module if it is not loaded yet.
	prepare(m *kernelModule) error
	// launch runs kernel name of module m.
	launch(m *kernelModule, name string, grid, block [3]uint32, args *kargs) error
	// gemm runs one cuBLAS GEMM (or strided batch of them).
	gemm(g *gemmCall) error
	// sync waits for all queued work and reports its failures.
	sync() error
	// close releases everything the device holds. Memory still allocated
	// has been returned by the caller.
	close() error
}

// checkLaunch validates a launch configuration against CUDA's limits, so
// that a mistake is reported with the numbers rather than as
// CUDA_ERROR_INVALID_VALUE.
func checkLaunch(name string, grid, block [3]uint32) error {
	threads := uint64(block[0]) * uint64(block[1]) * uint64(block[2])
	switch {
	case grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || threads == 0:
		return fmt.Errorf("kernel %s: empty launch grid %v block %v", name, grid, block)
	case grid[0] > 1<<31-1 || grid[1] > 65535 || grid[2] > 65535:
		return fmt.Errorf("kernel %s: grid %v exceeds CUDA's limits", name, grid)
	case threads > 1024:
		return fmt.Errorf("kernel %s: block %v has more than 1024 threads", name, block)
	}
	return nil
}

// versionString formats a CUDA version number (13000 -> "13.0").
func versionString(v int) string { return fmt.Sprintf("%d.%d", v/1000, v%1000/10) }
