// flash.cu: fused attention for head size 64 with F16 or BF16 storage on
// tensor cores (WMMA 16x16x16, float32 accumulation), flash-attention
// style: scores exist only as one 16x32 tile per warp in shared memory, and
// the softmax is computed online (running max and sum per query row, the
// output accumulator rescaled when the max grows).
//
// Block: FL_WARPS warps, each owning 16 consecutive query rows (64 queries
// per block); grid (ceil(Lq/64), number of (batch, head) pairs). Each step
// stages FL_BK keys and values in shared memory, zero-filled past Lk (the
// scores of those keys are set to -inf, so they get weight 0, and their
// zero values keep the P·V product finite).
//
// Needs <mma.h> (NVRTC gets -I<cuda>/include) and compute capability 8.0
// for BF16 (7.0 for F16). The Go side puts the #include before the prelude.

using namespace nvcuda;

#define FL_WARPS 4
#define FL_BQ 64   // queries per block
#define FL_BK 32   // keys per step
#define FL_D 64    // head size
#define FL_KLD 72  // row stride of the K and V tiles (elements; multiple of 8)
#define FL_SLD 36  // row stride of a warp's score tile (floats; multiple of 4)
#define FL_PLD 40  // row stride of a warp's probability tile (elements)
#define FL_OLD 64  // row stride of a warp's output accumulator (floats)
#define FL_QLD 72  // row stride of the query staging area (elements)

template <typename T>
__device__ __forceinline__ float tof(T v);
template <>
__device__ __forceinline__ float tof<__half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float tof<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename T>
__device__ __forceinline__ T fromf(float v);
template <>
__device__ __forceinline__ __half fromf<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 fromf<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

