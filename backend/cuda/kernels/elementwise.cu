// elementwise.cu: memory-bound kernels (one thread per output element, grid-
// stride loops). Every kernel reads and writes through ldx/stx, so inputs
// and outputs may have any storage dtype; arithmetic is float32. Kernels
// that split a linear index into coordinates take wide: 0 when the index
// space has fewer than 2^32 elements, so that they divide in 32 bits (64-bit
// division is a long software sequence on the GPU).

// Binary ops of k_binary.
#define BIN_ADD 0
#define BIN_MUL 1

// k_binary: out[i] = a[oa(i)] op b[ob(i)] over the broadcast index space d
// (out is dense, i its linear index).
extern "C" __global__ void k_binary(i64 n, int rank, Dims d, const void* a, int dta, const void* b, int dtb,
                                    void* out, int dto, int op, int wide) {
  GRID_STRIDE(i, n) {
    i64 oa, ob;
    if (wide) {
      offsets(i, rank, d, oa, ob);
    } else {
      offsets32((u32)i, rank, d, oa, ob);
    }
    const float x = ldx(a, oa, dta), y = ldx(b, ob, dtb);
    stx(out, i, dto, op == BIN_ADD ? x + y : x * y);
  }
}

// Unary ops of k_unary.
#define UN_COPY 0
#define UN_SCALE 1
#define UN_SILU 2
#define UN_GELU 3
#define UN_QUICKGELU 4

// k_unary: out[i] = f(x[i]) for a dense tensor (also the dtype cast).
extern "C" __global__ void k_unary(i64 n, const void* x, int dtx, void* out, int dto, int op, float s) {
  GRID_STRIDE(i, n) {
    const float v = ldx(x, i, dtx);
    float r;
    switch (op) {
      case UN_SCALE:
        r = v * s;
        break;
      case UN_SILU:
        r = v * sigmoidf_(v);
        break;
      case UN_GELU:
        r = gelu_erf(v);
        break;
      case UN_QUICKGELU:
        r = v * sigmoidf_(1.702f * v);
        break;
      default:
        r = v;
    }
    stx(out, i, dto, r);
  }
}

// k_geglu: x is [rows, 2d]; out[r, c] = x[r, c] * gelu(x[r, d + c]).
extern "C" __global__ void k_geglu(i64 n, i64 d, const void* x, int dtx, void* out, int dto, int wide) {
  GRID_STRIDE(i, n) {
    const i64 r = wide ? i / d : (i64)((u32)i / (u32)d), c = i - r * d;
    const float a = ldx(x, r * 2 * d + c, dtx);
    const float g = ldx(x, r * 2 * d + d + c, dtx);
    stx(out, i, dto, a * gelu_erf(g));
  }
}

// k_copy: out[ob(i)] = in[oa(i)] over the index space d (Permute, Slice,
// Concat); the value passes through float32, which is exact for every
// dtype pair that does not narrow.
extern "C" __global__ void k_copy(i64 n, int rank, Dims d, const void* in, int dti, void* out, int dto, int wide) {
  GRID_STRIDE(i, n) {
    i64 oi, oo;
    if (wide) {
      offsets(i, rank, d, oi, oo);
    } else {
      offsets32((u32)i, rank, d, oi, oo);
    }
    stx(out, oo, dto, ldx(in, oi, dti));
  }
}

// nearest_src is PyTorch's "nearest" source index (tensor.NearestIndex):
// the float32 scale in/out, src = min(floor(dst*scale), in-1). NVRTC's
// default IEEE division and multiplication reproduce torch's float math.
__device__ __forceinline__ int nearest_src(int dst, int in, int out) {
  if (out == in) return dst;
  if (out == 2 * in) return dst >> 1;
  const float scale = (float)in / (float)out;
  const int s = (int)((float)dst * scale);
  return s < in - 1 ? s : in - 1;
}

