// random.cu: torch.randn on a CUDA generator, value for value. ATen's
// normal_kernel (aten/src/ATen/native/cuda/DistributionTemplates.h) runs
// distribution_nullary_kernel with cuRAND's Philox4x32-10: thread idx of
// the grid calls curand_init(seed, idx, offset) and, per pass, one
// curand_normal4 whose four values go to elements li, li + S, li + 2S,
// li + 3S (S = threads in the grid). The Philox state and the Box-Muller
// transform below are cuRAND's (curand_philox4x32_x.h, curand_normal.h)
// written out, with the same device math: logf and sqrtf at full
// precision and the __sincosf intrinsic, so that the values are the GPU's
// bit for bit. The launch geometry is the Go side's (torchRandnGrid), which
// mirrors ATen's calc_execution_policy.

#define PHILOX_W32_0 0x9E3779B9u
#define PHILOX_W32_1 0xBB67AE85u
#define PHILOX_M4x32_0 0xD2511F53u
#define PHILOX_M4x32_1 0xCD9E8D57u

// cuRAND's float constants: 2^-32 and the float product 2^-32 * 2*pi.
#define CURAND_2POW32_INV (2.3283064e-10f)
#define CURAND_2POW32_INV_2PI (2.3283064e-10f * 6.2831855f)

struct PhiloxState {
  u32 ctr[4];
  u32 key[2];
  u32 output[4];
  u32 state;  // index of the next unused word of output
};

__device__ __forceinline__ u32 mulhilo32(u32 a, u32 b, u32* hi) {
  const unsigned long long p = (unsigned long long)a * b;
  *hi = (u32)(p >> 32);
  return (u32)p;
}

// philox_round is one round of _philox4x32round.
__device__ __forceinline__ void philox_round(u32 c[4], const u32 k[2]) {
  u32 hi0, hi1;
  const u32 lo0 = mulhilo32(PHILOX_M4x32_0, c[0], &hi0);
  const u32 lo1 = mulhilo32(PHILOX_M4x32_1, c[2], &hi1);
  const u32 r0 = hi1 ^ c[1] ^ k[0], r2 = hi0 ^ c[3] ^ k[1];
  c[0] = r0;
  c[1] = lo1;
  c[2] = r2;
  c[3] = lo0;
}

// philox10 is curand_Philox4x32_10: out = ten rounds of ctr under key,
// with the key bumped between rounds.
__device__ __forceinline__ void philox10(const u32 ctr[4], const u32 key[2], u32 out[4]) {
  u32 c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
  u32 k[2] = {key[0], key[1]};
  philox_round(c, k);
  for (int r = 1; r < 10; ++r) {
    k[0] += PHILOX_W32_0;
    k[1] += PHILOX_W32_1;
    philox_round(c, k);
  }
  out[0] = c[0];
  out[1] = c[1];
  out[2] = c[2];
  out[3] = c[3];
}

// philox_incr is Philox_State_Incr(state, n), cuRAND's carry test on the
// second word included.
__device__ __forceinline__ void philox_incr(PhiloxState* s, unsigned long long n) {
  const u32 nlo = (u32)n;
  u32 nhi = (u32)(n >> 32);
  s->ctr[0] += nlo;
  if (s->ctr[0] < nlo) nhi++;
  s->ctr[1] += nhi;
  if (nhi <= s->ctr[1]) return;
  if (++s->ctr[2]) return;
  ++s->ctr[3];
}

// philox_incr_hi is Philox_State_Incr_hi: subsequences advance the counter's
// high 64 bits.
__device__ __forceinline__ void philox_incr_hi(PhiloxState* s, unsigned long long n) {
  const u32 nlo = (u32)n;
  u32 nhi = (u32)(n >> 32);
  s->ctr[2] += nlo;
  if (s->ctr[2] < nlo) nhi++;
  s->ctr[3] += nhi;
}

// philox_incr1 is Philox_State_Incr(state): the 128-bit counter plus one.
__device__ __forceinline__ void philox_incr1(PhiloxState* s) {
  if (++s->ctr[0]) return;
  if (++s->ctr[1]) return;
  if (++s->ctr[2]) return;
  ++s->ctr[3];
}

