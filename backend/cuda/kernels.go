package cuda

import (
	_ "embed"
	"encoding/binary"
	"math"
	"strings"
)

// The kernels are CUDA C sources compiled at run time by NVRTC for the
// device's architecture (see nvrtc_linux.go). Each module is compiled as
// its system #includes, then the shared prelude, then its body.

//go:embed kernels/prelude.cuh
var preludeSrc string

//go:embed kernels/elementwise.cu
var elementwiseSrc string

//go:embed kernels/norm.cu
var normSrc string

//go:embed kernels/attention.cu
var attentionSrc string

//go:embed kernels/flash.cu
var flashSrc string

//go:embed kernels/random.cu
var randomSrc string

// kernelModule is one NVRTC compilation unit. Its fields never change
// after initialisation; compiled code is cached per device, not here.
type kernelModule struct {
	name string
	// headers are toolkit headers (#include <h>) the module needs: NVRTC
	// then gets -I<cuda>/include, and the module cannot compile without it.
	headers []string
	body    string
}

// source returns the full CUDA C source compiled for the module.
func (m *kernelModule) source() string {
	var sb strings.Builder
	for _, h := range m.headers {
		sb.WriteString("#include <" + h + ">\n")
	}
	sb.WriteString("#line 1 \"prelude.cuh\"\n")
	sb.WriteString(preludeSrc)
	sb.WriteString("\n#line 1 \"" + m.name + ".cu\"\n")
	sb.WriteString(m.body)
	return sb.String()
}

var (
	modElementwise = &kernelModule{name: "elementwise", body: elementwiseSrc}
	modNorm        = &kernelModule{name: "norm", body: normSrc}
	modAttention   = &kernelModule{name: "attention", body: attentionSrc}
	modFlash       = &kernelModule{name: "flash", headers: []string{"mma.h"}, body: flashSrc}
	modRandom      = &kernelModule{name: "random", body: randomSrc}
)

// allModules lists every module (the emulator test builds them all).
var allModules = []*kernelModule{modElementwise, modNorm, modAttention, modFlash, modRandom}

// Op codes shared with the kernels (elementwise.cu).
const (
	binAdd = 0
	binMul = 1

	unCopy      = 0
	unScale     = 1
	unSiLU      = 2
	unGELU      = 3
	unQuickGELU = 4
)

// maxRank is MAXR of prelude.cuh: the most dimensions a strided kernel
// (k_binary, k_copy) indexes after collapsing.
const maxRank = 8

// kargs packs kernel arguments for cuLaunchKernel: every argument lives in
// its own 8-byte aligned slot of one buffer, and the launch passes a
// pointer to each slot (kernelParams). Scalars narrower than 8 bytes sit in
// the low bytes of their slot (little-endian), which is what the driver
// reads for a parameter of that size; structs are copied whole.
type kargs struct {
	data []byte
	offs []int
}

func newArgs() *kargs { return &kargs{data: make([]byte, 0, 128), offs: make([]int, 0, 12)} }

func (a *kargs) u64(v uint64) *kargs {
	a.offs = append(a.offs, len(a.data))
	a.data = binary.LittleEndian.AppendUint64(a.data, v)
	return a
}

// ptr is a device pointer (or 0 for a null pointer).
func (a *kargs) ptr(p uint64) *kargs { return a.u64(p) }

// i64 is a long long parameter.
func (a *kargs) i64(v int64) *kargs { return a.u64(uint64(v)) }

// i32 is an int parameter.
func (a *kargs) i32(v int) *kargs {
	if v != int(int32(v)) {
		panic("cuda: kernel argument out of int32 range")
	}
	return a.u64(uint64(uint32(int32(v))))
}

// f32 is a float parameter.
func (a *kargs) f32(v float32) *kargs { return a.u64(uint64(math.Float32bits(v))) }

// raw is a struct parameter given as its bytes (a multiple of 8 long).
func (a *kargs) raw(b []byte) *kargs {
	if len(b)%8 != 0 {
		panic("cuda: struct kernel argument not a multiple of 8 bytes")
	}
	a.offs = append(a.offs, len(a.data))
	a.data = append(a.data, b...)
	return a
}

// slot returns the bytes of argument i up to the next argument.
func (a *kargs) slot(i int) []byte {
	end := len(a.data)
	if i+1 < len(a.offs) {
		end = a.offs[i+1]
	}
	return a.data[a.offs[i]:end]
}

// dimsStruct lays out prelude.cuh's Dims: shape, sa, sb, MAXR int64 each
// (unused trailing entries: size 1, stride 0).
func dimsStruct(shape, sa, sb []int) []byte {
	if len(shape) > maxRank || len(sa) != len(shape) || len(sb) != len(shape) {
		panic("cuda: bad strided index space")
	}
	b := make([]byte, 0, 3*maxRank*8)
	for k, s := range [][]int{shape, sa, sb} {
		for i := range maxRank {
			v := int64(0)
			if i < len(s) {
				v = int64(s[i])
			} else if k == 0 {
				v = 1
			}
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		}
	}
	return b
}

// maskStrides are an attention mask's element strides along (b, h, q, k)
// after broadcasting to [B, H, Lq, Lk] (0 along broadcast dimensions).
type maskStrides struct{ b, h, q, k int64 }

// maskSpecStruct lays out prelude.cuh's MaskSpec.
func maskSpecStruct(rowsPerBH, q0 int64, ms maskStrides, heads int) []byte {
	b := make([]byte, 0, 56)
	for _, v := range []int64{rowsPerBH, q0, ms.b, ms.h, ms.q, ms.k} {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(int32(heads)))
	b = binary.LittleEndian.AppendUint32(b, 0)
	return b
}

// attnSpec mirrors prelude.cuh's AttnSpec.
type attnSpec struct {
	ms                           maskStrides
	heads, lq, lk, d, dv, tk, dp int
	bh0                          int
}

func (s attnSpec) bytes() []byte {
	b := make([]byte, 0, 64)
	for _, v := range []int64{s.ms.b, s.ms.h, s.ms.q, s.ms.k} {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	for _, v := range []int{s.heads, s.lq, s.lk, s.d, s.dv, s.tk, s.dp, s.bh0} {
		b = binary.LittleEndian.AppendUint32(b, uint32(int32(v)))
	}
	return b
}
