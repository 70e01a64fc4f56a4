package cuda

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// The emulator runs the backend's real kernel sources on the CPU (built
// with g++ against testdata/emu/shim.h) and emulates cuBLAS's GEMM, so that
// everything but the purego bindings is tested on machines without a GPU:
// the Go side of every op, the kernels' indexing and synchronisation, the
// row-major to column-major GEMM mapping and the pool. See emu.cpp.

// emuBuild builds the emulator once per test process.
var emuBuild struct {
	once sync.Once
	path string
	err  error
}

// emuBinary returns the emulator's path, skipping the test where it cannot
// be built.
func emuBinary(t testing.TB) string {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("the kernel emulator needs linux/amd64")
	}
	if os.Getenv("SDXL_CUDA_SKIP_EMU") == "1" {
		t.Skip("SDXL_CUDA_SKIP_EMU=1")
	}
	if _, err := os.Stat("testdata/emu/emu.cpp"); err != nil {
		t.Skip("the kernel emulator's sources are not here (run the test from the package folder)")
	}
	gxx, err := exec.LookPath("g++")
	if err != nil {
		t.Skip("the kernel emulator needs g++ (not found)")
	}
	emuBuild.once.Do(func() { emuBuild.path, emuBuild.err = buildEmulator(gxx) })
	if emuBuild.err != nil {
		t.Fatalf("building the kernel emulator: %v", emuBuild.err)
	}
	return emuBuild.path
}

var kernelNameRE = regexp.MustCompile(`extern "C" __global__ void(?:\s+__launch_bounds__\(\d+\))?\s+(\w+)\(`)
var attnGenericRE = regexp.MustCompile(`(?m)^ATTN_GENERIC\((\d+)\)`)

// emuSources returns the generated kernels.inc and registry.inc.
func emuSources() (kernels, registry string) {
	var k, r strings.Builder
	k.WriteString("#line 1 \"prelude.cuh\"\n" + preludeSrc)
	for _, m := range allModules {
		k.WriteString("\n#line 1 \"" + m.name + ".cu\"\n" + m.body)
		for _, s := range kernelNameRE.FindAllStringSubmatch(m.body, -1) {
			r.WriteString("REG(" + s[1] + ")\n")
		}
		for _, s := range attnGenericRE.FindAllStringSubmatch(m.body, -1) {
			r.WriteString("REG(k_attn_generic_" + s[1] + ")\n")
		}
	}
	return k.String(), r.String()
}

// buildEmulator compiles the emulator into the user cache (keyed by the
// sources, so an unchanged tree reuses it).
func buildEmulator(gxx string) (string, error) {
	shim, err := os.ReadFile("testdata/emu/shim.h")
	if err != nil {
		return "", err
	}
	main, err := os.ReadFile("testdata/emu/emu.cpp")
	if err != nil {
		return "", err
	}
	kernels, registry := emuSources()
	h := sha256.New()
	for _, s := range [][]byte{shim, main, []byte(kernels), []byte(registry)} {
		h.Write(s)
		h.Write([]byte{0})
	}
	key := hex.EncodeToString(h.Sum(nil))[:24]
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "sdxl-go", "cuda-emu", key)
	bin := filepath.Join(dir, "emu")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for name, data := range map[string][]byte{"shim.h": shim, "emu.cpp": main, "kernels.inc": []byte(kernels), "registry.inc": []byte(registry)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return "", err
		}
	}
	tmp := bin + ".tmp"
	cmd := exec.Command(gxx, "-std=c++17", "-O2", "-g", "-Wall", "-Wno-unknown-pragmas", "-Wno-unused-function",
		"-include", "shim.h", "-o", filepath.Base(tmp), "emu.cpp")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("g++ failed: %v\n%s", err, out)
	}
	if len(bytes.TrimSpace(out)) > 0 {
		return "", fmt.Errorf("g++ warnings (fix them in the kernels or the shim):\n%s", out)
	}
	return bin, os.Rename(tmp, bin)
}

// emuDevice implements device by talking to the emulator process.
type emuDevice struct {
	cmd      *exec.Cmd
	w        *bufio.Writer
	r        *bufio.Reader
	stderr   *bytes.Buffer
	launches int // kernel launches so far
	sms      int // the multiprocessor count it reports (2 unless a test asks for another)
}

// openEmu starts an emulator; order is its thread scheduling order
// between barriers ("", "shuffle" or "reverse").
func openEmu(bin string, order string) (device, error) {
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "EMU_ORDER="+order)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	e := &emuDevice{cmd: cmd, w: bufio.NewWriterSize(stdin, 1<<16), r: bufio.NewReaderSize(stdout, 1<<16), stderr: &bytes.Buffer{}, sms: 2}
	cmd.Stderr = e.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *emuDevice) info() DeviceInfo {
	return DeviceInfo{Name: "emulator", Major: 9, Minor: 0, SMs: e.sms, MaxThreadsPerSM: 2048, TotalMemory: 1 << 31, DriverVersion: 13000}
}

