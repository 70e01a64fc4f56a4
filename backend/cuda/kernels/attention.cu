// attention.cu: the generic fused attention kernel for any head size up to
// 1024 and any storage dtype: no score matrix is materialised; each warp
// owns one query row and streams the keys with an online softmax (running
// max m, running sum l, rescaled accumulator), all in float32.
//
// Block: ATT_WARPS warps; grid (ceil(Lq / ATT_WARPS), B*H - bh0 chunk). Keys
// and values are staged through shared memory in tiles of TK rows whose
// row stride DP = NCH*32 >= max(D, Dv) is zero padded, so that lane l reads
// element c*32 + l of a row without bounds checks.

#define ATT_WARPS 4
#define ATT_SMEM 4096  // floats per tile buffer (K and V each): 32 KiB in all

template <int NCH>
__device__ __forceinline__ void attn_generic(const void* q, const void* k, const void* v, int dt, void* out,
                                             int dto, float scale, const void* mask, int dtm, const AttnSpec& s) {
  __shared__ float kt[ATT_SMEM];
  __shared__ float vt[ATT_SMEM];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const i64 bh = (i64)s.bh0 + blockIdx.y;
  const int qi = blockIdx.x * ATT_WARPS + warp;
  const bool active = qi < s.Lq;  // uniform across the warp
  float qr[NCH], acc[NCH];
#pragma unroll
  for (int c = 0; c < NCH; ++c) {
    const int d = c * 32 + lane;
    qr[c] = (active && d < s.D) ? ldx(q, (bh * s.Lq + qi) * s.D + d, dt) : 0.0f;
    acc[c] = 0.0f;
  }
  i64 moff = 0;
  if (mask) moff = (bh / s.H) * s.mb + (bh % s.H) * s.mh + (i64)qi * s.mq;
  float m = NEG_INF, l = 0.0f;
  for (int t0 = 0; t0 < s.Lk; t0 += s.TK) {
    const int tk = min(s.TK, s.Lk - t0);
    __syncthreads();  // the previous tile is no longer read
    for (int e = threadIdx.x; e < s.TK * s.DP; e += blockDim.x) {
      const int j = e / s.DP, d = e - j * s.DP;
      const i64 row = bh * s.Lk + t0 + j;
      kt[e] = (j < tk && d < s.D) ? ldx(k, row * s.D + d, dt) : 0.0f;
      vt[e] = (j < tk && d < s.Dv) ? ldx(v, row * s.Dv + d, dt) : 0.0f;
    }
    __syncthreads();
    if (active) {
      for (int j = 0; j < tk; ++j) {
        float p = 0.0f;
#pragma unroll
        for (int c = 0; c < NCH; ++c) p += qr[c] * kt[j * s.DP + c * 32 + lane];
        p = warp_sum(p) * scale;
        if (mask) p += ldx(mask, moff + (i64)(t0 + j) * s.mk, dtm);
        const float mn = fmaxf(m, p);
        // A key at -inf (fully masked) adds nothing; while every key so far
        // is at -inf, m stays -inf and nothing is accumulated.
        const float alpha = (m == NEG_INF) ? 0.0f : expf(m - mn);
        const float e = (p == NEG_INF) ? 0.0f : expf(p - mn);
        l = l * alpha + e;
#pragma unroll
        for (int c = 0; c < NCH; ++c) acc[c] = acc[c] * alpha + e * vt[j * s.DP + c * 32 + lane];
        m = mn;
      }
    }
  }
  if (active) {
    const float inv = 1.0f / l;
#pragma unroll
    for (int c = 0; c < NCH; ++c) {
      const int d = c * 32 + lane;
      if (d < s.Dv) stx(out, (bh * s.Lq + qi) * s.Dv + d, dto, acc[c] * inv);
    }
  }
}

#define ATTN_GENERIC(NCH)                                                                                       \
  extern "C" __global__ void k_attn_generic_##NCH(const void* q, const void* k, const void* v, int dt,         \
                                                  void* out, int dto, float scale, const void* mask, int dtm, \
                                                  AttnSpec s) {                                               \
    attn_generic<NCH>(q, k, v, dt, out, dto, scale, mask, dtm, s);                                            \
  }

ATTN_GENERIC(1)
ATTN_GENERIC(2)
ATTN_GENERIC(4)
ATTN_GENERIC(8)
ATTN_GENERIC(16)
ATTN_GENERIC(32)
