package cuda

import (
	"errors"
	"fmt"
)

// ErrUnavailable is wrapped by every error of New that means "this machine
// cannot run the CUDA backend" (no driver, no GPU, missing cuBLAS or NVRTC),
// as opposed to a failure of a working installation. Tests skip on it.
var ErrUnavailable = errors.New("CUDA unavailable")

// unavailable wraps a reason in ErrUnavailable: "CUDA unavailable: <why>".
func unavailable(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnavailable, fmt.Sprintf(format, args...))
}

// Error is a failed call into a CUDA library.
type Error struct {
	Op   string // the backend operation, e.g. "MatMul [2 77 768]x[768 768]"
	Call string // the library function, e.g. "cublasGemmEx"
	Code int    // the library's result code
	Name string // the result's name, e.g. "CUDA_ERROR_OUT_OF_MEMORY"
	Msg  string // extra detail (the library's description, a compile log)
}

func (e *Error) Error() string {
	s := "cuda: "
	if e.Op != "" {
		s += e.Op + ": "
	}
	s += fmt.Sprintf("%s: %s (%d)", e.Call, e.Name, e.Code)
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s
}

// Driver API result codes the backend acts on.
const (
	cudaSuccess         = 0
	cudaErrOutOfMemory  = 2
	cudaErrNoDevice     = 100
	cudaErrInvalidValue = 1
)

// cuResultNames names the CUresult codes (cuda.h) for when cuGetErrorName
// itself is unavailable or fails; only the common ones are listed.
var cuResultNames = map[int]string{
	0:   "CUDA_SUCCESS",
	1:   "CUDA_ERROR_INVALID_VALUE",
	2:   "CUDA_ERROR_OUT_OF_MEMORY",
	3:   "CUDA_ERROR_NOT_INITIALIZED",
	4:   "CUDA_ERROR_DEINITIALIZED",
	34:  "CUDA_ERROR_STUB_LIBRARY",
	46:  "CUDA_ERROR_DEVICES_UNAVAILABLE",
	100: "CUDA_ERROR_NO_DEVICE",
	101: "CUDA_ERROR_INVALID_DEVICE",
	200: "CUDA_ERROR_INVALID_IMAGE",
	201: "CUDA_ERROR_INVALID_CONTEXT",
	209: "CUDA_ERROR_NO_BINARY_FOR_GPU",
	218: "CUDA_ERROR_INVALID_PTX",
	222: "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
	300: "CUDA_ERROR_INVALID_SOURCE",
	400: "CUDA_ERROR_INVALID_HANDLE",
	500: "CUDA_ERROR_NOT_FOUND",
	700: "CUDA_ERROR_ILLEGAL_ADDRESS",
	701: "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
	702: "CUDA_ERROR_LAUNCH_TIMEOUT",
	719: "CUDA_ERROR_LAUNCH_FAILED",
	803: "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
	804: "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE",
	999: "CUDA_ERROR_UNKNOWN",
}

// cublasStatusNames names cublasStatus_t (cublas_api.h).
var cublasStatusNames = map[int]string{
	0:  "CUBLAS_STATUS_SUCCESS",
	1:  "CUBLAS_STATUS_NOT_INITIALIZED",
	3:  "CUBLAS_STATUS_ALLOC_FAILED",
	7:  "CUBLAS_STATUS_INVALID_VALUE",
	8:  "CUBLAS_STATUS_ARCH_MISMATCH",
	11: "CUBLAS_STATUS_MAPPING_ERROR",
	13: "CUBLAS_STATUS_EXECUTION_FAILED",
	14: "CUBLAS_STATUS_INTERNAL_ERROR",
	15: "CUBLAS_STATUS_NOT_SUPPORTED",
	16: "CUBLAS_STATUS_LICENSE_ERROR",
}

// nvrtcResultNames names nvrtcResult (nvrtc.h).
var nvrtcResultNames = map[int]string{
	0:  "NVRTC_SUCCESS",
	1:  "NVRTC_ERROR_OUT_OF_MEMORY",
	2:  "NVRTC_ERROR_PROGRAM_CREATION_FAILURE",
	3:  "NVRTC_ERROR_INVALID_INPUT",
	4:  "NVRTC_ERROR_INVALID_PROGRAM",
	5:  "NVRTC_ERROR_INVALID_OPTION",
	6:  "NVRTC_ERROR_COMPILATION",
	7:  "NVRTC_ERROR_BUILTIN_OPERATION_FAILURE",
	8:  "NVRTC_ERROR_NO_NAME_EXPRESSIONS_AFTER_COMPILATION",
	9:  "NVRTC_ERROR_NO_LOWERED_NAMES_BEFORE_COMPILATION",
	10: "NVRTC_ERROR_NAME_EXPRESSION_NOT_VALID",
	11: "NVRTC_ERROR_INTERNAL_ERROR",
	12: "NVRTC_ERROR_TIME_FILE_WRITE_FAILED",
}

// codeName looks a code up in a table, falling back to prefix(code).
func codeName(table map[int]string, prefix string, code int) string {
	if n, ok := table[code]; ok {
		return n
	}
	return fmt.Sprintf("%s(%d)", prefix, code)
}

// isOutOfMemory reports whether err is a failed allocation.
func isOutOfMemory(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Call == "cuMemAlloc_v2" && e.Code == cudaErrOutOfMemory
}