func (e *emuDevice) put(vs ...any) {
	for _, v := range vs {
		if b, ok := v.([]byte); ok {
			e.w.Write(b)
			continue
		}
		binary.Write(e.w, binary.LittleEndian, v)
	}
}

// roundTrip flushes the request and reads the status.
func (e *emuDevice) roundTrip(call string) error {
	if err := e.w.Flush(); err != nil {
		return e.dead(call, err)
	}
	var code int32
	if err := binary.Read(e.r, binary.LittleEndian, &code); err != nil {
		return e.dead(call, err)
	}
	if code == 0 {
		return nil
	}
	var n uint32
	if err := binary.Read(e.r, binary.LittleEndian, &n); err != nil {
		return e.dead(call, err)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(e.r, msg); err != nil {
		return e.dead(call, err)
	}
	table, prefix := cuResultNames, "CUresult"
	if strings.HasPrefix(call, "cublas") {
		table, prefix = cublasStatusNames, "cublasStatus"
	}
	return &Error{Call: call, Code: int(code), Name: codeName(table, prefix, int(code)), Msg: string(msg)}
}

// dead reports a crashed emulator with its stderr (the kernel and thread
// of an invalid access or a bad barrier).
func (e *emuDevice) dead(call string, err error) error {
	e.cmd.Wait()
	return fmt.Errorf("emulator died during %s (%v): %s", call, err, strings.TrimSpace(e.stderr.String()))
}

func (e *emuDevice) memAlloc(n int) (uint64, error) {
	e.put(byte('A'), uint64(n))
	err := e.roundTrip("cuMemAlloc_v2")
	var p uint64
	if rerr := binary.Read(e.r, binary.LittleEndian, &p); rerr != nil && err == nil {
		err = e.dead("cuMemAlloc_v2", rerr)
	}
	return p, err
}

func (e *emuDevice) memFree(p uint64) error {
	e.put(byte('F'), p)
	return e.roundTrip("cuMemFree_v2")
}

func (e *emuDevice) memsetZero(p uint64, n int) error {
	e.put(byte('Z'), p, uint64(n))
	return e.roundTrip("cuMemsetD8Async")
}

func (e *emuDevice) upload(dst uint64, src []byte) error {
	e.put(byte('W'), dst, uint64(len(src)), src)
	return e.roundTrip("cuMemcpyHtoDAsync_v2")
}

func (e *emuDevice) download(dst []byte, src uint64) error {
	e.put(byte('R'), src, uint64(len(dst)))
	if err := e.roundTrip("cuMemcpyDtoHAsync_v2"); err != nil {
		return err
	}
	if _, err := io.ReadFull(e.r, dst); err != nil {
		return e.dead("cuMemcpyDtoHAsync_v2", err)
	}
	return nil
}

func (e *emuDevice) prepare(m *kernelModule) error { return nil }

func (e *emuDevice) launch(m *kernelModule, name string, grid, block [3]uint32, a *kargs) error {
	if err := checkLaunch(name, grid, block); err != nil {
		return err
	}
	e.launches++
	e.put(byte('L'), uint32(len(name)), []byte(name), grid, block, uint32(len(a.offs)))
	for i := range a.offs {
		s := a.slot(i)
		e.put(uint32(len(s)), s)
	}
	if err := e.roundTrip("cuLaunchKernel"); err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			ce.Msg = "kernel " + name + ": " + ce.Msg
		}
		return err
	}
	return nil
}

func b2i(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

func (e *emuDevice) gemm(g *gemmCall) error {
	e.put(byte('G'), b2i(g.transA), b2i(g.transB), int32(g.m), int32(g.n), int32(g.k), g.alpha, g.beta,
		g.a, cudaDataType(g.aType), int32(g.lda), g.strideA,
		g.b, cudaDataType(g.bType), int32(g.ldb), g.strideB,
		g.c, cudaDataType(g.cType), int32(g.ldc), g.strideC,
		int32(g.batch), g.compute)
	call := "cublasGemmEx"
	if g.batch > 1 {
		call = "cublasGemmStridedBatchedEx"
	}
	return e.roundTrip(call)
}

func (e *emuDevice) sync() error { return nil }

func (e *emuDevice) close() error {
	e.put(byte('Q'))
	e.w.Flush()
	return e.cmd.Wait()
}

// newEmuBackend returns a Backend on a fresh emulator process.
func newEmuBackend(t testing.TB, o Options) *Backend { return newEmuBackendOrder(t, o, "") }

// newEmuBackendOrder is newEmuBackend with a thread scheduling order.
func newEmuBackendOrder(t testing.TB, o Options, order string) *Backend {
	t.Helper()
	bin := emuBinary(t)
	b, err := newBackend("emu", o, func() (device, error) { return openEmu(bin, order) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		failed := b.Err() != nil // a test that provoked a failure gets it back
		if err := b.Close(); err != nil && !failed {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}
