//go:build amd64 && !purego

#include "textflag.h"

// func kernelAVX2(k int, a, b, c *float32, ldc int, acc bool)
//
// C[6×16] (= or +=) Σ_k a[k*6+r]·b[k*16+j]: the 6×16 tile lives in Y0–Y11
// (two 8-float vectors per row), Y12/Y13 hold one row of the B panel and
// Y14/Y15 the broadcast A values.
TEXT ·kernelAVX2(SB), NOSPLIT, $0-41
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ c+24(FP), DI
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	TESTQ CX, CX
	JE    store

loop:
	VMOVUPS      (DX), Y12
	VMOVUPS      32(DX), Y13
	VBROADCASTSS (SI), Y14
	VFMADD231PS  Y12, Y14, Y0
	VFMADD231PS  Y13, Y14, Y1
	VBROADCASTSS 4(SI), Y15
	VFMADD231PS  Y12, Y15, Y2
	VFMADD231PS  Y13, Y15, Y3
	VBROADCASTSS 8(SI), Y14
	VFMADD231PS  Y12, Y14, Y4
	VFMADD231PS  Y13, Y14, Y5
	VBROADCASTSS 12(SI), Y15
	VFMADD231PS  Y12, Y15, Y6
	VFMADD231PS  Y13, Y15, Y7
	VBROADCASTSS 16(SI), Y14
	VFMADD231PS  Y12, Y14, Y8
	VFMADD231PS  Y13, Y14, Y9
	VBROADCASTSS 20(SI), Y15
	VFMADD231PS  Y12, Y15, Y10
	VFMADD231PS  Y13, Y15, Y11
	ADDQ         $24, SI
	ADDQ         $64, DX
	DECQ         CX
	JNZ          loop

store:
	MOVBLZX acc+40(FP), AX
	TESTB   AL, AL
	JE      overwrite

	VADDPS  (DI), Y0, Y0
	VADDPS  32(DI), Y1, Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ    R8, DI
	VADDPS  (DI), Y2, Y2
	VADDPS  32(DI), Y3, Y3
	VMOVUPS Y2, (DI)
	VMOVUPS Y3, 32(DI)
	ADDQ    R8, DI
	VADDPS  (DI), Y4, Y4
	VADDPS  32(DI), Y5, Y5
	VMOVUPS Y4, (DI)
	VMOVUPS Y5, 32(DI)
	ADDQ    R8, DI
	VADDPS  (DI), Y6, Y6
	VADDPS  32(DI), Y7, Y7
	VMOVUPS Y6, (DI)
	VMOVUPS Y7, 32(DI)
	ADDQ    R8, DI
	VADDPS  (DI), Y8, Y8
	VADDPS  32(DI), Y9, Y9
	VMOVUPS Y8, (DI)
	VMOVUPS Y9, 32(DI)
	ADDQ    R8, DI
	VADDPS  (DI), Y10, Y10
	VADDPS  32(DI), Y11, Y11
	VMOVUPS Y10, (DI)
	VMOVUPS Y11, 32(DI)
	VZEROUPPER
	RET

overwrite:
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ    R8, DI
	VMOVUPS Y2, (DI)
	VMOVUPS Y3, 32(DI)
	ADDQ    R8, DI
	VMOVUPS Y4, (DI)
	VMOVUPS Y5, 32(DI)
	ADDQ    R8, DI
	VMOVUPS Y6, (DI)
	VMOVUPS Y7, 32(DI)
	ADDQ    R8, DI
	VMOVUPS Y8, (DI)
	VMOVUPS Y9, 32(DI)
	ADDQ    R8, DI
	VMOVUPS Y10, (DI)
	VMOVUPS Y11, 32(DI)
	VZEROUPPER
	RET

// func kernelAVX2Direct(k int, a, b, c *float32, ldc int, offs *int32, acc bool)
//
// kernelAVX2 reading B straight from an image (direct convolution): the
// k-th B row is the 16 floats at b + offs[k] (in floats).
TEXT ·kernelAVX2Direct(SB), NOSPLIT, $0-49
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ c+24(FP), DI
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8
	MOVQ offs+40(FP), R10

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	TESTQ  CX, CX
	JE     dstore

dloop:
	MOVLQSX      (R10), R11
	VMOVUPS      (DX)(R11*4), Y12
	VMOVUPS      32(DX)(R11*4), Y13
	VBROADCASTSS (SI), Y14
	VFMADD231PS  Y12, Y14, Y0
	VFMADD231PS  Y13, Y14, Y1
	VBROADCASTSS 4(SI), Y15
	VFMADD231PS  Y12, Y15, Y2
	VFMADD231PS  Y13, Y15, Y3
	VBROADCASTSS 8(SI), Y14
	VFMADD231PS  Y12, Y14, Y4
	VFMADD231PS  Y13, Y14, Y5
	VBROADCASTSS 12(SI), Y15
	VFMADD231PS  Y12, Y15, Y6
	VFMADD231PS  Y13, Y15, Y7
	VBROADCASTSS 16(SI), Y14
	VFMADD231PS  Y12, Y14, Y8
	VFMADD231PS  Y13, Y14, Y9
	VBROADCASTSS 20(SI), Y15
	VFMADD231PS  Y12, Y15, Y10
	VFMADD231PS  Y13, Y15, Y11
	ADDQ         $24, SI
	ADDQ         $4, R10
	DECQ         CX
	JNZ          dloop