// k_upsample: x [NC, H, W] -> out [NC, h, w], nearest neighbour.
extern "C" __global__ void k_upsample(i64 n, int H, int W, int h, int w, const void* x, int dtx, void* out,
                                      int dto, int wide) {
  GRID_STRIDE(i, n) {
    i64 j;
    int ox, oy;
    if (wide) {
      j = i;
      ox = (int)(j % w);
      j /= w;
      oy = (int)(j % h);
      j /= h;
    } else {
      u32 k = (u32)i, q = k / (u32)w;
      ox = (int)(k - q * (u32)w);
      k = q;
      q = k / (u32)h;
      oy = (int)(k - q * (u32)h);
      j = q;
    }
    const int sy = nearest_src(oy, H, h), sx = nearest_src(ox, W, w);
    stx(out, i, dto, ldx(x, (j * H + sy) * (i64)W + sx, dtx));
  }
}

// k_embedding: out[r, c] = table[ids[r], c] for table [V, d].
extern "C" __global__ void k_embedding(i64 n, i64 d, const int* ids, const void* table, int dtt, void* out,
                                       int dto) {
  GRID_STRIDE(i, n) {
    const i64 r = i / d, c = i - r * d;
    stx(out, i, dto, ldx(table, (i64)ids[r] * d + c, dtt));
  }
}

// k_mean: x viewed as [outer, A, inner] -> out [outer, inner], the mean
// over A accumulated in double (Mean is not hot; exactness is).
extern "C" __global__ void k_mean(i64 n, i64 A, i64 inner, const void* x, int dtx, void* out, int dto) {
  GRID_STRIDE(i, n) {
    const i64 o = i / inner, j = i - o * inner;
    const i64 base = o * A * inner + j;
    double s = 0.0;
    for (i64 a = 0; a < A; ++a) s += (double)ldx(x, base + a * inner, dtx);
    stx(out, i, dto, (float)(s / (double)A));
  }
}

// k_bias_fill: out[i] = bias[(i / inner) % C], the initial C of a GEMM with
// beta = 1 (Conv2D: [N, C, inner]; Linear: [rows, C] with inner 1).
extern "C" __global__ void k_bias_fill(i64 n, i64 inner, i64 C, const void* bias, int dtb, void* out, int dto,
                                       int wide) {
  GRID_STRIDE(i, n) {
    const i64 c = wide ? (i / inner) % C : (i64)((u32)i / (u32)inner % (u32)C);
    stx(out, i, dto, ldx(bias, c, dtb));
  }
}

// k_im2col: for one image x [C, H, W], fills col [C*kh*kw, P] with the
// receptive fields of output positions p0 .. p0+P-1 (row-major over
// [Ho, Wo]); padding reads as zero. The grid is two-dimensional: y strides
// over the rows r = (c*kh + ki)*kw + kj, x over the positions, so a thread
// splits r once per row and divides only the position per element, in 32
// bits (the Go side keeps C*H*W, P and p0 + P below 2^31).
extern "C" __global__ void k_im2col(int rows, int C, int H, int W, int kh, int kw, int stride, int pad, int Wo,
                                    int p0, int P, const void* x, int dtx, void* col, int dtc) {
  for (int r = blockIdx.y; r < rows; r += gridDim.y) {
    const int kj = r % kw, t = r / kw;
    const int ki = t % kh, c = t / kh;
    const i64 xBase = (i64)c * H * W, rowBase = (i64)r * P;
    for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < P; q += gridDim.x * blockDim.x) {
      const u32 p = (u32)(p0 + q);
      const u32 oy = p / (u32)Wo;
      const int ox = (int)(p - oy * (u32)Wo);
      const int iy = (int)oy * stride - pad + ki, ix = ox * stride - pad + kj;
      float v = 0.0f;
      if (iy >= 0 && iy < H && ix >= 0 && ix < W) v = ldx(x, xBase + (i64)iy * W + ix, dtx);
      stx(col, rowBase + q, dtc, v);
    }
  }
}
