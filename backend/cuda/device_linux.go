//go:build linux

package cuda

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"unsafe"

	"github.com/sdxl-go/sdxl/internal/atomicfile"
)

// cudaDevice is the production device: the driver API on one stream of the
// device's primary context (cuCtxCreate's signature changed in CUDA 13; the
// primary context is also the one cuBLAS's runtime uses), cuBLAS on that
// stream, NVRTC for the kernels.
type cudaDevice struct {
	drv    *driverAPI
	blas   *cublasAPI
	rtc    *nvrtcAPI
	blasSt bool // cublasGetStatusName is available

	dev    int32
	ctx    uintptr
	stream uintptr
	handle uintptr // cublasHandle_t

	inf      DeviceInfo
	archs    []int // NVRTC's supported sm_XX values
	cacheDir string

	modules map[*kernelModule]uintptr
	funcs   map[string]uintptr // "module/kernel" -> CUfunction
}

// openCUDA loads the libraries and opens GPU ordinal. It must run on the
// device thread: the context it makes current belongs to that thread.
func openCUDA(ordinal int, o Options) (_ device, err error) {
	env := osLibEnv()
	drv, dpath, err := loadDriver(env)
	if err != nil {
		return nil, err
	}
	if err := drv.check("cuInit", drv.cuInit(0)); err != nil {
		return nil, unavailable("%v", err)
	}
	c := &cudaDevice{drv: drv, modules: map[*kernelModule]uintptr{}, funcs: map[string]uintptr{}}
	var ver, count int32
	if err := drv.check("cuDriverGetVersion", drv.cuDriverGetVersion(&ver)); err != nil {
		return nil, unavailable("%v", err)
	}
	if err := drv.check("cuDeviceGetCount", drv.cuDeviceGetCount(&count)); err != nil {
		return nil, unavailable("%v", err)
	}
	if count == 0 {
		return nil, unavailable("no CUDA device (driver %s)", versionString(int(ver)))
	}
	if ordinal < 0 || ordinal >= int(count) {
		return nil, unavailable("no CUDA device %d (%d present)", ordinal, count)
	}
	if err := drv.check("cuDeviceGet", drv.cuDeviceGet(&c.dev, int32(ordinal))); err != nil {
		return nil, err
	}
	inf := DeviceInfo{Ordinal: ordinal, DriverVersion: int(ver), Libraries: []string{dpath}}
	attr := func(a int32) (int, error) {
		var v int32
		err := drv.check("cuDeviceGetAttribute", drv.cuDeviceGetAttribute(&v, a, c.dev))
		return int(v), err
	}
	var errs [4]error
	inf.Major, errs[0] = attr(cuDevAttrCCMajor)
	inf.Minor, errs[1] = attr(cuDevAttrCCMinor)
	inf.SMs, errs[2] = attr(cuDevAttrMultiprocessorCount)
	inf.MaxThreadsPerSM, errs[3] = attr(cuDevAttrMaxThreadsPerSM)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	name := make([]byte, 256)
	if err := drv.check("cuDeviceGetName", drv.cuDeviceGetName(&name[0], int32(len(name)), c.dev)); err != nil {
		return nil, err
	}
	inf.Name = cString(&name[0])
	var total uint64
	if err := drv.check("cuDeviceTotalMem_v2", drv.cuDeviceTotalMem_v2(&total, c.dev)); err != nil {
		return nil, err
	}
	inf.TotalMemory = int64(total)

	majors := libraryMajors(int(ver))
	blas, bpath, hasName, err := loadCUBLAS(env, majors)
	if err != nil {
		return nil, err
	}
	rtc, rpath, err := loadNVRTC(env, majors)
	if err != nil {
		return nil, err
	}
	c.blas, c.blasSt, c.rtc = blas, hasName, rtc
	inf.Libraries = append(inf.Libraries, bpath, rpath)

	if err := drv.check("cuDevicePrimaryCtxRetain", drv.cuDevicePrimaryCtxRetain(&c.ctx, c.dev)); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	if err := drv.check("cuCtxSetCurrent", drv.cuCtxSetCurrent(c.ctx)); err != nil {
		return nil, err
	}
	if err := drv.check("cuStreamCreate", drv.cuStreamCreate(&c.stream, cuStreamDefault)); err != nil {
		return nil, err
	}
	if err := c.blasCheck("cublasCreate_v2", blas.cublasCreate_v2(&c.handle), ""); err != nil {
		c.handle = 0
		return nil, fmt.Errorf("%w (cuBLAS %s with driver %s)", err, bpath, versionString(int(ver)))
	}
	if err := c.blasCheck("cublasSetStream_v2", blas.cublasSetStream_v2(c.handle, c.stream), ""); err != nil {
		return nil, err
	}
	var bv int32
	if c.blasCheck("cublasGetVersion_v2", blas.cublasGetVersion_v2(c.handle, &bv), "") == nil {
		inf.CUBLASVersion = int(bv)
	}
	var rmaj, rmin int32
	if err := c.rtcCheck("nvrtcVersion", rtc.nvrtcVersion(&rmaj, &rmin), ""); err != nil {
		return nil, err
	}
	inf.NVRTCVersion = [2]int{int(rmaj), int(rmin)}
	var na int32
	if err := c.rtcCheck("nvrtcGetNumSupportedArchs", rtc.nvrtcGetNumSupportedArchs(&na), ""); err != nil {
		return nil, err
	}
	if na > 0 {
		archs := make([]int32, na)
		if err := c.rtcCheck("nvrtcGetSupportedArchs", rtc.nvrtcGetSupportedArchs(&archs[0]), ""); err != nil {
			return nil, err
		}
		for _, a := range archs {
			c.archs = append(c.archs, int(a))
		}
	}
	inf.IncludeDir = env.findInclude(rpath)
	switch o.KernelCacheDir {
	case "off":
	case "":
		if d, err := os.UserCacheDir(); err == nil {
			c.cacheDir = filepath.Join(d, "sdxl-go", "cuda-kernels")
		}
	default:
		c.cacheDir = o.KernelCacheDir
	}
	inf.KernelCacheDir = c.cacheDir
	c.inf = inf
	return c, nil
}