dstore:
	MOVBLZX acc+48(FP), AX
	TESTB   AL, AL
	JE      doverwrite

	VADDPS  (DI), Y0, Y0
	VADDPS  32(DI), Y1, Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ    R8, DI
	VADDPS  (DI), Y2, Y2
	VADDPS  32(DI), Y3, Y3
	VMOVUPS Y2, (DI)
	VMOVUPS Y3, 32(DI)
	ADDQ    R8, DI
	VADDPS  (DI), Y4, Y4
	VADDPS  32(DI), Y5, Y5
	VMOVUPS Y4, (DI)
	VMOVUPS Y5, 32(DI)
	ADDQ    R8, DI
	VADDPS  (DI), Y6, Y6
	VADDPS  32(DI), Y7, Y7
	VMOVUPS Y6, (DI)
	VMOVUPS Y7, 32(DI)
	ADDQ    R8, DI
	VADDPS  (DI), Y8, Y8
	VADDPS  32(DI), Y9, Y9
	VMOVUPS Y8, (DI)
	VMOVUPS Y9, 32(DI)
	ADDQ    R8, DI
	VADDPS  (DI), Y10, Y10
	VADDPS  32(DI), Y11, Y11
	VMOVUPS Y10, (DI)
	VMOVUPS Y11, 32(DI)
	VZEROUPPER
	RET

doverwrite:
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ    R8, DI
	VMOVUPS Y2, (DI)
	VMOVUPS Y3, 32(DI)
	ADDQ    R8, DI
	VMOVUPS Y4, (DI)
	VMOVUPS Y5, 32(DI)
	ADDQ    R8, DI
	VMOVUPS Y6, (DI)
	VMOVUPS Y7, 32(DI)
	ADDQ    R8, DI
	VMOVUPS Y8, (DI)
	VMOVUPS Y9, 32(DI)
	ADDQ    R8, DI
	VMOVUPS Y10, (DI)
	VMOVUPS Y11, 32(DI)
	VZEROUPPER
	RET

// func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)
TEXT ·cpuid(SB), NOSPLIT, $0-24
	MOVL eaxArg+0(FP), AX
	MOVL ecxArg+4(FP), CX
	CPUID
	MOVL AX, eax+8(FP)
	MOVL BX, ebx+12(FP)
	MOVL CX, ecx+16(FP)
	MOVL DX, edx+20(FP)
	RET

// func xgetbv() (eax, edx uint32)
TEXT ·xgetbv(SB), NOSPLIT, $0-8
	MOVL   $0, CX
	XGETBV
	MOVL   AX, eax+0(FP)
	MOVL   DX, edx+4(FP)
	RET

DATA expconst<>+0x000(SB)/4, $0x42b0c0a5 // hi
DATA expconst<>+0x004(SB)/4, $0x42b0c0a5
DATA expconst<>+0x008(SB)/4, $0x42b0c0a5
DATA expconst<>+0x00c(SB)/4, $0x42b0c0a5
DATA expconst<>+0x010(SB)/4, $0x42b0c0a5
DATA expconst<>+0x014(SB)/4, $0x42b0c0a5
DATA expconst<>+0x018(SB)/4, $0x42b0c0a5
DATA expconst<>+0x01c(SB)/4, $0x42b0c0a5
DATA expconst<>+0x020(SB)/4, $0xc2b0c0a5 // lo
DATA expconst<>+0x024(SB)/4, $0xc2b0c0a5
DATA expconst<>+0x028(SB)/4, $0xc2b0c0a5
DATA expconst<>+0x02c(SB)/4, $0xc2b0c0a5
DATA expconst<>+0x030(SB)/4, $0xc2b0c0a5
DATA expconst<>+0x034(SB)/4, $0xc2b0c0a5
DATA expconst<>+0x038(SB)/4, $0xc2b0c0a5
DATA expconst<>+0x03c(SB)/4, $0xc2b0c0a5
DATA expconst<>+0x040(SB)/4, $0x3fb8aa3b // log2e
DATA expconst<>+0x044(SB)/4, $0x3fb8aa3b
DATA expconst<>+0x048(SB)/4, $0x3fb8aa3b
DATA expconst<>+0x04c(SB)/4, $0x3fb8aa3b
DATA expconst<>+0x050(SB)/4, $0x3fb8aa3b
DATA expconst<>+0x054(SB)/4, $0x3fb8aa3b
DATA expconst<>+0x058(SB)/4, $0x3fb8aa3b
DATA expconst<>+0x05c(SB)/4, $0x3fb8aa3b
DATA expconst<>+0x060(SB)/4, $0x3f318000 // c1
DATA expconst<>+0x064(SB)/4, $0x3f318000
DATA expconst<>+0x068(SB)/4, $0x3f318000
DATA expconst<>+0x06c(SB)/4, $0x3f318000
DATA expconst<>+0x070(SB)/4, $0x3f318000
DATA expconst<>+0x074(SB)/4, $0x3f318000
DATA expconst<>+0x078(SB)/4, $0x3f318000
DATA expconst<>+0x07c(SB)/4, $0x3f318000
DATA expconst<>+0x080(SB)/4, $0xb95e8083 // c2
DATA expconst<>+0x084(SB)/4, $0xb95e8083
DATA expconst<>+0x088(SB)/4, $0xb95e8083
DATA expconst<>+0x08c(SB)/4, $0xb95e8083
DATA expconst<>+0x090(SB)/4, $0xb95e8083
DATA expconst<>+0x094(SB)/4, $0xb95e8083
DATA expconst<>+0x098(SB)/4, $0xb95e8083
DATA expconst<>+0x09c(SB)/4, $0xb95e8083
DATA expconst<>+0x0a0(SB)/4, $0x39506967 // p0
DATA expconst<>+0x0a4(SB)/4, $0x39506967
DATA expconst<>+0x0a8(SB)/4, $0x39506967
DATA expconst<>+0x0ac(SB)/4, $0x39506967
DATA expconst<>+0x0b0(SB)/4, $0x39506967
DATA expconst<>+0x0b4(SB)/4, $0x39506967
DATA expconst<>+0x0b8(SB)/4, $0x39506967
DATA expconst<>+0x0bc(SB)/4, $0x39506967
DATA expconst<>+0x0c0(SB)/4, $0x3ab743ce // p1
DATA expconst<>+0x0c4(SB)/4, $0x3ab743ce
DATA expconst<>+0x0c8(SB)/4, $0x3ab743ce
DATA expconst<>+0x0cc(SB)/4, $0x3ab743ce
DATA expconst<>+0x0d0(SB)/4, $0x3ab743ce
DATA expconst<>+0x0d4(SB)/4, $0x3ab743ce
DATA expconst<>+0x0d8(SB)/4, $0x3ab743ce
DATA expconst<>+0x0dc(SB)/4, $0x3ab743ce
DATA expconst<>+0x0e0(SB)/4, $0x3c088908 // p2
DATA expconst<>+0x0e4(SB)/4, $0x3c088908
DATA expconst<>+0x0e8(SB)/4, $0x3c088908
DATA expconst<>+0x0ec(SB)/4, $0x3c088908
DATA expconst<>+0x0f0(SB)/4, $0x3c088908
DATA expconst<>+0x0f4(SB)/4, $0x3c088908
DATA expconst<>+0x0f8(SB)/4, $0x3c088908
DATA expconst<>+0x0fc(SB)/4, $0x3c088908
DATA expconst<>+0x100(SB)/4, $0x3d2aa9c1 // p3
DATA expconst<>+0x104(SB)/4, $0x3d2aa9c1
DATA expconst<>+0x108(SB)/4, $0x3d2aa9c1
DATA expconst<>+0x10c(SB)/4, $0x3d2aa9c1
DATA expconst<>+0x110(SB)/4, $0x3d2aa9c1
DATA expconst<>+0x114(SB)/4, $0x3d2aa9c1
DATA expconst<>+0x118(SB)/4, $0x3d2aa9c1
DATA expconst<>+0x11c(SB)/4, $0x3d2aa9c1
DATA expconst<>+0x120(SB)/4, $0x3e2aaaaa // p4
DATA expconst<>+0x124(SB)/4, $0x3e2aaaaa
DATA expconst<>+0x128(SB)/4, $0x3e2aaaaa
DATA expconst<>+0x12c(SB)/4, $0x3e2aaaaa
DATA expconst<>+0x130(SB)/4, $0x3e2aaaaa
DATA expconst<>+0x134(SB)/4, $0x3e2aaaaa
DATA expconst<>+0x138(SB)/4, $0x3e2aaaaa
DATA expconst<>+0x13c(SB)/4, $0x3e2aaaaa
DATA expconst<>+0x140(SB)/4, $0x3f000000 // p5
DATA expconst<>+0x144(SB)/4, $0x3f000000
DATA expconst<>+0x148(SB)/4, $0x3f000000
DATA expconst<>+0x14c(SB)/4, $0x3f000000
DATA expconst<>+0x150(SB)/4, $0x3f000000
DATA expconst<>+0x154(SB)/4, $0x3f000000
DATA expconst<>+0x158(SB)/4, $0x3f000000
DATA expconst<>+0x15c(SB)/4, $0x3f000000
DATA expconst<>+0x160(SB)/4, $0x3f800000 // one
DATA expconst<>+0x164(SB)/4, $0x3f800000
DATA expconst<>+0x168(SB)/4, $0x3f800000
DATA expconst<>+0x16c(SB)/4, $0x3f800000
DATA expconst<>+0x170(SB)/4, $0x3f800000
DATA expconst<>+0x174(SB)/4, $0x3f800000
DATA expconst<>+0x178(SB)/4, $0x3f800000
DATA expconst<>+0x17c(SB)/4, $0x3f800000
DATA expconst<>+0x180(SB)/4, $0x0000007f // 127 (int32)
DATA expconst<>+0x184(SB)/4, $0x0000007f
DATA expconst<>+0x188(SB)/4, $0x0000007f
DATA expconst<>+0x18c(SB)/4, $0x0000007f
DATA expconst<>+0x190(SB)/4, $0x0000007f
DATA expconst<>+0x194(SB)/4, $0x0000007f
DATA expconst<>+0x198(SB)/4, $0x0000007f
DATA expconst<>+0x19c(SB)/4, $0x0000007f
GLOBL expconst<>(SB), RODATA|NOPTR, $416