template <typename T>
__device__ __forceinline__ void flash64(const T* q, const T* k, const T* v, T* out, float scale,
                                        const void* mask, int dtm, const AttnSpec& s) {
  __shared__ __align__(32) T Ks[FL_BK * FL_KLD];
  __shared__ __align__(32) T Vs[FL_BK * FL_KLD];
  __shared__ __align__(32) float Ss[FL_WARPS][16 * FL_SLD];
  __shared__ __align__(32) T Ps[FL_WARPS][16 * FL_PLD];
  __shared__ __align__(32) float Os[FL_WARPS][16 * FL_OLD];
  __shared__ float Mrow[FL_WARPS][16], Lrow[FL_WARPS][16], Arow[FL_WARPS][16];

  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const i64 bh = (i64)s.bh0 + blockIdx.y;
  const int qbase = blockIdx.x * FL_BQ + w * 16;
  const T zero = fromf<T>(0.0f);

  // Stage the warp's 16 query rows in its (not yet used) output area and
  // keep them in registers as A fragments for the whole key loop.
  T* Qs = reinterpret_cast<T*>(&Os[w][0]);
  for (int e = lane; e < 16 * FL_D; e += 32) {
    const int r = e / FL_D, c = e % FL_D;
    const int qi = qbase + r;
    Qs[r * FL_QLD + c] = qi < s.Lq ? q[(bh * s.Lq + qi) * FL_D + c] : zero;
  }
  __syncwarp();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> qf[4];
  for (int kk = 0; kk < 4; ++kk) wmma::load_matrix_sync(qf[kk], Qs + kk * 16, FL_QLD);
  __syncwarp();
  for (int e = lane; e < 16 * FL_OLD; e += 32) Os[w][e] = 0.0f;
  if (lane < 16) {
    Mrow[w][lane] = NEG_INF;
    Lrow[w][lane] = 0.0f;
  }
  // In the softmax step lane owns row r, columns hf*16 .. hf*16+15.
  const int r = lane >> 1, hf = lane & 1;
  const int qi = qbase + r;
  const bool qvalid = qi < s.Lq;
  i64 moff = 0;
  if (mask) moff = (bh / s.H) * s.mb + (bh % s.H) * s.mh + (i64)qi * s.mq;
  __syncwarp();

  for (int t0 = 0; t0 < s.Lk; t0 += FL_BK) {
    __syncthreads();  // every warp is done with the previous tile
    for (int e = threadIdx.x; e < FL_BK * FL_D; e += blockDim.x) {
      const int j = e / FL_D, c = e % FL_D;
      const bool ok = t0 + j < s.Lk;
      const i64 g = (bh * s.Lk + t0 + j) * FL_D + c;
      Ks[j * FL_KLD + c] = ok ? k[g] : zero;
      Vs[j * FL_KLD + c] = ok ? v[g] : zero;
    }
    __syncthreads();

    // S = Q K^T for 16 queries x FL_BK keys. K^T as a col-major B: element
    // (d, j) is Ks[j*FL_KLD + d].
    for (int nt = 0; nt < FL_BK / 16; ++nt) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> sf;
      wmma::fill_fragment(sf, 0.0f);
      for (int kk = 0; kk < FL_D / 16; ++kk) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> kf;
        wmma::load_matrix_sync(kf, Ks + nt * 16 * FL_KLD + kk * 16, FL_KLD);
        wmma::mma_sync(sf, qf[kk], kf, sf);
      }
      wmma::store_matrix_sync(&Ss[w][nt * 16], sf, FL_SLD, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax of the tile.
    float sv[16];
    float mx = NEG_INF;
    for (int c = 0; c < 16; ++c) {
      const int j = hf * 16 + c;
      float x = Ss[w][r * FL_SLD + j] * scale;
      if (t0 + j >= s.Lk) {
        x = NEG_INF;
      } else if (mask && qvalid) {
        x += ldx(mask, moff + (i64)(t0 + j) * s.mk, dtm);
      }
      sv[c] = x;
      mx = fmaxf(mx, x);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float mold = Mrow[w][r];
    const float mnew = fmaxf(mold, mx);
    float sum = 0.0f;
    for (int c = 0; c < 16; ++c) {
      const float p = (sv[c] == NEG_INF) ? 0.0f : expf(sv[c] - mnew);
      Ps[w][r * FL_PLD + hf * 16 + c] = fromf<T>(p);
      sum += p;
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    const float alpha = (mold == NEG_INF) ? 0.0f : expf(mold - mnew);
    __syncwarp();
    if (hf == 0) {
      Mrow[w][r] = mnew;
      Lrow[w][r] = Lrow[w][r] * alpha + sum;
      Arow[w][r] = alpha;
    }
    __syncwarp();
    for (int e = lane; e < 16 * FL_OLD; e += 32) Os[w][e] *= Arow[w][e / FL_OLD];
    __syncwarp();

    // O += P V: P [16 x FL_BK] (row-major A), V [FL_BK x 64] (row-major B).
    for (int nt = 0; nt < FL_D / 16; ++nt) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> of;
      wmma::load_matrix_sync(of, &Os[w][nt * 16], FL_OLD, wmma::mem_row_major);
      for (int kk = 0; kk < FL_BK / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pf;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> vf;
        wmma::load_matrix_sync(pf, &Ps[w][kk * 16], FL_PLD);
        wmma::load_matrix_sync(vf, Vs + kk * 16 * FL_KLD + nt * 16, FL_KLD);
        wmma::mma_sync(of, pf, vf, of);
      }
      wmma::store_matrix_sync(&Os[w][nt * 16], of, FL_OLD, wmma::mem_row_major);
    }
    __syncwarp();
  }

  for (int e = lane; e < 16 * FL_D; e += 32) {
    const int rr = e / FL_D, c = e % FL_D;
    const int qq = qbase + rr;
    if (qq < s.Lq) out[(bh * s.Lq + qq) * FL_D + c] = fromf<T>(Os[w][rr * FL_OLD + c] / Lrow[w][rr]);
  }
}

extern "C" __global__ void __launch_bounds__(128)
    k_flash64_f16(const __half* q, const __half* k, const __half* v, __half* out, float scale, const void* mask,
                  int dtm, AttnSpec s) {
  flash64<__half>(q, k, v, out, scale, mask, dtm, s);
}

extern "C" __global__ void __launch_bounds__(128)
    k_flash64_bf16(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v, __nv_bfloat16* out,
                   float scale, const void* mask, int dtm, AttnSpec s) {
  flash64<__nv_bfloat16>(q, k, v, out, scale, mask, dtm, s);
}
