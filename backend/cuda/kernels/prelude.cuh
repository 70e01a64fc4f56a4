// prelude.cuh is prepended (by the Go side, not by #include) to every kernel
// module. It needs no CUDA headers: NVRTC provides the math functions and
// intrinsics, and half/bfloat16 conversions are done here on raw 16-bit
// storage so that the plain kernels compile without -I<cuda>/include.
//
// The same sources also build on the host with g++ (SDXL_EMU defined) in the
// package's emulator test, which supplies the CUDA built-ins in shim.h.

// Storage dtype codes; they equal tensor.DType's values.
#define DT_F32 0
#define DT_F16 1
#define DT_BF16 2

// Maximum rank of the strided index helpers (Dims).
#define MAXR 8

typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;

#ifndef SDXL_EMU
__device__ __forceinline__ float h2f(u16 h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}
__device__ __forceinline__ u16 f2h(float f) {
  u16 h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
}
#endif

__device__ __forceinline__ float bf2f(u16 b) { return __uint_as_float(((u32)b) << 16); }

// f2bf rounds to nearest even, keeping NaNs quiet (as the CPU backend does).
__device__ __forceinline__ u16 f2bf(float f) {
  u32 u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (u16)((u | 0x00400000u) >> 16);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (u16)(u >> 16);
}

// ldx/stx read and write element i of a tensor of storage dtype dt as
// float32. The switch is uniform across a launch, so it costs little, and it
// lets every op accept inputs of mixed storage types.
__device__ __forceinline__ float ldx(const void* p, i64 i, int dt) {
  if (dt == DT_F32) return ((const float*)p)[i];
  u16 v = ((const u16*)p)[i];
  return dt == DT_F16 ? h2f(v) : bf2f(v);
}

__device__ __forceinline__ void stx(void* p, i64 i, int dt, float v) {
  if (dt == DT_F32) {
    ((float*)p)[i] = v;
  } else if (dt == DT_F16) {
    ((u16*)p)[i] = f2h(v);
  } else {
    ((u16*)p)[i] = f2bf(v);
  }
}

#define NEG_INF (__int_as_float(0xff800000))

// Dims describes up to MAXR dimensions of an index space and two sets of
// element strides into it (e.g. two inputs of a broadcast op, or the source
// and destination of a strided copy). The Go side fills it (kargs.dims).
struct Dims {
  i64 shape[MAXR];
  i64 sa[MAXR];
  i64 sb[MAXR];
};

// offsets maps the linear (row-major) index i of the index space to element
// offsets along the two stride sets.
__device__ __forceinline__ void offsets(i64 i, int rank, const Dims& d, i64& oa, i64& ob) {
  oa = 0;
  ob = 0;
  if (rank == 1) {
    oa = i * d.sa[0];
    ob = i * d.sb[0];
    return;
  }
  for (int k = rank - 1; k >= 0; --k) {
    i64 s = d.shape[k];
    i64 c = i % s;
    i /= s;
    oa += c * d.sa[k];
    ob += c * d.sb[k];
  }
}

// offsets32 is offsets for index spaces of fewer than 2^32 elements (the
// Go side passes wide = 0 then): 32-bit division, which the GPU does in a
// few instructions, where 64-bit division is a long software routine that
// would dominate a memory-bound kernel.
__device__ __forceinline__ void offsets32(u32 i, int rank, const Dims& d, i64& oa, i64& ob) {
  oa = 0;
  ob = 0;
  if (rank == 1) {
    oa = (i64)i * d.sa[0];
    ob = (i64)i * d.sb[0];
    return;
  }
  for (int k = rank - 1; k >= 0; --k) {
    const u32 s = (u32)d.shape[k];
    const u32 q = i / s;
    const u32 c = i - q * s;
    i = q;
    oa += (i64)c * d.sa[k];
    ob += (i64)c * d.sb[k];
  }
}

// Grid-stride loop over [0, n).
#define GRID_STRIDE(i, n) \
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

// warp_sum and warp_max reduce over the 32 lanes with an xor butterfly;
// every lane gets the same result (each step adds the same two values on
// both lanes of a pair). The emulator computes the identical butterfly
// after a single warp barrier (shim.h) instead of five shuffles.
__device__ __forceinline__ float warp_sum(float v) {
#ifdef SDXL_EMU
  return emu_warp_butterfly(v, false);
#else
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
#endif
}

__device__ __forceinline__ float warp_max(float v) {
#ifdef SDXL_EMU
  return emu_warp_butterfly(v, true);
#else
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
#endif
}

// block_sum and block_max reduce over the whole block (blockDim.x a multiple
// of 32, at most 1024) and return the result to every thread. sh must hold
// 33 floats of shared memory. The leading barrier lets a caller reuse sh for
// consecutive reductions.
__device__ __forceinline__ float block_sum(float v, float* sh) {
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) sh[wid] = v;
  __syncthreads();
  if (wid == 0) {
    const int nw = blockDim.x >> 5;
    float t = lane < nw ? sh[lane] : 0.0f;
    t = warp_sum(t);
    if (lane == 0) sh[32] = t;
  }
  __syncthreads();
  return sh[32];
}

__device__ __forceinline__ float block_max(float v, float* sh) {
  v = warp_max(v);
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) sh[wid] = v;
  __syncthreads();
  if (wid == 0) {
    const int nw = blockDim.x >> 5;
    float t = lane < nw ? sh[lane] : NEG_INF;
    t = warp_max(t);
    if (lane == 0) sh[32] = t;
  }
  __syncthreads();
  return sh[32];
}

// MaskSpec locates an additive attention mask for softmax rows that are
// (batch*head, query) pairs: row r is query q0 + r % rowsPerBH of bh =
// r / rowsPerBH, bh = b*H + h; mb, mh, mq, mk are the mask's broadcast
// strides (0 along broadcast dimensions). Laid out by kargs.maskSpec.
struct MaskSpec {
  i64 rowsPerBH;
  i64 q0;
  i64 mb, mh, mq, mk;
  int H;
  int pad_;
};

// AttnSpec: the sizes of a fused attention launch, the mask's broadcast
// strides (as in MaskSpec), the generic kernel's tile geometry (TK keys per
// tile, DP padded row length) and the first (batch*head) index of the
// launch. Laid out by kargs.attnSpec.
struct AttnSpec {
  i64 mb, mh, mq, mk;
  int H, Lq, Lk, D;
  int Dv, TK, DP, bh0;
};