// func expSumAVX2(x *float32, n int, scale, shift float32) (sum float64)
//
// For n a multiple of 8: x[i] = e^(x[i]·scale − shift) in place (the
// product and the difference rounded to float32 like the Go code), and the
// float64 sum of the results. e^t uses Cephes' expf: t clamped to ±88.376,
// t = m·ln2 + r with m = round(t·log2 e) and ln2 split in two for an exact
// reduction, e^r by a degree-7 polynomial (about 1 float32 ulp), times 2^m
// built in the exponent bits.
TEXT ·expSumAVX2(SB), NOSPLIT, $0-32
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS scale+16(FP), Y4
	VBROADCASTSS shift+20(FP), Y5
	VXORPD       Y6, Y6, Y6
	VXORPD       Y7, Y7, Y7
	VMOVUPS      expconst<>+0x000(SB), Y9
	VMOVUPS      expconst<>+0x020(SB), Y10
	VMOVUPS      expconst<>+0x040(SB), Y11
	VMOVUPS      expconst<>+0x060(SB), Y12
	VMOVUPS      expconst<>+0x080(SB), Y13
	VMOVUPS      expconst<>+0x160(SB), Y14
	VMOVDQU      expconst<>+0x180(SB), Y15
	SHRQ         $3, CX
	JE           done

loop:
	VMOVUPS     (SI), Y0
	VMULPS      Y4, Y0, Y0
	VSUBPS      Y5, Y0, Y0
	VMINPS      Y0, Y9, Y0
	VMAXPS      Y0, Y10, Y0
	VMULPS      Y11, Y0, Y1
	VROUNDPS    $0, Y1, Y1
	VFNMADD231PS Y12, Y1, Y0
	VFNMADD231PS Y13, Y1, Y0
	VMOVUPS     expconst<>+0x0a0(SB), Y2
	VFMADD213PS expconst<>+0x0c0(SB), Y0, Y2
	VFMADD213PS expconst<>+0x0e0(SB), Y0, Y2
	VFMADD213PS expconst<>+0x100(SB), Y0, Y2
	VFMADD213PS expconst<>+0x120(SB), Y0, Y2
	VFMADD213PS expconst<>+0x140(SB), Y0, Y2
	VMULPS      Y0, Y0, Y3
	VFMADD213PS Y0, Y3, Y2
	VADDPS      Y14, Y2, Y2
	VCVTPS2DQ   Y1, Y1
	VPADDD      Y15, Y1, Y1
	VPSLLD      $23, Y1, Y1
	VMULPS      Y1, Y2, Y2
	VMOVUPS     Y2, (SI)
	VCVTPS2PD   X2, Y8
	VADDPD      Y8, Y6, Y6
	VEXTRACTF128 $1, Y2, X3
	VCVTPS2PD   X3, Y8
	VADDPD      Y8, Y7, Y7
	ADDQ        $32, SI
	DECQ        CX
	JNZ         loop

