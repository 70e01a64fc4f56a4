// norm.cu: reductions over rows or groups with float32 accumulation in a
// fixed order (deterministic). Statistics use two passes (mean, then the
// mean of squared deviations), which stays accurate when |mean| >> std.
// Block size: a multiple of 32, at most 1024 (the Go side launches 256 or
// 512 threads).

// k_groupnorm: x [N, C, S] with C split into G groups of C/G channels; one
// block per (n, g) (grid N*G). w and b are [C] or null. silu != 0 applies
// SiLU to the result (the fused GroupNorm+SiLU).
extern "C" __global__ void k_groupnorm(int C, i64 S, int G, const void* x, int dtx, const void* w, int dtw,
                                       const void* b, int dtb, void* out, int dto, float eps, int silu) {
  __shared__ float sh[33];
  const int n = blockIdx.x / G, g = blockIdx.x % G;
  const int cg = C / G;
  const i64 cnt = (i64)cg * S;
  const i64 base = ((i64)n * C + (i64)g * cg) * S;
  float s = 0.0f;
  for (i64 i = threadIdx.x; i < cnt; i += blockDim.x) s += ldx(x, base + i, dtx);
  const float mean = block_sum(s, sh) / (float)cnt;
  float v = 0.0f;
  for (i64 i = threadIdx.x; i < cnt; i += blockDim.x) {
    const float d = ldx(x, base + i, dtx) - mean;
    v += d * d;
  }
  const float var = block_sum(v, sh) / (float)cnt;
  const float rstd = 1.0f / sqrtf(var + eps);
  for (int cl = 0; cl < cg; ++cl) {
    const int c = g * cg + cl;
    const float wc = w ? ldx(w, c, dtw) : 1.0f;
    const float bc = b ? ldx(b, c, dtb) : 0.0f;
    const i64 cb = base + (i64)cl * S;
    for (i64 j = threadIdx.x; j < S; j += blockDim.x) {
      float y = (ldx(x, cb + j, dtx) - mean) * rstd * wc + bc;
      if (silu) y = y * sigmoidf_(y);
      stx(out, cb + j, dto, y);
    }
  }
}

// Split GroupNorm for large groups: one block per (n, g) leaves most of a
// big GPU idle when N*G is small (64 blocks at SDXL's sizes), so each group
// of cnt elements is split into P parts of chunk elements (the last one
// shorter, none empty) and two kernels run over N*G*P blocks, block b
// serving part b % P of group b / P. k_gn_stats writes each part's mean and
// sum of squared deviations from it (two passes over the part, as above);
// k_gn_apply combines a group's P partials in double precision in a fixed
// order (Chan et al.: M2 = sum M2_p + sum m_p (mean_p - mean)^2), so that
// every block of the group derives the same statistics, then normalises its
// part.

__device__ __forceinline__ i64 min64(i64 a, i64 b) { return a < b ? a : b; }
__device__ __forceinline__ i64 max64(i64 a, i64 b) { return a > b ? a : b; }

extern "C" __global__ void k_gn_stats(int C, i64 S, int G, i64 chunk, int P, const void* x, int dtx, float* part) {
  __shared__ float sh[33];
  const i64 ng = blockIdx.x / P;
  const int p = blockIdx.x % P;
  const int n = (int)(ng / G), g = (int)(ng % G);
  const int cg = C / G;
  const i64 cnt = (i64)cg * S;
  const i64 base = ((i64)n * C + (i64)g * cg) * S;
  const i64 lo = (i64)p * chunk, hi = min64(lo + chunk, cnt);
  float s = 0.0f;
  for (i64 i = lo + threadIdx.x; i < hi; i += blockDim.x) s += ldx(x, base + i, dtx);
  const float mean = block_sum(s, sh) / (float)(hi - lo);
  float v = 0.0f;
  for (i64 i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    const float d = ldx(x, base + i, dtx) - mean;
    v += d * d;
  }
  const float m2 = block_sum(v, sh);
  if (threadIdx.x == 0) {
    part[2 * (i64)blockIdx.x] = mean;
    part[2 * (i64)blockIdx.x + 1] = m2;
  }
}

