// shim.h: the CUDA built-ins the backend's kernels use, for compiling them
// with g++ and running them on the CPU in the package's emulator test
// (emu.cpp). Each CUDA thread is a fiber; __syncthreads, __syncwarp, warp
// shuffles and WMMA operations are barriers at which the scheduler switches
// fibers, and the emulator fails loudly on a barrier that real hardware
// would deadlock on or leave undefined (divergent or with exited threads).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#define SDXL_EMU 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
};

// Per-fiber state and the barrier entry points (emu.cpp).
struct EmuFiber;
extern EmuFiber* emu_cur;
extern uint3 emu_blockIdx;
extern dim3 emu_blockDim, emu_gridDim;
uint3& emu_tid();
int emu_linear_tid();
void emu_barrier_block();
void emu_barrier_warp();
uint64_t* emu_shfl_slots(int warp);
[[noreturn]] void emu_fail(const char* fmt, ...);

#define threadIdx (emu_tid())
#define blockIdx (emu_blockIdx)
#define blockDim (emu_blockDim)
#define gridDim (emu_gridDim)

inline void __syncthreads() { emu_barrier_block(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  if (mask != 0xffffffffu) emu_fail("__syncwarp with a partial mask %#x", mask);
  emu_barrier_warp();
}

template <class T>
inline T emu_shfl(T v, int src) {
  static_assert(sizeof(T) <= 8, "shuffle of a wide type");
  const int lt = emu_linear_tid();
  uint64_t* slots = emu_shfl_slots(lt / 32);
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  slots[lt % 32] = bits;
  emu_barrier_warp();
  uint64_t got = slots[src & 31];
  T r;
  std::memcpy(&r, &got, sizeof(T));
  return r;
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int laneMask, int width = 32) {
  if (mask != 0xffffffffu || width != 32) emu_fail("__shfl_xor_sync with mask %#x width %d", mask, width);
  return emu_shfl(v, (emu_linear_tid() % 32) ^ laneMask);
}
template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  if (mask != 0xffffffffu || width != 32) emu_fail("__shfl_sync with mask %#x width %d", mask, width);
  return emu_shfl(v, src);
}

// emu_warp_butterfly is warp_sum (max false) or warp_max (max true) of
// prelude.cuh with one warp barrier instead of five shuffles: every lane
// publishes its value; after the barrier the first lane to run replays the
// xor butterfly (o = 16, 8, 4, 2, 1) over the 32 values and leaves the
// result for the others. Every lane of the butterfly ends with the same
// value (each step combines the same two values on both lanes of a pair,
// and + and fmaxf are commutative), which is lane 0's: halving t[l] op
// t[l + o] for l < o, with the operands in the shuffle version's order.
inline float emu_warp_butterfly(float v, bool max) {
  const int lt = emu_linear_tid();
  uint64_t* slots = emu_shfl_slots(lt / 32);  // 32 values, a done flag, the result
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  slots[lt % 32] = bits;
  slots[32] = 0;
  emu_barrier_warp();
  if (!slots[32]) {
    float t[32];
    for (int l = 0; l < 32; ++l) {
      const uint32_t b = (uint32_t)slots[l];
      std::memcpy(&t[l], &b, 4);
    }
    for (int o = 16; o > 0; o >>= 1)
      for (int l = 0; l < o; ++l) t[l] = max ? std::fmax(t[l], t[l + o]) : t[l] + t[l + o];
    std::memcpy(&bits, &t[0], 4);
    slots[33] = bits;
    slots[32] = 1;
  }
  const uint32_t r = (uint32_t)slots[33];
  float f;
  std::memcpy(&f, &r, 4);
  return f;
}

inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
// __sincosf is the GPU's intrinsic: the angle is scaled by the float 1/(2*pi)
// with a multiply rounded toward zero, and the special function unit
// evaluates sin and cos of 2*pi times that (with an absolute error below
// 2^-21.4). The emulator evaluates them in double and rounds once, like
// sched/torchrand's CUDA generator, so it matches that to the last bit and
// the GPU to about 1e-6.
inline void __sincosf(float x, float* s, float* c) {
  const double p = (double)x * (double)0.15915494f;  // exact: 24 + 24 bits
  float r = (float)p;
  if (std::fabs((double)r) > std::fabs(p)) r = std::nextafter(r, 0.0f);
  const double a = 6.283185307179586 * (double)r;
  *s = (float)std::sin(a);
  *c = (float)std::cos(a);
}