done:
	VADDPD       Y7, Y6, Y6
	VEXTRACTF128 $1, Y6, X7
	VADDPD       X7, X6, X6
	VHADDPD      X6, X6, X6
	VZEROUPPER
	MOVSD        X6, sum+24(FP)
	RET

// func maxAVX2(x *float32, n int) float32
//
// The maximum of x[0:n] for n a positive multiple of 8.
TEXT ·maxAVX2(SB), NOSPLIT, $0-20
	MOVQ    x+0(FP), SI
	MOVQ    n+8(FP), CX
	VMOVUPS (SI), Y0
	ADDQ    $32, SI
	SHRQ    $3, CX
	DECQ    CX
	JE      reduce

loop:
	VMAXPS (SI), Y0, Y0
	ADDQ   $32, SI
	DECQ   CX
	JNZ    loop

reduce:
	VEXTRACTF128 $1, Y0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0x4e, X0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VMAXPS       X1, X0, X0
	VZEROUPPER
	MOVSS        X0, ret+16(FP)
	RET

// func scaleAVX2(x *float32, n int, s float32)
//
// x[0:n] *= s for n a multiple of 8.
TEXT ·scaleAVX2(SB), NOSPLIT, $0-20
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS s+16(FP), Y1
	SHRQ         $3, CX
	JE           done

loop:
	VMULPS  (SI), Y1, Y0
	VMOVUPS Y0, (SI)
	ADDQ    $32, SI
	DECQ    CX
	JNZ     loop

done:
	VZEROUPPER
	RET

