// Weight-streaming GEMV for a few tokens (decode and small verify steps): y = x W^T with W read
// once for all n tokens. At batch 1 this is the whole decode cost, so the kernel is built to keep
// the memory system busy: 16-byte streaming loads, several per thread in flight, fp32 accumulation.
#include "backend/cuda/device_types.cuh"
#include "backend/cuda/kernels.h"

namespace specq::cuda {
namespace {

constexpr int kGemvThreads = 256;
constexpr int kRowsPerBlock = 4;  // x loads are shared by this many weight rows
constexpr int kUnroll = 2;        // 16-byte chunks per row a thread loads before using them

// Weight bytes are read exactly once: stream them past L1 (evict-first) so x stays cached.
__device__ __forceinline__ uint4 load_streaming(const uint4* p) { return __ldcs(p); }

// The weight row that slot r of this block reads. Plain: kRowsPerBlock consecutive rows. SwiGLU
// (rows = 2 * inter): gate rows 2b, 2b+1 and the matching up rows inter + 2b, inter + 2b + 1.
template <bool kSwiglu>
__device__ __forceinline__ int block_row(int r, int rows) {
  if constexpr (kSwiglu) return (r < 2 ? 0 : rows / 2) + 2 * int(blockIdx.x) + (r & 1);
  return int(blockIdx.x) * kRowsPerBlock + r;
}

template <typename T, typename OutT, int NT, bool kVector, bool kSwiglu>
__global__ void __launch_bounds__(kGemvThreads) gemv_kernel(const T* __restrict__ w, const T* __restrict__ x,
                                                            const float* __restrict__ bias, OutT* __restrict__ y,
                                                            int rows, int cols) {
  chain_start();
  float acc[kRowsPerBlock][NT];
#pragma unroll
  for (int r = 0; r < kRowsPerBlock; ++r)
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[r][t] = 0.0f;

  if constexpr (kVector) {  // cols % 8 == 0: every row starts 16-byte aligned
    const int chunks = cols / 8;
    for (int c0 = threadIdx.x; c0 < chunks; c0 += kGemvThreads * kUnroll) {
      uint4 wv[kUnroll][kRowsPerBlock];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int c = c0 + u * kGemvThreads;
#pragma unroll
        for (int r = 0; r < kRowsPerBlock; ++r) {
          const int row = block_row<kSwiglu>(r, rows);
          wv[u][r] = (c < chunks && row < rows)
                         ? load_streaming(reinterpret_cast<const uint4*>(w + int64_t(row) * cols) + c)
                         : make_uint4(0, 0, 0, 0);
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int c = c0 + u * kGemvThreads;
        if (c >= chunks) break;
        float wf[kRowsPerBlock][8];
#pragma unroll
        for (int r = 0; r < kRowsPerBlock; ++r) unpack8<T>(wv[u][r], wf[r]);
#pragma unroll
        for (int t = 0; t < NT; ++t) {
          float xf[8];
          unpack8<T>(__ldg(reinterpret_cast<const uint4*>(x + int64_t(t) * cols) + c), xf);
#pragma unroll
          for (int r = 0; r < kRowsPerBlock; ++r)
#pragma unroll
            for (int i = 0; i < 8; ++i) acc[r][t] = fmaf(wf[r][i], xf[i], acc[r][t]);
        }
      }
    }
  } else {  // any width: one element at a time
    for (int k = threadIdx.x; k < cols; k += kGemvThreads) {
#pragma unroll
      for (int r = 0; r < kRowsPerBlock; ++r) {
        const int row = block_row<kSwiglu>(r, rows);
        if (row >= rows) continue;
        const float wk = to_f32<T>(w[int64_t(row) * cols + k]);
#pragma unroll
        for (int t = 0; t < NT; ++t) acc[r][t] = fmaf(wk, to_f32<T>(x[int64_t(t) * cols + k]), acc[r][t]);
      }
    }
  }

  // Sum each accumulator over the block: warp shuffles, then one value per warp in shared memory.
  __shared__ float partial[kGemvThreads / 32][kRowsPerBlock * NT];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int r = 0; r < kRowsPerBlock; ++r)
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      float v = acc[r][t];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == 0) partial[warp][r * NT + t] = v;
    }
  __syncthreads();
  if constexpr (kSwiglu) {
    if (threadIdx.x < 2 * NT) {  // slot r in {0, 1}: gate in slot r, up in slot r + 2
      const int r = threadIdx.x / NT, t = threadIdx.x % NT;
      float gate = 0.0f, up = 0.0f;
#pragma unroll
      for (int i = 0; i < kGemvThreads / 32; ++i) {
        gate += partial[i][r * NT + t];
        up += partial[i][(r + 2) * NT + t];
      }
      const int inter = rows / 2;
      y[int64_t(t) * inter + 2 * blockIdx.x + r] = from_f32<OutT>(gate / (1.0f + expf(-gate)) * up);
    }
  } else if (threadIdx.x < kRowsPerBlock * NT) {
    const int r = threadIdx.x / NT, t = threadIdx.x % NT;
    const int row = block_row<false>(r, rows);
    if (row < rows) {
      float sum = bias != nullptr ? bias[row] : 0.0f;
#pragma unroll
      for (int i = 0; i < kGemvThreads / 32; ++i) sum += partial[i][threadIdx.x];
      y[int64_t(t) * rows + row] = from_f32<OutT>(sum);
    }
  }
}

