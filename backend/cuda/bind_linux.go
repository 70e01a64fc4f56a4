//go:build linux

package cuda

import (
	"fmt"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"
)

// The bindings below mirror the C declarations of CUDA 12/13's cuda.h,
// cublas_api.h and nvrtc.h (signatures unchanged between the two). Type
// mapping on 64-bit Linux: CUresult, cublasStatus_t, nvrtcResult, enums and
// int -> int32; unsigned int -> uint32; size_t and CUdeviceptr (unsigned
// long long) -> uint64; long long -> int64; handles (CUcontext, CUstream,
// CUmodule, CUfunction, cublasHandle_t, nvrtcProgram) -> uintptr; CUdevice
// (int) -> int32; pointers to host memory -> unsafe.Pointer or *T.
// Functions whose header name is a macro are bound by their real symbol
// (cuMemAlloc -> cuMemAlloc_v2, etc.).

// driverAPI is libcuda.so.1.
type driverAPI struct {
	cuInit                       func(flags uint32) int32
	cuDriverGetVersion           func(v *int32) int32
	cuDeviceGetCount             func(n *int32) int32
	cuDeviceGet                  func(dev *int32, ordinal int32) int32
	cuDeviceGetName              func(name *byte, n int32, dev int32) int32
	cuDeviceGetAttribute         func(v *int32, attr int32, dev int32) int32
	cuDeviceTotalMem_v2          func(bytes *uint64, dev int32) int32
	cuDevicePrimaryCtxRetain     func(ctx *uintptr, dev int32) int32
	cuDevicePrimaryCtxRelease_v2 func(dev int32) int32
	cuCtxSetCurrent              func(ctx uintptr) int32
	cuMemAlloc_v2                func(p *uint64, n uint64) int32
	cuMemGetInfo_v2              func(free, total *uint64) int32
	cuMemFree_v2                 func(p uint64) int32
	cuMemcpyHtoDAsync_v2         func(dst uint64, src unsafe.Pointer, n uint64, stream uintptr) int32
	cuMemcpyDtoHAsync_v2         func(dst unsafe.Pointer, src uint64, n uint64, stream uintptr) int32
	cuMemsetD8Async              func(dst uint64, v uint8, n uint64, stream uintptr) int32
	cuModuleLoadData             func(mod *uintptr, image unsafe.Pointer) int32
	cuModuleUnload               func(mod uintptr) int32
	cuModuleGetFunction          func(fn *uintptr, mod uintptr, name string) int32
	cuLaunchKernel               func(fn uintptr, gx, gy, gz, bx, by, bz, smem uint32, stream uintptr, params unsafe.Pointer, extra unsafe.Pointer) int32
	cuStreamCreate               func(s *uintptr, flags uint32) int32
	cuStreamDestroy_v2           func(s uintptr) int32
	cuStreamSynchronize          func(s uintptr) int32
	cuGetErrorName               func(code int32, s **byte) int32
	cuGetErrorString             func(code int32, s **byte) int32
}

// cuda.h enum values used.
const (
	cuDevAttrMultiprocessorCount = 16 // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
	cuDevAttrMaxThreadsPerSM     = 39 // CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR
	cuDevAttrCCMajor             = 75 // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
	cuDevAttrCCMinor             = 76 // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR
	cuStreamDefault              = 0  // CU_STREAM_DEFAULT
)

// cublasAPI is libcublas.so.13 (or .12).
type cublasAPI struct {
	cublasCreate_v2            func(h *uintptr) int32
	cublasDestroy_v2           func(h uintptr) int32
	cublasSetStream_v2         func(h uintptr, s uintptr) int32
	cublasGetVersion_v2        func(h uintptr, v *int32) int32
	cublasGetStatusName        func(s int32) string // optional (cuBLAS >= 11.4.2)
	cublasGemmEx               func(h uintptr, ta, tb int32, m, n, k int32, alpha unsafe.Pointer, A uint64, at int32, lda int32, B uint64, bt int32, ldb int32, beta unsafe.Pointer, C uint64, ct int32, ldc int32, compute int32, algo int32) int32
	cublasGemmStridedBatchedEx func(h uintptr, ta, tb int32, m, n, k int32, alpha unsafe.Pointer, A uint64, at int32, lda int32, strideA int64, B uint64, bt int32, ldb int32, strideB int64, beta unsafe.Pointer, C uint64, ct int32, ldc int32, strideC int64, batch int32, compute int32, algo int32) int32
}