DATA geluconst<>+0x000(SB)/4, $0x7fffffff // absmask
DATA geluconst<>+0x004(SB)/4, $0x7fffffff
DATA geluconst<>+0x008(SB)/4, $0x7fffffff
DATA geluconst<>+0x00c(SB)/4, $0x7fffffff
DATA geluconst<>+0x010(SB)/4, $0x7fffffff
DATA geluconst<>+0x014(SB)/4, $0x7fffffff
DATA geluconst<>+0x018(SB)/4, $0x7fffffff
DATA geluconst<>+0x01c(SB)/4, $0x7fffffff
DATA geluconst<>+0x020(SB)/4, $0x3f000000 // half
DATA geluconst<>+0x024(SB)/4, $0x3f000000
DATA geluconst<>+0x028(SB)/4, $0x3f000000
DATA geluconst<>+0x02c(SB)/4, $0x3f000000
DATA geluconst<>+0x030(SB)/4, $0x3f000000
DATA geluconst<>+0x034(SB)/4, $0x3f000000
DATA geluconst<>+0x038(SB)/4, $0x3f000000
DATA geluconst<>+0x03c(SB)/4, $0x3f000000
DATA geluconst<>+0x040(SB)/4, $0x3f3504f3 // invsqrt2
DATA geluconst<>+0x044(SB)/4, $0x3f3504f3
DATA geluconst<>+0x048(SB)/4, $0x3f3504f3
DATA geluconst<>+0x04c(SB)/4, $0x3f3504f3
DATA geluconst<>+0x050(SB)/4, $0x3f3504f3
DATA geluconst<>+0x054(SB)/4, $0x3f3504f3
DATA geluconst<>+0x058(SB)/4, $0x3f3504f3
DATA geluconst<>+0x05c(SB)/4, $0x3f3504f3
DATA geluconst<>+0x060(SB)/4, $0x40000000 // two
DATA geluconst<>+0x064(SB)/4, $0x40000000
DATA geluconst<>+0x068(SB)/4, $0x40000000
DATA geluconst<>+0x06c(SB)/4, $0x40000000
DATA geluconst<>+0x070(SB)/4, $0x40000000
DATA geluconst<>+0x074(SB)/4, $0x40000000
DATA geluconst<>+0x078(SB)/4, $0x40000000
DATA geluconst<>+0x07c(SB)/4, $0x40000000
DATA geluconst<>+0x080(SB)/4, $0x3e2ef945 // e9
DATA geluconst<>+0x084(SB)/4, $0x3e2ef945
DATA geluconst<>+0x088(SB)/4, $0x3e2ef945
DATA geluconst<>+0x08c(SB)/4, $0x3e2ef945
DATA geluconst<>+0x090(SB)/4, $0x3e2ef945
DATA geluconst<>+0x094(SB)/4, $0x3e2ef945
DATA geluconst<>+0x098(SB)/4, $0x3e2ef945
DATA geluconst<>+0x09c(SB)/4, $0x3e2ef945
DATA geluconst<>+0x0a0(SB)/4, $0xbf527892 // e8
DATA geluconst<>+0x0a4(SB)/4, $0xbf527892
DATA geluconst<>+0x0a8(SB)/4, $0xbf527892
DATA geluconst<>+0x0ac(SB)/4, $0xbf527892
DATA geluconst<>+0x0b0(SB)/4, $0xbf527892
DATA geluconst<>+0x0b4(SB)/4, $0xbf527892
DATA geluconst<>+0x0b8(SB)/4, $0xbf527892
DATA geluconst<>+0x0bc(SB)/4, $0xbf527892
DATA geluconst<>+0x0c0(SB)/4, $0x3fbe87b0 // e7
DATA geluconst<>+0x0c4(SB)/4, $0x3fbe87b0
DATA geluconst<>+0x0c8(SB)/4, $0x3fbe87b0
DATA geluconst<>+0x0cc(SB)/4, $0x3fbe87b0
DATA geluconst<>+0x0d0(SB)/4, $0x3fbe87b0
DATA geluconst<>+0x0d4(SB)/4, $0x3fbe87b0
DATA geluconst<>+0x0d8(SB)/4, $0x3fbe87b0
DATA geluconst<>+0x0dc(SB)/4, $0x3fbe87b0
DATA geluconst<>+0x0e0(SB)/4, $0xbf914e5d // e6
DATA geluconst<>+0x0e4(SB)/4, $0xbf914e5d
DATA geluconst<>+0x0e8(SB)/4, $0xbf914e5d
DATA geluconst<>+0x0ec(SB)/4, $0xbf914e5d
DATA geluconst<>+0x0f0(SB)/4, $0xbf914e5d
DATA geluconst<>+0x0f4(SB)/4, $0xbf914e5d
DATA geluconst<>+0x0f8(SB)/4, $0xbf914e5d
DATA geluconst<>+0x0fc(SB)/4, $0xbf914e5d
DATA geluconst<>+0x100(SB)/4, $0x3e8ec7cc // e5
DATA geluconst<>+0x104(SB)/4, $0x3e8ec7cc
DATA geluconst<>+0x108(SB)/4, $0x3e8ec7cc
DATA geluconst<>+0x10c(SB)/4, $0x3e8ec7cc
DATA geluconst<>+0x110(SB)/4, $0x3e8ec7cc
DATA geluconst<>+0x114(SB)/4, $0x3e8ec7cc
DATA geluconst<>+0x118(SB)/4, $0x3e8ec7cc
DATA geluconst<>+0x11c(SB)/4, $0x3e8ec7cc
DATA geluconst<>+0x120(SB)/4, $0xbe3ec24c // e4
DATA geluconst<>+0x124(SB)/4, $0xbe3ec24c
DATA geluconst<>+0x128(SB)/4, $0xbe3ec24c
DATA geluconst<>+0x12c(SB)/4, $0xbe3ec24c
DATA geluconst<>+0x130(SB)/4, $0xbe3ec24c
DATA geluconst<>+0x134(SB)/4, $0xbe3ec24c
DATA geluconst<>+0x138(SB)/4, $0xbe3ec24c
DATA geluconst<>+0x13c(SB)/4, $0xbe3ec24c
DATA geluconst<>+0x140(SB)/4, $0x3dc636c9 // e3
DATA geluconst<>+0x144(SB)/4, $0x3dc636c9
DATA geluconst<>+0x148(SB)/4, $0x3dc636c9
DATA geluconst<>+0x14c(SB)/4, $0x3dc636c9
DATA geluconst<>+0x150(SB)/4, $0x3dc636c9
DATA geluconst<>+0x154(SB)/4, $0x3dc636c9
DATA geluconst<>+0x158(SB)/4, $0x3dc636c9
DATA geluconst<>+0x15c(SB)/4, $0x3dc636c9
DATA geluconst<>+0x160(SB)/4, $0x3ebf88fb // e2
DATA geluconst<>+0x164(SB)/4, $0x3ebf88fb
DATA geluconst<>+0x168(SB)/4, $0x3ebf88fb
DATA geluconst<>+0x16c(SB)/4, $0x3ebf88fb
DATA geluconst<>+0x170(SB)/4, $0x3ebf88fb
DATA geluconst<>+0x174(SB)/4, $0x3ebf88fb
DATA geluconst<>+0x178(SB)/4, $0x3ebf88fb
DATA geluconst<>+0x17c(SB)/4, $0x3ebf88fb
DATA geluconst<>+0x180(SB)/4, $0x3f8000c7 // e1
DATA geluconst<>+0x184(SB)/4, $0x3f8000c7
DATA geluconst<>+0x188(SB)/4, $0x3f8000c7
DATA geluconst<>+0x18c(SB)/4, $0x3f8000c7
DATA geluconst<>+0x190(SB)/4, $0x3f8000c7
DATA geluconst<>+0x194(SB)/4, $0x3f8000c7
DATA geluconst<>+0x198(SB)/4, $0x3f8000c7
DATA geluconst<>+0x19c(SB)/4, $0x3f8000c7
DATA geluconst<>+0x1a0(SB)/4, $0xbfa1fc4e // e0
DATA geluconst<>+0x1a4(SB)/4, $0xbfa1fc4e
DATA geluconst<>+0x1a8(SB)/4, $0xbfa1fc4e
DATA geluconst<>+0x1ac(SB)/4, $0xbfa1fc4e
DATA geluconst<>+0x1b0(SB)/4, $0xbfa1fc4e
DATA geluconst<>+0x1b4(SB)/4, $0xbfa1fc4e
DATA geluconst<>+0x1b8(SB)/4, $0xbfa1fc4e
DATA geluconst<>+0x1bc(SB)/4, $0xbfa1fc4e
GLOBL geluconst<>(SB), RODATA|NOPTR, $448

// func geluAVX2(dst, src *float32, n int)
//
// dst[i] = 0.5·x·(1+erf(x/√2)) for x = src[i], n a multiple of 8. With
// z = |x|/√2, 1+erf(x/√2) is erfc(z) for x < 0 and 2−erfc(z) otherwise;
// erfc(z) = t·e^(−z²+P(t)), t = 1/(1+z/2), P a degree-9 polynomial
// (Numerical Recipes' erfcc: relative error below 1.2e-7 everywhere), the
// exponential as in expSumAVX2.
TEXT ·geluAVX2(SB), NOSPLIT, $0-24
	MOVQ    dst+0(FP), DI
	MOVQ    src+8(FP), SI
	MOVQ    n+16(FP), CX
	VMOVUPS geluconst<>+0x000(SB), Y7
	VMOVUPS expconst<>+0x160(SB), Y8
	VMOVUPS geluconst<>+0x020(SB), Y9
	VMOVUPS geluconst<>+0x040(SB), Y10
	VMOVUPS expconst<>+0x040(SB), Y11
	VMOVUPS expconst<>+0x020(SB), Y13
	VMOVUPS expconst<>+0x060(SB), Y14
	VMOVUPS expconst<>+0x080(SB), Y15
	SHRQ    $3, CX
	JE      done