inline float __logf(float x) { return std::log(x); }
inline float __fmul_rn(float a, float b) { return a * b; }  // g++ -std=c++17 does not contract
inline float __fadd_rn(float a, float b) { return a + b; }

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

// IEEE binary16 conversions, round to nearest even (as cvt.rn.f16.f32).
inline float h2f(unsigned short h) {
  const uint32_t s = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  uint32_t bits;
  if (e == 0) {
    float f = std::ldexp((float)m, -24);
    return s ? -f : f;
  } else if (e == 31) {
    bits = s | 0x7f800000u | (m << 13);
  } else {
    bits = s | ((e + 112) << 23) | (m << 13);
  }
  return __uint_as_float(bits);
}
inline unsigned short f2h(float f) {
  const uint32_t x = __float_as_uint(f);
  const uint32_t sign = (x >> 16) & 0x8000;
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return (unsigned short)(sign | 0x7e00);  // NaN
  if (ax >= 0x477ff000u) return (unsigned short)(sign | 0x7c00);  // >= 65520: infinity
  if (ax < 0x38800000u) {                                          // below 2^-14: subnormal
    const float r = std::nearbyint(__uint_as_float(ax) * 16777216.0f);
    return (unsigned short)(sign | (uint32_t)r);
  }
  const uint32_t m = ax - 0x38000000u;
  return (unsigned short)(sign | ((m + 0x0fffu + ((m >> 13) & 1u)) >> 13));
}

struct __half {
  unsigned short x;
};
struct __nv_bfloat16 {
  unsigned short x;
};
inline float __half2float(__half h) { return h2f(h.x); }
inline __half __float2half_rn(float f) { return __half{f2h(f)}; }
inline float __bfloat162float(__nv_bfloat16 b) { return __uint_as_float(((uint32_t)b.x) << 16); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{(unsigned short)((u | 0x00400000u) >> 16)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return __nv_bfloat16{(unsigned short)(u >> 16)};
}

inline float emu_tof(float v) { return v; }
inline float emu_tof(__half v) { return __half2float(v); }
inline float emu_tof(__nv_bfloat16 v) { return __bfloat162float(v); }

// A WMMA stand-in: every lane holds the whole 16x16 tile (the real layout
// is opaque, and the kernels only load, multiply and store fragments).
// Each operation is warp-collective, as on hardware: barriers before and
// after it keep one lane's store from overtaking another lane's load.
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "only 16x16x16 fragments are emulated");
  static const int num_elements = 256;
  float x[256];
};

inline void emu_check_ptr(const void* p, unsigned ldm, size_t esize, const char* what) {
  if (((uintptr_t)p) % 32 != 0) emu_fail("wmma %s: pointer %p not 256-bit aligned", what, p);
  if ((ldm * esize) % 16 != 0) emu_fail("wmma %s: ldm %u not a multiple of 16 bytes", what, ldm);
}

template <class Use, class T, class L, class S>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, L>& f, const S* p, unsigned ldm) {
  static_assert(sizeof(S) == sizeof(T), "fragment and memory types differ");
  emu_check_ptr(p, ldm, sizeof(S), "load");
  __syncwarp();
  const bool col = std::is_same<L, col_major>::value;
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) f.x[r * 16 + c] = emu_tof(col ? p[c * ldm + r] : p[r * ldm + c]);
  __syncwarp();
}

inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p, unsigned ldm, layout_t l) {
  emu_check_ptr(p, ldm, 4, "load accumulator");
  __syncwarp();
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) f.x[r * 16 + c] = l == mem_col_major ? p[c * ldm + r] : p[r * ldm + c];
  __syncwarp();
}

inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ldm, layout_t l) {
  emu_check_ptr(p, ldm, 4, "store");
  __syncwarp();
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) (l == mem_col_major ? p[c * ldm + r] : p[r * ldm + c]) = f.x[r * 16 + c];
  __syncwarp();
}

template <class F>
inline void fill_fragment(F& f, float v) {
  for (int i = 0; i < 256; ++i) f.x[i] = v;
}

template <class T, class LA, class LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, T, LA>& a,
                     const fragment<matrix_b, 16, 16, 16, T, LB>& b,
                     const fragment<accumulator, 16, 16, 16, float>& c) {
  __syncwarp();
  float t[256];
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      float s = c.x[i * 16 + j];
      for (int k = 0; k < 16; ++k) s += a.x[i * 16 + k] * b.x[k * 16 + j];
      t[i * 16 + j] = s;
    }
  std::memcpy(d.x, t, sizeof t);
  __syncwarp();
}
}  // namespace wmma
}  // namespace nvcuda
