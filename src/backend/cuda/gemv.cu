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

template <typename T, typename OutT, int NT, bool kVector>
__global__ void __launch_bounds__(kGemvThreads) gemv_kernel(const T* __restrict__ w, const T* __restrict__ x,
                                                            const float* __restrict__ bias, OutT* __restrict__ y,
                                                            int rows, int cols) {
  const int row0 = blockIdx.x * kRowsPerBlock;
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
          wv[u][r] = (c < chunks && row0 + r < rows)
                         ? load_streaming(reinterpret_cast<const uint4*>(w + int64_t(row0 + r) * cols) + c)
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
        if (row0 + r >= rows) continue;
        const float wk = to_f32<T>(w[int64_t(row0 + r) * cols + k]);
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
  if (threadIdx.x < kRowsPerBlock * NT) {
    const int r = threadIdx.x / NT, t = threadIdx.x % NT;
    if (row0 + r < rows) {
      float sum = bias != nullptr ? bias[row0 + r] : 0.0f;
#pragma unroll
      for (int i = 0; i < kGemvThreads / 32; ++i) sum += partial[i][threadIdx.x];
      y[int64_t(t) * rows + row0 + r] = from_f32<OutT>(sum);
    }
  }
}

template <typename T, typename OutT, int NT>
void launch(const T* w, const T* x, const float* bias, OutT* y, int rows, int cols, cudaStream_t stream) {
  const int grid = ceil_div(rows, kRowsPerBlock);
  if (cols % 8 == 0)
    gemv_kernel<T, OutT, NT, true><<<grid, kGemvThreads, 0, stream>>>(w, x, bias, y, rows, cols);
  else
    gemv_kernel<T, OutT, NT, false><<<grid, kGemvThreads, 0, stream>>>(w, x, bias, y, rows, cols);
}

template <typename T, typename OutT>
void launch_n(int n, const T* w, const T* x, const float* bias, OutT* y, int rows, int cols, cudaStream_t stream) {
  switch (n) {
    case 1: return launch<T, OutT, 1>(w, x, bias, y, rows, cols, stream);
    case 2: return launch<T, OutT, 2>(w, x, bias, y, rows, cols, stream);
    case 3: return launch<T, OutT, 3>(w, x, bias, y, rows, cols, stream);
    case 4: return launch<T, OutT, 4>(w, x, bias, y, rows, cols, stream);
    case 5: return launch<T, OutT, 5>(w, x, bias, y, rows, cols, stream);
    case 6: return launch<T, OutT, 6>(w, x, bias, y, rows, cols, stream);
    case 7: return launch<T, OutT, 7>(w, x, bias, y, rows, cols, stream);
    case 8: return launch<T, OutT, 8>(w, x, bias, y, rows, cols, stream);
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

}  // namespace specq::cuda