loop:
	VMOVUPS      (SI), Y0
	VMULPS       Y10, Y0, Y1
	VANDPS       Y7, Y1, Y1
	VMULPS       Y9, Y1, Y2
	VADDPS       Y8, Y2, Y2
	VDIVPS       Y2, Y8, Y2
	VMOVUPS      geluconst<>+0x080(SB), Y3
	VFMADD213PS  geluconst<>+0x0a0(SB), Y2, Y3
	VFMADD213PS  geluconst<>+0x0c0(SB), Y2, Y3
	VFMADD213PS  geluconst<>+0x0e0(SB), Y2, Y3
	VFMADD213PS  geluconst<>+0x100(SB), Y2, Y3
	VFMADD213PS  geluconst<>+0x120(SB), Y2, Y3
	VFMADD213PS  geluconst<>+0x140(SB), Y2, Y3
	VFMADD213PS  geluconst<>+0x160(SB), Y2, Y3
	VFMADD213PS  geluconst<>+0x180(SB), Y2, Y3
	VFMADD213PS  geluconst<>+0x1a0(SB), Y2, Y3
	VFNMADD231PS Y1, Y1, Y3
	VMAXPS       Y3, Y13, Y3
	VMULPS       Y11, Y3, Y4
	VROUNDPS     $0, Y4, Y4
	VFNMADD231PS Y14, Y4, Y3
	VFNMADD231PS Y15, Y4, Y3
	VMOVUPS      expconst<>+0x0a0(SB), Y5
	VFMADD213PS  expconst<>+0x0c0(SB), Y3, Y5
	VFMADD213PS  expconst<>+0x0e0(SB), Y3, Y5
	VFMADD213PS  expconst<>+0x100(SB), Y3, Y5
	VFMADD213PS  expconst<>+0x120(SB), Y3, Y5
	VFMADD213PS  expconst<>+0x140(SB), Y3, Y5
	VMULPS       Y3, Y3, Y6
	VFMADD213PS  Y3, Y6, Y5
	VADDPS       Y8, Y5, Y5
	VCVTPS2DQ    Y4, Y4
	VPADDD       expconst<>+0x180(SB), Y4, Y4
	VPSLLD       $23, Y4, Y4
	VMULPS       Y4, Y5, Y5
	VMULPS       Y2, Y5, Y5
	VADDPS       Y5, Y5, Y6
	VMOVUPS      geluconst<>+0x060(SB), Y4
	VSUBPS       Y6, Y4, Y6
	VPSRAD       $31, Y0, Y4
	VANDNPS      Y6, Y4, Y6
	VADDPS       Y6, Y5, Y5
	VMULPS       Y9, Y0, Y6
	VMULPS       Y6, Y5, Y5
	VMOVUPS      Y5, (DI)
	ADDQ         $32, SI
	ADDQ         $32, DI
	DECQ         CX
	JNZ          loop

done:
	VZEROUPPER
	RET

// TRANSPOSE8 transposes the 8×8 block in rows Y0–Y7 into Y8–Y15 (row i of
// the result holds element i of every input row), clobbering Y0–Y7.
#define TRANSPOSE8 \
	VUNPCKLPS  Y1, Y0, Y8   \
	VUNPCKHPS  Y1, Y0, Y9   \
	VUNPCKLPS  Y3, Y2, Y10  \
	VUNPCKHPS  Y3, Y2, Y11  \
	VUNPCKLPS  Y5, Y4, Y12  \
	VUNPCKHPS  Y5, Y4, Y13  \
	VUNPCKLPS  Y7, Y6, Y14  \
	VUNPCKHPS  Y7, Y6, Y15  \
	VSHUFPS    $0x44, Y10, Y8, Y0  \
	VSHUFPS    $0xee, Y10, Y8, Y1  \
	VSHUFPS    $0x44, Y11, Y9, Y2  \
	VSHUFPS    $0xee, Y11, Y9, Y3  \
	VSHUFPS    $0x44, Y14, Y12, Y4 \
	VSHUFPS    $0xee, Y14, Y12, Y5 \
	VSHUFPS    $0x44, Y15, Y13, Y6 \
	VSHUFPS    $0xee, Y15, Y13, Y7 \
	VPERM2F128 $0x20, Y4, Y0, Y8   \
	VPERM2F128 $0x20, Y5, Y1, Y9   \
	VPERM2F128 $0x20, Y6, Y2, Y10  \
	VPERM2F128 $0x20, Y7, Y3, Y11  \
	VPERM2F128 $0x31, Y4, Y0, Y12  \
	VPERM2F128 $0x31, Y5, Y1, Y13  \
	VPERM2F128 $0x31, Y6, Y2, Y14  \
	VPERM2F128 $0x31, Y7, Y3, Y15

// func packTransAVX2(dst, src *float32, ldb, k8 int)
//
// Packs one full 16-column panel of op(B) = Bᵀ: src points at B[j0, k0]
// (16 rows ldb floats apart, each contiguous in k) and dst receives k8
// steps (a multiple of 8) of 16 values, dst[kk*16+c] = src[c*ldb+kk]. Each
// 8×8 block is transposed in registers (unpack, shuffle, 128-bit permute).
TEXT ·packTransAVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ldb+16(FP), BX
	SHLQ $2, BX
	MOVQ k8+24(FP), CX
	SHRQ $3, CX
	JE   done
	LEAQ (BX)(BX*2), DX // 3·ldb bytes

