// Package cuda is the GPU tensor.Backend: pure Go (no cgo) on top of the
// CUDA driver API, cuBLAS and NVRTC, loaded at run time with purego
// (libcuda.so.1, libcublas.so.13 or .12, libnvrtc.so.13 or .12, searched in
// $SDXL_CUDA_LIBDIR, $CUDA_HOME/lib64, /usr/local/cuda/lib64 and the loader
// path). A binary built with CGO_ENABLED=0 on any Linux machine runs on a
// GPU machine without a Go toolchain; without a GPU, New returns an error
// wrapping ErrUnavailable ("CUDA unavailable: <why>").
//
// Design:
//
//   - Threading: a CUDA context is current per OS thread, so one goroutine
//     locked to its thread owns the device; ops check shapes on the
//     caller's goroutine and queue closures to it (backend.go).
//   - Memory: a caching pool with size classes on one stream (pool.go);
//     Free and garbage-collected tensors return blocks to it; PeakBytes and
//     MemStats account for it.
//   - Kernels: CUDA C in kernels/*.cu, embedded with go:embed and compiled
//     by NVRTC at first use for the device's architecture (a CUBIN), cached
//     in memory and on disk under os.UserCacheDir. Storage may be F32, F16
//     or BF16; arithmetic, reductions, norms and softmax are float32.
//   - GEMMs (MatMul, Linear, Conv2D via im2col, GEMM attention): cuBLAS
//     cublasGemmEx / cublasGemmStridedBatchedEx with CUBLAS_COMPUTE_32F;
//     row-major tensors map onto cuBLAS's column-major convention by
//     swapping the operands (gemmplan.go).
//   - Attention: a tensor-core flash-attention kernel (WMMA, online softmax)
//     for head size 64 in F16/BF16, a generic fused float32 kernel for head
//     sizes up to 1024, and a chunked cuBLAS path for large heads (the VAE);
//     none materialises the full score matrix.
//   - Norms: LayerNorm and softmax run a block per row sized to the row;
//     GroupNorm splits large groups over several blocks (partial statistics
//     combined in double precision, deterministically) so that SDXL's 32
//     groups fill the GPU.
//   - Noise: TorchGenerator (and TorchRandn) draws torch.randn on a CUDA
//     generator on the device: cuRAND's Philox4x32-10 and Box-Muller with
//     the GPU's own __sincosf and logf, in ATen's thread layout for the
//     device's SM count, so the values are torch's bit for bit.
//
// Testing without a GPU: testdata/emu is an emulator that compiles the
// kernel sources with g++ and runs them on the CPU (each CUDA thread a
// fiber), emulates cuBLAS and checks every launch and access; the
// conformance suite, the attention and chunked paths, torch's noise streams
// and the golden tiny and small SDXL pipelines run on it.
//
// Errors: shape errors panic (as on every backend); device failures are
// recorded, the first one is returned by Err, Sync and Close, and later ops
// are skipped instead of crashing the process. Every CUDA failure is an
// *Error naming the op, the library call and the result name.
package cuda