__device__ __forceinline__ double warp_sum_d(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

extern "C" __global__ void k_gn_apply(int C, i64 S, int G, i64 chunk, int P, const float* part, const void* x,
                                      int dtx, const void* w, int dtw, const void* b, int dtb, void* out, int dto,
                                      float eps, int silu) {
  __shared__ float stat[2];
  const i64 ng = blockIdx.x / P;
  const int p = blockIdx.x % P;
  const int n = (int)(ng / G), g = (int)(ng % G);
  const int cg = C / G;
  const i64 cnt = (i64)cg * S;
  const i64 base = ((i64)n * C + (i64)g * cg) * S;
  if (threadIdx.x < 32) {
    const float* gp = part + 2 * ng * P;
    double sm = 0.0;
    for (int q = threadIdx.x; q < P; q += 32) sm += (double)min64(chunk, cnt - (i64)q * chunk) * gp[2 * q];
    const double mean = warp_sum_d(sm) / (double)cnt;
    double m2 = 0.0;
    for (int q = threadIdx.x; q < P; q += 32) {
      const double d = (double)gp[2 * q] - mean;
      m2 += (double)gp[2 * q + 1] + (double)min64(chunk, cnt - (i64)q * chunk) * d * d;
    }
    m2 = warp_sum_d(m2);
    if (threadIdx.x == 0) {
      stat[0] = (float)mean;
      stat[1] = 1.0f / sqrtf((float)(m2 / (double)cnt) + eps);
    }
  }
  __syncthreads();
  const float mean = stat[0], rstd = stat[1];
  const i64 lo = (i64)p * chunk, hi = min64(lo + chunk, cnt);
  // Channel by channel over the part, so that no element needs a division.
  for (int cl = (int)(lo / S); cl < cg && (i64)cl * S < hi; ++cl) {
    const int c = g * cg + cl;
    const float wc = w ? ldx(w, c, dtw) : 1.0f;
    const float bc = b ? ldx(b, c, dtb) : 0.0f;
    const i64 j1 = min64(hi, (i64)(cl + 1) * S);
    for (i64 j = max64(lo, (i64)cl * S) + threadIdx.x; j < j1; j += blockDim.x) {
      float y = (ldx(x, base + j, dtx) - mean) * rstd * wc + bc;
      if (silu) y = y * sigmoidf_(y);
      stx(out, base + j, dto, y);
    }
  }
}

// k_layernorm: normalises each row of x [rows, D]; one block per row.
extern "C" __global__ void k_layernorm(i64 D, const void* x, int dtx, const void* w, int dtw, const void* b,
                                       int dtb, void* out, int dto, float eps) {
  __shared__ float sh[33];
  const i64 base = (i64)blockIdx.x * D;
  float s = 0.0f;
  for (i64 i = threadIdx.x; i < D; i += blockDim.x) s += ldx(x, base + i, dtx);
  const float mean = block_sum(s, sh) / (float)D;
  float v = 0.0f;
  for (i64 i = threadIdx.x; i < D; i += blockDim.x) {
    const float d = ldx(x, base + i, dtx) - mean;
    v += d * d;
  }
  const float var = block_sum(v, sh) / (float)D;
  const float rstd = 1.0f / sqrtf(var + eps);
  for (i64 i = threadIdx.x; i < D; i += blockDim.x) {
    float y = (ldx(x, base + i, dtx) - mean) * rstd;
    if (w) y *= ldx(w, i, dtw);
    if (b) y += ldx(b, i, dtb);
    stx(out, base + i, dto, y);
  }
}

// k_softmax: out[r, j] = softmax_j(x[r, j]*scale + mask[r, j]) over rows of
// length L; one block per row. x and out may alias (each element is read
// before it is written, by the same thread).
extern "C" __global__ void k_softmax(i64 L, const void* x, int dtx, void* out, int dto, float scale,
                                     const void* mask, int dtm, MaskSpec ms) {
  __shared__ float sh[33];
  const i64 row = blockIdx.x;
  const i64 base = row * L;
  i64 moff = 0;
  if (mask) {
    const i64 bh = row / ms.rowsPerBH, q = ms.q0 + row % ms.rowsPerBH;
    const i64 bb = bh / ms.H, hh = bh % ms.H;
    moff = bb * ms.mb + hh * ms.mh + q * ms.mq;
  }
  float mx = NEG_INF;
  for (i64 j = threadIdx.x; j < L; j += blockDim.x) {
    float v = ldx(x, base + j, dtx) * scale;
    if (mask) v += ldx(mask, moff + j * ms.mk, dtm);
    mx = fmaxf(mx, v);
  }
  mx = block_max(mx, sh);
  float s = 0.0f;
  for (i64 j = threadIdx.x; j < L; j += blockDim.x) {
    float v = ldx(x, base + j, dtx) * scale;
    if (mask) v += ldx(mask, moff + j * ms.mk, dtm);
    s += expf(v - mx);
  }
  s = block_sum(s, sh);
  const float inv = 1.0f / s;
  for (i64 j = threadIdx.x; j < L; j += blockDim.x) {
    float v = ldx(x, base + j, dtx) * scale;
    if (mask) v += ldx(mask, moff + j * ms.mk, dtm);
    stx(out, base + j, dto, expf(v - mx) * inv);
  }
}