loop:
	// Columns 0-7: rows SI, SI+ldb, ..., SI+7·ldb.
	MOVQ    SI, R8
	VMOVUPS (R8), Y0
	VMOVUPS (R8)(BX*1), Y1
	VMOVUPS (R8)(BX*2), Y2
	VMOVUPS (R8)(DX*1), Y3
	LEAQ    (R8)(BX*4), R8
	VMOVUPS (R8), Y4
	VMOVUPS (R8)(BX*1), Y5
	VMOVUPS (R8)(BX*2), Y6
	VMOVUPS (R8)(DX*1), Y7
	TRANSPOSE8
	VMOVUPS Y8, (DI)
	VMOVUPS Y9, 64(DI)
	VMOVUPS Y10, 128(DI)
	VMOVUPS Y11, 192(DI)
	VMOVUPS Y12, 256(DI)
	VMOVUPS Y13, 320(DI)
	VMOVUPS Y14, 384(DI)
	VMOVUPS Y15, 448(DI)

	// Columns 8-15.
	LEAQ    (R8)(BX*4), R8
	VMOVUPS (R8), Y0
	VMOVUPS (R8)(BX*1), Y1
	VMOVUPS (R8)(BX*2), Y2
	VMOVUPS (R8)(DX*1), Y3
	LEAQ    (R8)(BX*4), R8
	VMOVUPS (R8), Y4
	VMOVUPS (R8)(BX*1), Y5
	VMOVUPS (R8)(BX*2), Y6
	VMOVUPS (R8)(DX*1), Y7
	TRANSPOSE8
	VMOVUPS Y8, 32(DI)
	VMOVUPS Y9, 96(DI)
	VMOVUPS Y10, 160(DI)
	VMOVUPS Y11, 224(DI)
	VMOVUPS Y12, 288(DI)
	VMOVUPS Y13, 352(DI)
	VMOVUPS Y14, 416(DI)
	VMOVUPS Y15, 480(DI)

	ADDQ $32, SI
	ADDQ $512, DI
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	RET

// STORE6 stores the first 6 floats of vector Y (whose low half is X) at
// off(DI): 4 from the low half, 2 from the high half.
#define STORE6(Y, X, off) \
	VMOVUPS      X, off(DI)    \
	VEXTRACTF128 $1, Y, X0     \
	VMOVQ        X0, off+16(DI)

// func packRowsAVX2(dst, src *float32, lda, k8 int)
//
// Packs one full 6-row micro-panel of A: src points at A[i0, k0] (6 rows
// lda floats apart, each contiguous in k) and dst receives k8 steps (a
// multiple of 8) of 6 values, dst[kk*6+r] = src[r*lda+kk]. Rows 6 and 7 of
// each 8×8 transpose are zero and not stored.
TEXT ·packRowsAVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ lda+16(FP), BX
	SHLQ $2, BX
	MOVQ k8+24(FP), CX
	SHRQ $3, CX
	JE   done
	LEAQ (BX)(BX*2), DX // 3·lda bytes

loop:
	MOVQ    SI, R8
	VMOVUPS (R8), Y0
	VMOVUPS (R8)(BX*1), Y1
	VMOVUPS (R8)(BX*2), Y2
	VMOVUPS (R8)(DX*1), Y3
	LEAQ    (R8)(BX*4), R8
	VMOVUPS (R8), Y4
	VMOVUPS (R8)(BX*1), Y5
	VXORPS  Y6, Y6, Y6
	VXORPS  Y7, Y7, Y7
	TRANSPOSE8
	STORE6(Y8, X8, 0)
	STORE6(Y9, X9, 24)
	STORE6(Y10, X10, 48)
	STORE6(Y11, X11, 72)
	STORE6(Y12, X12, 96)
	STORE6(Y13, X13, 120)
	STORE6(Y14, X14, 144)
	STORE6(Y15, X15, 168)
	ADDQ    $32, SI
	ADDQ    $192, DI
	DECQ    CX
	JNZ     loop

done:
	VZEROUPPER
	RET

// func packRows14AVX2(dst, src *float32, lda, k8 int)
//
// packRowsAVX2 for a 14-row micro-panel (the AVX-512 kernel's): rows 0-7
// and rows 8-13 (two zero rows added) are transposed 8×8 at a time and
// dst receives k8 steps of 14 values, dst[kk*14+r] = src[r*lda+kk].
TEXT ·packRows14AVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ lda+16(FP), BX
	SHLQ $2, BX
	MOVQ k8+24(FP), CX
	SHRQ $3, CX
	JE   done
	LEAQ (BX)(BX*2), DX // 3·lda bytes

loop:
	// Rows 0-7.
	MOVQ    SI, R8
	VMOVUPS (R8), Y0
	VMOVUPS (R8)(BX*1), Y1
	VMOVUPS (R8)(BX*2), Y2
	VMOVUPS (R8)(DX*1), Y3
	LEAQ    (R8)(BX*4), R8
	VMOVUPS (R8), Y4
	VMOVUPS (R8)(BX*1), Y5
	VMOVUPS (R8)(BX*2), Y6
	VMOVUPS (R8)(DX*1), Y7
	TRANSPOSE8
	VMOVUPS Y8, (DI)
	VMOVUPS Y9, 56(DI)
	VMOVUPS Y10, 112(DI)
	VMOVUPS Y11, 168(DI)
	VMOVUPS Y12, 224(DI)
	VMOVUPS Y13, 280(DI)
	VMOVUPS Y14, 336(DI)
	VMOVUPS Y15, 392(DI)

	// Rows 8-13.
	LEAQ    (R8)(BX*4), R8
	VMOVUPS (R8), Y0
	VMOVUPS (R8)(BX*1), Y1
	VMOVUPS (R8)(BX*2), Y2
	VMOVUPS (R8)(DX*1), Y3
	LEAQ    (R8)(BX*4), R8
	VMOVUPS (R8), Y4
	VMOVUPS (R8)(BX*1), Y5
	VXORPS  Y6, Y6, Y6
	VXORPS  Y7, Y7, Y7
	TRANSPOSE8
	STORE6(Y8, X8, 32)
	STORE6(Y9, X9, 88)
	STORE6(Y10, X10, 144)
	STORE6(Y11, X11, 200)
	STORE6(Y12, X12, 256)
	STORE6(Y13, X13, 312)
	STORE6(Y14, X14, 368)
	STORE6(Y15, X15, 424)

	ADDQ $32, SI
	ADDQ $448, DI
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	RET

