// W4A16 linear on the device: GptqInt4 weights (docs/FORMATS.md) in the checkpoint's own AutoGPTQ
// layout, dequantized inside the kernel, fp16/bf16 activations, fp32 accumulation.
// A first, plain-FMA kernel (no tensor cores): each weight word is read once per 8 tokens, so it
// is bandwidth-bound near 1 token and compute-bound at large token counts; the tree-verification
// kernel of issue #5 (mma/wgmma, Marlin-style repacking) is the next step.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace specq::cuda {

// Device pointers to one GptqInt4 matrix of logical shape [n, k].
struct W4A16Weight {
  const uint32_t* qweight = nullptr;  // [k / 8, n]
  const uint32_t* qzeros = nullptr;   // [k / group_size, n / 8]
  const void* scales = nullptr;       // [k / group_size, n] of scale_dtype
  DType scale_dtype = DType::F16;     // F16 or BF16
  const int32_t* g_idx = nullptr;     // [k], or null when the group of input k is k / group_size
  int n = 0, k = 0;
  int group_size = 0;                 // k for per-channel
  int zero_offset = 1;                // 1: v1 "gptq" zeros (stored minus one), 0: gptq_v2
};

// y[t, o] = sum_k x[t, k] W[o, k] (+ bias[o]) for t < m. x is [m, k] of `act` (F16 or BF16), rows
// 16-byte aligned; y is [m, n], fp32 when y_fp32, else `act`. Any m >= 1; act-order honours g_idx.
void gemm_w4a16(const W4A16Weight& w, const void* x, DType act, int m, const float* bias, void* y, bool y_fp32,
                cudaStream_t stream);

}  // namespace specq::cuda
