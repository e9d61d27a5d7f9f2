#include "backend/cuda/gemm_w4a16.h"

#include <string>

#include "backend/cuda/device_types.cuh"

namespace specq::cuda {
namespace {

constexpr int kCols = 32;    // outputs per block: one per lane, so a warp reads 128 contiguous bytes of qweight
constexpr int kSlices = 8;   // warps per block, splitting the packed rows of K
constexpr int kTokens = 8;   // tokens per block (grid.y covers the rest)
static_assert(kTokens == kSlices, "the reduction gives each warp one token");

__device__ __forceinline__ float load_scale(const void* scales, bool bf16, size_t i) {
  return bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(scales)[i])
              : __half2float(static_cast<const __half*>(scales)[i]);
}

// kWordGroups: every packed word lies in one group (no g_idx, group_size % 8 == 0), so the scale
// and zero are loaded once per word; otherwise per input, through g_idx when there is one.
template <typename Act, bool kWordGroups>
__global__ void __launch_bounds__(kCols* kSlices)
    w4a16_kernel(W4A16Weight w, const Act* __restrict__ x, int m, const float* __restrict__ bias, void* y,
                 bool y_fp32) {
  __shared__ float partial[kSlices][kTokens][kCols];
  const int lane = threadIdx.x, slice = threadIdx.y;
  const int n = blockIdx.x * kCols + lane;
  const int t0 = blockIdx.y * kTokens;
  const int tokens = min(kTokens, m - t0);
  const bool bf16_scales = w.scale_dtype == DType::BF16;
  const int zero_shift = 4 * (n % 8), zero_words = w.n / 8;

  float acc[kTokens];
#pragma unroll
  for (int t = 0; t < kTokens; ++t) acc[t] = 0.0f;

  if (n < w.n) {
    const int words = w.k / 8;
    for (int r = slice; r < words; r += kSlices) {
      const uint32_t packed = __ldg(w.qweight + size_t(r) * w.n + n);
      float wv[8];
      if constexpr (kWordGroups) {
        const int g = (8 * r) / w.group_size;
        const float s = load_scale(w.scales, bf16_scales, size_t(g) * w.n + n);
        const int z = int((__ldg(w.qzeros + size_t(g) * zero_words + n / 8) >> zero_shift) & 15u) + w.zero_offset;
#pragma unroll
        for (int j = 0; j < 8; ++j) wv[j] = float(int((packed >> (4 * j)) & 15u) - z) * s;
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const int kk = 8 * r + j;
          const int g = w.g_idx != nullptr ? __ldg(w.g_idx + kk) : kk / w.group_size;
          const float s = load_scale(w.scales, bf16_scales, size_t(g) * w.n + n);
          const int z = int((__ldg(w.qzeros + size_t(g) * zero_words + n / 8) >> zero_shift) & 15u) + w.zero_offset;
          wv[j] = float(int((packed >> (4 * j)) & 15u) - z) * s;
        }
      }
#pragma unroll
      for (int t = 0; t < kTokens; ++t) {
        if (t < tokens) {
          // Every lane reads the same 16 bytes: one broadcast transaction per token.
          const uint4 raw = __ldg(reinterpret_cast<const uint4*>(x + size_t(t0 + t) * w.k + 8 * r));
          float xv[8];
          unpack8<Act>(raw, xv);
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[t] = fmaf(wv[j], xv[j], acc[t]);
        }
      }
    }
  }
#pragma unroll
  for (int t = 0; t < kTokens; ++t) partial[slice][t][lane] = acc[t];
  __syncthreads();
  const int t = slice;  // warp `slice` sums the slices of token t0 + slice
  if (n < w.n && t < tokens) {
    float sum = bias != nullptr ? bias[n] : 0.0f;
#pragma unroll
    for (int s = 0; s < kSlices; ++s) sum += partial[s][t][lane];
    const size_t i = size_t(t0 + t) * w.n + n;
    if (y_fp32) static_cast<float*>(y)[i] = sum;
    else static_cast<Act*>(y)[i] = from_f32<Act>(sum);
  }
}

void require(bool ok, const std::string& what) {
  if (!ok) fail_message("gemm_w4a16: " + what);
}

}  // namespace

void gemm_w4a16(const W4A16Weight& w, const void* x, DType act, int m, const float* bias, void* y, bool y_fp32,
                cudaStream_t stream) {
  require(m >= 1, "needs at least one token (got " + std::to_string(m) + ")");
  require(w.n > 0 && w.k > 0 && w.n % 8 == 0 && w.k % 8 == 0,
          "n and k must be positive multiples of 8 (got " + std::to_string(w.n) + " x " + std::to_string(w.k) + ")");
  require(w.group_size > 0 && w.k % w.group_size == 0,
          "group size " + std::to_string(w.group_size) + " does not divide k = " + std::to_string(w.k));
  require(w.zero_offset == 0 || w.zero_offset == 1, "zero offset must be 0 or 1");
  require(w.scale_dtype == DType::F16 || w.scale_dtype == DType::BF16, "scales must be f16 or bf16");
  require(w.qweight != nullptr && w.qzeros != nullptr && w.scales != nullptr && x != nullptr && y != nullptr,
          "null pointer");
  require(reinterpret_cast<uintptr_t>(x) % 16 == 0, "activations must be 16-byte aligned");
  const bool word_groups = w.g_idx == nullptr && w.group_size % 8 == 0;
  const dim3 block(kCols, kSlices);
  const dim3 grid(unsigned(ceil_div(w.n, kCols)), unsigned(ceil_div(m, kTokens)));
  require(grid.y <= 65535u, "too many tokens (" + std::to_string(m) + ")");
  dispatch_act(act, [&](auto tag) {
    using Act = decltype(tag);
    const Act* xa = static_cast<const Act*>(x);
    if (word_groups) w4a16_kernel<Act, true><<<grid, block, 0, stream>>>(w, xa, m, bias, y, y_fp32);
    else w4a16_kernel<Act, false><<<grid, block, 0, stream>>>(w, xa, m, bias, y, y_fp32);
    SPECQ_CUDA_LAUNCHED();
  });
}

}  // namespace specq::cuda