func (c *cudaDevice) info() DeviceInfo { return c.inf }

func (c *cudaDevice) blasCheck(call string, r int32, detail string) error {
	if r == 0 {
		return nil
	}
	name := codeName(cublasStatusNames, "cublasStatus", int(r))
	if c.blasSt {
		if n := c.blas.cublasGetStatusName(r); n != "" {
			name = n
		}
	}
	return &Error{Call: call, Code: int(r), Name: name, Msg: detail}
}

func (c *cudaDevice) rtcCheck(call string, r int32, detail string) error {
	if r == 0 {
		return nil
	}
	name := codeName(nvrtcResultNames, "nvrtcResult", int(r))
	if n := c.rtc.nvrtcGetErrorString(r); n != "" {
		name = n
	}
	return &Error{Call: call, Code: int(r), Name: name, Msg: detail}
}

func (c *cudaDevice) memAlloc(n int) (uint64, error) {
	var p uint64
	if err := c.drv.check("cuMemAlloc_v2", c.drv.cuMemAlloc_v2(&p, uint64(n))); err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Msg = fmt.Sprintf("%d bytes", n)
		}
		return 0, err
	}
	return p, nil
}

// memInfo is the driver's free and total memory of the device (free
// excludes every process's allocations, ours included).
func (c *cudaDevice) memInfo() (free, total uint64, err error) {
	err = c.drv.check("cuMemGetInfo_v2", c.drv.cuMemGetInfo_v2(&free, &total))
	return free, total, err
}

func (c *cudaDevice) memFree(p uint64) error {
	return c.drv.check("cuMemFree_v2", c.drv.cuMemFree_v2(p))
}

func (c *cudaDevice) memsetZero(p uint64, n int) error {
	return c.drv.check("cuMemsetD8Async", c.drv.cuMemsetD8Async(p, 0, uint64(n), c.stream))
}

// upload: for pageable host memory the driver stages the data before it
// returns, so src may be reused at once; the copy is ordered on the stream.
func (c *cudaDevice) upload(dst uint64, src []byte) error {
	if len(src) == 0 {
		return nil
	}
	r := c.drv.cuMemcpyHtoDAsync_v2(dst, unsafe.Pointer(&src[0]), uint64(len(src)), c.stream)
	runtime.KeepAlive(src)
	return c.drv.check("cuMemcpyHtoDAsync_v2", r)
}

func (c *cudaDevice) download(dst []byte, src uint64) error {
	if len(dst) == 0 {
		return nil
	}
	r := c.drv.cuMemcpyDtoHAsync_v2(unsafe.Pointer(&dst[0]), src, uint64(len(dst)), c.stream)
	if err := c.drv.check("cuMemcpyDtoHAsync_v2", r); err != nil {
		return err
	}
	err := c.sync()
	runtime.KeepAlive(dst)
	return err
}

func (c *cudaDevice) sync() error {
	return c.drv.check("cuStreamSynchronize", c.drv.cuStreamSynchronize(c.stream))
}