// nvrtcAPI is libnvrtc.so.13 (or .12).
type nvrtcAPI struct {
	nvrtcVersion              func(major, minor *int32) int32
	nvrtcGetNumSupportedArchs func(n *int32) int32
	nvrtcGetSupportedArchs    func(archs *int32) int32
	nvrtcCreateProgram        func(prog *uintptr, src string, name string, numHeaders int32, headers unsafe.Pointer, includeNames unsafe.Pointer) int32
	nvrtcDestroyProgram       func(prog *uintptr) int32
	nvrtcCompileProgram       func(prog uintptr, numOptions int32, options unsafe.Pointer) int32
	nvrtcGetCUBINSize         func(prog uintptr, n *uint64) int32
	nvrtcGetCUBIN             func(prog uintptr, buf unsafe.Pointer) int32
	nvrtcGetPTXSize           func(prog uintptr, n *uint64) int32
	nvrtcGetPTX               func(prog uintptr, buf unsafe.Pointer) int32
	nvrtcGetProgramLogSize    func(prog uintptr, n *uint64) int32
	nvrtcGetProgramLog        func(prog uintptr, buf unsafe.Pointer) int32
	nvrtcGetErrorString       func(r int32) string
}

// binder resolves symbols of one library, remembering the first failure.
type binder struct {
	lib, path string
	handle    uintptr
	err       error
}

// fn binds a required function; a missing symbol makes the library
// unusable (say, a stub or a too-old version).
func (b *binder) fn(fptr any, name string) {
	if b.err != nil {
		return
	}
	sym, err := purego.Dlsym(b.handle, name)
	if err != nil || sym == 0 {
		b.err = unavailable("%s (%s) lacks %s: %v", b.lib, b.path, name, err)
		return
	}
	purego.RegisterFunc(fptr, sym)
}

// optional binds a function if the library has it.
func (b *binder) optional(fptr any, name string) bool {
	sym, err := purego.Dlsym(b.handle, name)
	if err != nil || sym == 0 {
		return false
	}
	purego.RegisterFunc(fptr, sym)
	return true
}