// func sumAVX2(x *float32, n int) float64
//
// Σ x[0:n] in float64 (two 4-lane accumulators), n a multiple of 8.
TEXT ·sumAVX2(SB), NOSPLIT, $0-24
	MOVQ   x+0(FP), SI
	MOVQ   n+8(FP), CX
	VXORPD Y0, Y0, Y0
	VXORPD Y1, Y1, Y1
	SHRQ   $3, CX
	JE     done

loop:
	VCVTPS2PD (SI), Y2
	VCVTPS2PD 16(SI), Y3
	VADDPD    Y2, Y0, Y0
	VADDPD    Y3, Y1, Y1
	ADDQ      $32, SI
	DECQ      CX
	JNZ       loop

done:
	VADDPD       Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPD       X1, X0, X0
	VHADDPD      X0, X0, X0
	VZEROUPPER
	MOVSD        X0, ret+16(FP)
	RET

// func sqDevAVX2(x *float32, n int, mean float64) float64
//
// Σ (x[i]−mean)² over x[0:n] in float64, n a multiple of 8.
TEXT ·sqDevAVX2(SB), NOSPLIT, $0-32
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSD mean+16(FP), Y4
	VXORPD       Y0, Y0, Y0
	VXORPD       Y1, Y1, Y1
	SHRQ         $3, CX
	JE           done

loop:
	VCVTPS2PD   (SI), Y2
	VCVTPS2PD   16(SI), Y3
	VSUBPD      Y4, Y2, Y2
	VSUBPD      Y4, Y3, Y3
	VFMADD231PD Y2, Y2, Y0
	VFMADD231PD Y3, Y3, Y1
	ADDQ        $32, SI
	DECQ        CX
	JNZ         loop

done:
	VADDPD       Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPD       X1, X0, X0
	VHADDPD      X0, X0, X0
	VZEROUPPER
	MOVSD        X0, ret+24(FP)
	RET

// func affineAVX2(dst, src *float32, n int, scale, shift float64)
//
// dst[i] = float32(float64(src[i])·scale + shift) for n a multiple of 8
// (one fused multiply-add in float64, one rounding to float32).
TEXT ·affineAVX2(SB), NOSPLIT, $0-40
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSD scale+24(FP), Y4
	VBROADCASTSD shift+32(FP), Y5
	SHRQ         $3, CX
	JE           done

loop:
	VCVTPS2PD   (SI), Y0
	VCVTPS2PD   16(SI), Y1
	VFMADD213PD Y5, Y4, Y0
	VFMADD213PD Y5, Y4, Y1
	VCVTPD2PSY  Y0, X0
	VCVTPD2PSY  Y1, X1
	VMOVUPS     X0, (DI)
	VMOVUPS     X1, 16(DI)
	ADDQ        $32, SI
	ADDQ        $32, DI
	DECQ        CX
	JNZ         loop

done:
	VZEROUPPER
	RET

// func siluAVX2(dst, src *float32, n int)
//
// dst[i] = x/(1+e^(−x)) for x = src[i], n a multiple of 8; dst may equal
// src. The exponential is expSumAVX2's; the division is exact IEEE.
TEXT ·siluAVX2(SB), NOSPLIT, $0-24
	MOVQ    dst+0(FP), DI
	MOVQ    src+8(FP), SI
	MOVQ    n+16(FP), CX
	VMOVUPS expconst<>+0x000(SB), Y9
	VMOVUPS expconst<>+0x020(SB), Y10
	VMOVUPS expconst<>+0x040(SB), Y11
	VMOVUPS expconst<>+0x060(SB), Y12
	VMOVUPS expconst<>+0x080(SB), Y13
	VMOVUPS expconst<>+0x160(SB), Y14
	VMOVDQU expconst<>+0x180(SB), Y15
	VXORPS  Y8, Y8, Y8
	SHRQ    $3, CX
	JE      done

loop:
	VMOVUPS      (SI), Y7
	VSUBPS       Y7, Y8, Y0
	VMINPS       Y0, Y9, Y0
	VMAXPS       Y0, Y10, Y0
	VMULPS       Y11, Y0, Y1
	VROUNDPS     $0, Y1, Y1
	VFNMADD231PS Y12, Y1, Y0
	VFNMADD231PS Y13, Y1, Y0
	VMOVUPS      expconst<>+0x0a0(SB), Y2
	VFMADD213PS  expconst<>+0x0c0(SB), Y0, Y2
	VFMADD213PS  expconst<>+0x0e0(SB), Y0, Y2
	VFMADD213PS  expconst<>+0x100(SB), Y0, Y2
	VFMADD213PS  expconst<>+0x120(SB), Y0, Y2
	VFMADD213PS  expconst<>+0x140(SB), Y0, Y2
	VMULPS       Y0, Y0, Y3
	VFMADD213PS  Y0, Y3, Y2
	VADDPS       Y14, Y2, Y2
	VCVTPS2DQ    Y1, Y1
	VPADDD       Y15, Y1, Y1
	VPSLLD       $23, Y1, Y1
	VMULPS       Y1, Y2, Y2
	VADDPS       Y14, Y2, Y2
	VDIVPS       Y2, Y7, Y2
	VMOVUPS      Y2, (DI)
	ADDQ         $32, SI
	ADDQ         $32, DI
	DECQ         CX
	JNZ          loop

done:
	VZEROUPPER
	RET

// func widenF16AVX2(dst *float32, src *uint16, n int)
//
// dst[i] = float32(src[i] as IEEE half) for n a multiple of 8 (F16C).
TEXT ·widenF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JE   done

loop:
	VCVTPH2PS (SI), Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       loop

done:
	VZEROUPPER
	RET

// func widenBF16AVX2(dst *float32, src *uint16, n int)
//
// dst[i] = float32 with src[i] as its upper 16 bits, n a multiple of 8.
TEXT ·widenBF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JE   done

loop:
	VPMOVZXWD (SI), Y0
	VPSLLD    $16, Y0, Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       loop

done:
	VZEROUPPER
	RET