// arch chooses NVRTC's target: the device's own sm_XX when NVRTC knows it
// (a CUBIN, no JIT), else PTX for the newest older architecture NVRTC
// supports, which the driver compiles for the device.
func (c *cudaDevice) arch() (opt string, cubin bool, err error) {
	dev := c.inf.Major*10 + c.inf.Minor
	if slices.Contains(c.archs, dev) {
		return fmt.Sprintf("--gpu-architecture=sm_%d", dev), true, nil
	}
	best := 0
	for _, a := range c.archs {
		if a <= dev && a > best {
			best = a
		}
	}
	if best == 0 {
		return "", false, fmt.Errorf("NVRTC %d.%d supports none of the architectures up to sm_%d (it has %v)",
			c.inf.NVRTCVersion[0], c.inf.NVRTCVersion[1], dev, c.archs)
	}
	return fmt.Sprintf("--gpu-architecture=compute_%d", best), false, nil
}

// prepare compiles (or fetches from the caches) and loads module m.
func (c *cudaDevice) prepare(m *kernelModule) error {
	if _, ok := c.modules[m]; ok {
		return nil
	}
	archOpt, cubin, err := c.arch()
	if err != nil {
		return err
	}
	opts := []string{archOpt, "--std=c++17"}
	if len(m.headers) > 0 {
		if c.inf.IncludeDir == "" {
			return fmt.Errorf("kernel module %s needs the CUDA headers %v, and no include folder with mma.h was found (set CUDA_HOME)", m.name, m.headers)
		}
		opts = append(opts, "--include-path="+c.inf.IncludeDir)
	}
	src := m.source()
	h := sha256.New()
	io.WriteString(h, src)
	fmt.Fprintf(h, "\x00%s\x00nvrtc %v\x00driver %d", strings.Join(opts, " "), c.inf.NVRTCVersion, c.inf.DriverVersion)
	key := hex.EncodeToString(h.Sum(nil))[:32]
	ext := ".ptx"
	if cubin {
		ext = ".cubin"
	}
	var cachePath string
	if c.cacheDir != "" {
		cachePath = filepath.Join(c.cacheDir, m.name+"-"+key+ext)
		if img, err := os.ReadFile(cachePath); err == nil && len(img) > 0 {
			if mod, err := c.load(img); err == nil {
				c.modules[m] = mod
				return nil
			}
			// A corrupt or stale cache entry: compile afresh below.
		}
	}
	img, err := c.compile(m.name, src, opts, cubin)
	if err != nil {
		return err
	}
	mod, err := c.load(img)
	if err != nil {
		return fmt.Errorf("loading kernel module %s: %w", m.name, err)
	}
	c.modules[m] = mod
	if cachePath != "" {
		// The cache only saves compile time: failing to write it is fine.
		if os.MkdirAll(c.cacheDir, 0o755) == nil {
			_ = atomicfile.Write(cachePath, true, func(w io.Writer) error { _, err := w.Write(img); return err })
		}
	}
	return nil
}

func (c *cudaDevice) load(img []byte) (uintptr, error) {
	var mod uintptr
	r := c.drv.cuModuleLoadData(&mod, unsafe.Pointer(&img[0]))
	runtime.KeepAlive(img)
	return mod, c.drv.check("cuModuleLoadData", r)
}

// compile runs NVRTC and returns the CUBIN (or NUL-terminated PTX).
func (c *cudaDevice) compile(name, src string, opts []string, cubin bool) ([]byte, error) {
	var prog uintptr
	if err := c.rtcCheck("nvrtcCreateProgram", c.rtc.nvrtcCreateProgram(&prog, src, name+".cu", 0, nil, nil), name); err != nil {
		return nil, err
	}
	defer c.rtc.nvrtcDestroyProgram(&prog)
	cOpts := make([][]byte, len(opts))
	ptrs := make([]*byte, len(opts))
	for i, o := range opts {
		cOpts[i] = append([]byte(o), 0)
		ptrs[i] = &cOpts[i][0]
	}
	r := c.rtc.nvrtcCompileProgram(prog, int32(len(ptrs)), unsafe.Pointer(&ptrs[0]))
	runtime.KeepAlive(cOpts)
	runtime.KeepAlive(ptrs)
	if r != 0 {
		log := c.programLog(prog)
		if len(log) > 8000 {
			log = log[:8000] + "\n[log truncated]"
		}
		return nil, c.rtcCheck("nvrtcCompileProgram", r, fmt.Sprintf("module %s (%s):\n%s", name, strings.Join(opts, " "), log))
	}
	getSize, get, call := c.rtc.nvrtcGetPTXSize, c.rtc.nvrtcGetPTX, "nvrtcGetPTX"
	if cubin {
		getSize, get, call = c.rtc.nvrtcGetCUBINSize, c.rtc.nvrtcGetCUBIN, "nvrtcGetCUBIN"
	}
	var n uint64
	if err := c.rtcCheck(call+"Size", getSize(prog, &n), name); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("NVRTC produced an empty image for module %s", name)
	}
	img := make([]byte, n)
	if err := c.rtcCheck(call, get(prog, unsafe.Pointer(&img[0])), name); err != nil {
		return nil, err
	}
	return img, nil
}