template <typename T, typename OutT, int NT, bool kSwiglu>
void launch(const T* w, const T* x, const float* bias, OutT* y, int rows, int cols, cudaStream_t stream) {
  const int grid = kSwiglu ? rows / 4 : ceil_div(rows, kRowsPerBlock);
  if (cols % 8 == 0)
    launch_chained(gemv_kernel<T, OutT, NT, true, kSwiglu>, dim3(unsigned(grid)), dim3(kGemvThreads), 0, stream, w, x,
                   bias, y, rows, cols);
  else
    launch_chained(gemv_kernel<T, OutT, NT, false, kSwiglu>, dim3(unsigned(grid)), dim3(kGemvThreads), 0, stream, w,
                   x, bias, y, rows, cols);
}

template <typename T, typename OutT, bool kSwiglu = false>
void launch_n(int n, const T* w, const T* x, const float* bias, OutT* y, int rows, int cols, cudaStream_t stream) {
  switch (n) {
    case 1: return launch<T, OutT, 1, kSwiglu>(w, x, bias, y, rows, cols, stream);
    case 2: return launch<T, OutT, 2, kSwiglu>(w, x, bias, y, rows, cols, stream);
    case 3: return launch<T, OutT, 3, kSwiglu>(w, x, bias, y, rows, cols, stream);
    case 4: return launch<T, OutT, 4, kSwiglu>(w, x, bias, y, rows, cols, stream);
    case 5: return launch<T, OutT, 5, kSwiglu>(w, x, bias, y, rows, cols, stream);
    case 6: return launch<T, OutT, 6, kSwiglu>(w, x, bias, y, rows, cols, stream);
    case 7: return launch<T, OutT, 7, kSwiglu>(w, x, bias, y, rows, cols, stream);
    case 8: return launch<T, OutT, 8, kSwiglu>(w, x, bias, y, rows, cols, stream);
    default: fail_message("gemv handles 1..8 tokens (got " + std::to_string(n) + ")");
  }
}

}  // namespace

void gemv(const void* w, const void* x, const float* bias, void* y, bool y_fp32, DType act, int n, int rows, int cols,
          cudaStream_t stream) {
  dispatch_act(act, [&](auto t) {
    using T = decltype(t);
    const T* wt = static_cast<const T*>(w);
    const T* xt = static_cast<const T*>(x);
    if (y_fp32) launch_n<T, float>(n, wt, xt, bias, static_cast<float*>(y), rows, cols, stream);
    else launch_n<T, T>(n, wt, xt, bias, static_cast<T*>(y), rows, cols, stream);
  });
  SPECQ_CUDA_LAUNCHED();
}

void gemv_swiglu(const void* w, const void* x, void* ffn, DType act, int n, int inter, int cols, cudaStream_t stream) {
  if (inter % 2 != 0) fail_message("gemv_swiglu needs an even intermediate size (got " + std::to_string(inter) + ")");
  dispatch_act(act, [&](auto t) {
    using T = decltype(t);
    launch_n<T, T, true>(n, static_cast<const T*>(w), static_cast<const T*>(x), nullptr, static_cast<T*>(ffn),
                         2 * inter, cols, stream);
  });
  SPECQ_CUDA_LAUNCHED();
}

}  // namespace specq::cuda