// dlopenFirst loads the first candidate that opens, after its companion
// libraries. The error lists every attempt.
func dlopenFirst(what string, env libEnv, candidates []string) (uintptr, string, error) {
	var tried []string
	for _, c := range candidates {
		for _, dep := range env.companions(c) {
			// Best effort: if this fails, opening c reports the real problem.
			_, _ = purego.Dlopen(dep, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		}
		h, err := purego.Dlopen(c, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err == nil {
			return h, c, nil
		}
		tried = append(tried, fmt.Sprintf("%s (%v)", c, err))
	}
	return 0, "", unavailable("cannot load %s; tried %s", what, strings.Join(tried, "; "))
}

func loadDriver(env libEnv) (*driverAPI, string, error) {
	h, path, err := dlopenFirst("the CUDA driver (libcuda.so.1)", env, env.driverCandidates())
	if err != nil {
		return nil, "", err
	}
	api := &driverAPI{}
	b := &binder{lib: "libcuda", path: path, handle: h}
	b.fn(&api.cuInit, "cuInit")
	b.fn(&api.cuDriverGetVersion, "cuDriverGetVersion")
	b.fn(&api.cuDeviceGetCount, "cuDeviceGetCount")
	b.fn(&api.cuDeviceGet, "cuDeviceGet")
	b.fn(&api.cuDeviceGetName, "cuDeviceGetName")
	b.fn(&api.cuDeviceGetAttribute, "cuDeviceGetAttribute")
	b.fn(&api.cuDeviceTotalMem_v2, "cuDeviceTotalMem_v2")
	b.fn(&api.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain")
	b.fn(&api.cuDevicePrimaryCtxRelease_v2, "cuDevicePrimaryCtxRelease_v2")
	b.fn(&api.cuCtxSetCurrent, "cuCtxSetCurrent")
	b.fn(&api.cuMemAlloc_v2, "cuMemAlloc_v2")
	b.fn(&api.cuMemGetInfo_v2, "cuMemGetInfo_v2")
	b.fn(&api.cuMemFree_v2, "cuMemFree_v2")
	b.fn(&api.cuMemcpyHtoDAsync_v2, "cuMemcpyHtoDAsync_v2")
	b.fn(&api.cuMemcpyDtoHAsync_v2, "cuMemcpyDtoHAsync_v2")
	b.fn(&api.cuMemsetD8Async, "cuMemsetD8Async")
	b.fn(&api.cuModuleLoadData, "cuModuleLoadData")
	b.fn(&api.cuModuleUnload, "cuModuleUnload")
	b.fn(&api.cuModuleGetFunction, "cuModuleGetFunction")
	b.fn(&api.cuLaunchKernel, "cuLaunchKernel")
	b.fn(&api.cuStreamCreate, "cuStreamCreate")
	b.fn(&api.cuStreamDestroy_v2, "cuStreamDestroy_v2")
	b.fn(&api.cuStreamSynchronize, "cuStreamSynchronize")
	b.fn(&api.cuGetErrorName, "cuGetErrorName")
	b.fn(&api.cuGetErrorString, "cuGetErrorString")
	return api, path, b.err
}

func loadCUBLAS(env libEnv, majors []int) (*cublasAPI, string, bool, error) {
	h, path, err := dlopenFirst("cuBLAS (libcublas.so)", env, env.toolkitCandidates("libcublas.so", majors))
	if err != nil {
		return nil, "", false, err
	}
	api := &cublasAPI{}
	b := &binder{lib: "libcublas", path: path, handle: h}
	b.fn(&api.cublasCreate_v2, "cublasCreate_v2")
	b.fn(&api.cublasDestroy_v2, "cublasDestroy_v2")
	b.fn(&api.cublasSetStream_v2, "cublasSetStream_v2")
	b.fn(&api.cublasGetVersion_v2, "cublasGetVersion_v2")
	b.fn(&api.cublasGemmEx, "cublasGemmEx")
	b.fn(&api.cublasGemmStridedBatchedEx, "cublasGemmStridedBatchedEx")
	hasName := b.err == nil && b.optional(&api.cublasGetStatusName, "cublasGetStatusName")
	return api, path, hasName, b.err
}

func loadNVRTC(env libEnv, majors []int) (*nvrtcAPI, string, error) {
	h, path, err := dlopenFirst("NVRTC (libnvrtc.so)", env, env.toolkitCandidates("libnvrtc.so", majors))
	if err != nil {
		return nil, "", err
	}
	api := &nvrtcAPI{}
	b := &binder{lib: "libnvrtc", path: path, handle: h}
	b.fn(&api.nvrtcVersion, "nvrtcVersion")
	b.fn(&api.nvrtcGetNumSupportedArchs, "nvrtcGetNumSupportedArchs")
	b.fn(&api.nvrtcGetSupportedArchs, "nvrtcGetSupportedArchs")
	b.fn(&api.nvrtcCreateProgram, "nvrtcCreateProgram")
	b.fn(&api.nvrtcDestroyProgram, "nvrtcDestroyProgram")
	b.fn(&api.nvrtcCompileProgram, "nvrtcCompileProgram")
	b.fn(&api.nvrtcGetCUBINSize, "nvrtcGetCUBINSize")
	b.fn(&api.nvrtcGetCUBIN, "nvrtcGetCUBIN")
	b.fn(&api.nvrtcGetPTXSize, "nvrtcGetPTXSize")
	b.fn(&api.nvrtcGetPTX, "nvrtcGetPTX")
	b.fn(&api.nvrtcGetProgramLogSize, "nvrtcGetProgramLogSize")
	b.fn(&api.nvrtcGetProgramLog, "nvrtcGetProgramLog")
	b.fn(&api.nvrtcGetErrorString, "nvrtcGetErrorString")
	return api, path, b.err
}

// cString reads a NUL-terminated C string owned by a library.
func cString(p *byte) string {
	if p == nil {
		return ""
	}
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}

// check turns a CUresult into an error naming the call and the result.
func (api *driverAPI) check(call string, r int32) error {
	if r == cudaSuccess {
		return nil
	}
	e := &Error{Call: call, Code: int(r), Name: codeName(cuResultNames, "CUresult", int(r))}
	var p *byte
	if api.cuGetErrorName(r, &p) == cudaSuccess && p != nil {
		e.Name = cString(p)
	}
	p = nil
	if api.cuGetErrorString(r, &p) == cudaSuccess && p != nil {
		e.Msg = cString(p)
	}
	return e
}