func (c *cudaDevice) programLog(prog uintptr) string {
	var n uint64
	if c.rtc.nvrtcGetProgramLogSize(prog, &n) != 0 || n <= 1 {
		return "(no log)"
	}
	buf := make([]byte, n)
	if c.rtc.nvrtcGetProgramLog(prog, unsafe.Pointer(&buf[0])) != 0 {
		return "(log unavailable)"
	}
	return strings.TrimRight(string(buf), "\x00\n")
}

func (c *cudaDevice) function(m *kernelModule, name string) (uintptr, error) {
	key := m.name + "/" + name
	if f, ok := c.funcs[key]; ok {
		return f, nil
	}
	if err := c.prepare(m); err != nil {
		return 0, err
	}
	var f uintptr
	if err := c.drv.check("cuModuleGetFunction", c.drv.cuModuleGetFunction(&f, c.modules[m], name)); err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Msg = "kernel " + key
		}
		return 0, err
	}
	c.funcs[key] = f
	return f, nil
}

func (c *cudaDevice) launch(m *kernelModule, name string, grid, block [3]uint32, a *kargs) error {
	if err := checkLaunch(name, grid, block); err != nil {
		return err
	}
	f, err := c.function(m, name)
	if err != nil {
		return err
	}
	params := make([]unsafe.Pointer, len(a.offs))
	for i, off := range a.offs {
		params[i] = unsafe.Pointer(&a.data[off])
	}
	var pp unsafe.Pointer
	if len(params) > 0 {
		pp = unsafe.Pointer(&params[0])
	}
	r := c.drv.cuLaunchKernel(f, grid[0], grid[1], grid[2], block[0], block[1], block[2], 0, c.stream, pp, nil)
	runtime.KeepAlive(params)
	runtime.KeepAlive(a)
	if err := c.drv.check("cuLaunchKernel", r); err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Msg = fmt.Sprintf("kernel %s grid %v block %v", name, grid, block)
		}
		return err
	}
	return nil
}

func cublasOp(t bool) int32 {
	if t {
		return cublasOpT
	}
	return cublasOpN
}

func (c *cudaDevice) gemm(g *gemmCall) error {
	alpha, beta := g.alpha, g.beta
	var r int32
	call := "cublasGemmEx"
	if g.batch <= 1 {
		r = c.blas.cublasGemmEx(c.handle, cublasOp(g.transA), cublasOp(g.transB), int32(g.m), int32(g.n), int32(g.k),
			unsafe.Pointer(&alpha), g.a, cudaDataType(g.aType), int32(g.lda),
			g.b, cudaDataType(g.bType), int32(g.ldb),
			unsafe.Pointer(&beta), g.c, cudaDataType(g.cType), int32(g.ldc), g.compute, cublasGemmDefault)
	} else {
		call = "cublasGemmStridedBatchedEx"
		r = c.blas.cublasGemmStridedBatchedEx(c.handle, cublasOp(g.transA), cublasOp(g.transB), int32(g.m), int32(g.n), int32(g.k),
			unsafe.Pointer(&alpha), g.a, cudaDataType(g.aType), int32(g.lda), g.strideA,
			g.b, cudaDataType(g.bType), int32(g.ldb), g.strideB,
			unsafe.Pointer(&beta), g.c, cudaDataType(g.cType), int32(g.ldc), g.strideC,
			int32(g.batch), g.compute, cublasGemmDefault)
	}
	runtime.KeepAlive(&alpha)
	runtime.KeepAlive(&beta)
	if r != 0 {
		return c.blasCheck(call, r, g.String())
	}
	return nil
}

// close releases the handle, modules, stream and context; it is safe on a
// partly opened device.
func (c *cudaDevice) close() error {
	var errs []error
	if c.handle != 0 {
		errs = append(errs, c.blasCheck("cublasDestroy_v2", c.blas.cublasDestroy_v2(c.handle), ""))
		c.handle = 0
	}
	for m, mod := range c.modules {
		errs = append(errs, c.drv.check("cuModuleUnload", c.drv.cuModuleUnload(mod)))
		delete(c.modules, m)
	}
	clear(c.funcs)
	if c.stream != 0 {
		errs = append(errs, c.drv.check("cuStreamDestroy_v2", c.drv.cuStreamDestroy_v2(c.stream)))
		c.stream = 0
	}
	if c.ctx != 0 {
		errs = append(errs, c.drv.check("cuDevicePrimaryCtxRelease_v2", c.drv.cuDevicePrimaryCtxRelease_v2(c.dev)))
		c.ctx = 0
	}
	return errors.Join(errs...)
}