// philox_init is curand_init(seed, subsequence, offset, state).
__device__ __forceinline__ void philox_init(PhiloxState* s, unsigned long long seed, unsigned long long subsequence,
                                            unsigned long long offset) {
  s->ctr[0] = s->ctr[1] = s->ctr[2] = s->ctr[3] = 0;
  s->key[0] = (u32)seed;
  s->key[1] = (u32)(seed >> 32);
  s->state = 0;
  philox_incr_hi(s, subsequence);
  // skipahead(offset): offset counts 32-bit values.
  s->state += (u32)(offset & 3);
  unsigned long long n = offset / 4;
  if (s->state > 3) {
    n += 1;
    s->state -= 4;
  }
  philox_incr(s, n);
  philox10(s->ctr, s->key, s->output);
}

// philox_uint4 is curand4: the next four 32-bit values.
__device__ __forceinline__ void philox_uint4(PhiloxState* s, u32 r[4]) {
  const u32 t0 = s->output[0], t1 = s->output[1], t2 = s->output[2], t3 = s->output[3];
  philox_incr1(s);
  philox10(s->ctr, s->key, s->output);
  switch (s->state) {
    case 1:
      r[0] = t1, r[1] = t2, r[2] = t3, r[3] = s->output[0];
      break;
    case 2:
      r[0] = t2, r[1] = t3, r[2] = s->output[0], r[3] = s->output[1];
      break;
    case 3:
      r[0] = t3, r[1] = s->output[0], r[2] = s->output[1], r[3] = s->output[2];
      break;
    default:
      r[0] = t0, r[1] = t1, r[2] = t2, r[3] = t3;
  }
}

// Modes of k_torch_randn. The default (0) is how nvcc compiles cuRAND for
// PyTorch; the others exist to diagnose a mismatch on a new GPU or
// toolkit (TestTorchRandnGolden tries them when the default differs).
#define RANDN_UNFUSED 1   // the affine maps as a rounded multiply, then a rounded add
#define RANDN_FAST_LOG 2  // __logf instead of logf (a fast-math build)

// box_muller is _curand_box_muller on the device: the affine maps are the
// fused multiply-adds nvcc makes of cuRAND's "x * C + C/2" (written as
// fmaf here so that they do not depend on contraction), logf and sqrtf
// are the precise versions (PyTorch is not built with fast math) and the
// angle goes through __sincosf.
__device__ __forceinline__ void box_muller(u32 x, u32 y, int mode, float* a, float* b) {
  float u, v;
  if (mode & RANDN_UNFUSED) {
    u = __fadd_rn(__fmul_rn((float)x, CURAND_2POW32_INV), CURAND_2POW32_INV / 2.0f);
    v = __fadd_rn(__fmul_rn((float)y, CURAND_2POW32_INV_2PI), CURAND_2POW32_INV_2PI / 2.0f);
  } else {
    u = fmaf((float)x, CURAND_2POW32_INV, CURAND_2POW32_INV / 2.0f);
    v = fmaf((float)y, CURAND_2POW32_INV_2PI, CURAND_2POW32_INV_2PI / 2.0f);
  }
  const float s = sqrtf(-2.0f * ((mode & RANDN_FAST_LOG) ? __logf(u) : logf(u)));
  float sn, cs;
  __sincosf(v, &sn, &cs);
  *a = sn * s;
  *b = cs * s;
}

// k_torch_randn writes n standard normal values to out (storage dtype
// dto: a float value rounded once on store, as ATen's static_cast from the
// float accumulator) from Philox stream (seed, offset), with ATen's thread
// layout for the launch's grid (one-dimensional, blockDim.x * gridDim.x
// threads); mode is 0 but for diagnostics (RANDN_*).
extern "C" __global__ void k_torch_randn(i64 n, unsigned long long seed, unsigned long long offset, void* out,
                                         int dto, int mode) {
  const i64 threads = (i64)blockDim.x * gridDim.x;
  const i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  const i64 step = threads * 4;
  const i64 rounded = ((n - 1) / step + 1) * step;
  PhiloxState st;
  philox_init(&st, seed, (unsigned long long)idx, offset);
  for (i64 li = idx; li < rounded; li += step) {
    u32 r[4];
    philox_uint4(&st, r);
    float v[4];
    box_muller(r[0], r[1], mode, &v[0], &v[1]);
    box_muller(r[2], r[3], mode, &v[2], &v[3]);
#pragma unroll
    for (int ii = 0; ii < 4; ++ii) {
      const i64 k = li + threads * ii;
      if (k < n) stx(out, k, dto, v[ii]);
    }
  }
}
