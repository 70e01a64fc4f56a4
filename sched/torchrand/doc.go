// Package torchrand reproduces PyTorch's random normal streams so that a
// seed given to sdxl-run yields the latents diffusers would draw.
//
// CPU is torch.Generator("cpu").manual_seed(s) followed by torch.randn:
// mt19937 (seeded from the low 32 bits), and ATen's normal kernel, which
// has three paths, all reproduced bit for bit:
//
//   - fewer than 16 elements: per-element double Box-Muller on 53-bit
//     uniforms (log1p, sin, cos), the sine half cached in the generator for
//     the next scalar draw;
//   - float32, 16 or more contiguous elements: 24-bit uniforms, then
//     Box-Muller on blocks of 16 (element j pairs with j+8) using the
//     AVX2 Cephes polynomials of avx_mathfun.h, with the fused
//     multiply-adds GCC contracts; a tail that is not a multiple of 16 is
//     redone as the last 16 elements from fresh uniforms;
//   - float16, 16 or more: the same blocks in c10::Half arithmetic, with
//     11-bit uniforms and every intermediate rounded to half precision.
//
// CUDA is torch.Generator("cuda"): cuRAND Philox4x32-10 with ATen's
// per-thread subsequences, grid-stride layout (curand_normal4, elements
// i, i+S, i+2S, i+3S per thread) and offset increments, so the stream
// continues across draws like torch's. The Philox words are exact; the
// float values use correctly rounded sin/cos/log where the GPU uses its
// special-function unit, so they differ from an H200's by at most about
// 1.5e-6 absolute (relative error ~2e-7 over a tensor; see
// TestCUDAStreamsGolden for the measured numbers).
//
// Every stream of golden/small/rng.safetensors is checked: all cpu.*
// streams (float32 and float16, sizes 7 to 65536, second draws) match
// torch 2.11 bit for bit; the cuda.* streams match within the bounds above.
package torchrand
