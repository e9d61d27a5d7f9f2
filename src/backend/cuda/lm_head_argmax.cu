// Argmax of each logits row on the device, so greedy decoding needs no logits on the host.
#include <cfloat>

#include "backend/cuda/device_types.cuh"
#include "backend/cuda/kernels.h"

namespace specq::cuda {
namespace {

constexpr int kArgmaxThreads = 1024;

// Keeps the larger value; on a tie the smaller index (the CPU reference's rule).
__device__ __forceinline__ void take_better(float& best, int& best_index, float value, int index) {
  if (value > best || (value == best && index < best_index)) {
    best = value;
    best_index = index;
  }
}

__global__ void __launch_bounds__(kArgmaxThreads) argmax_kernel(const float* logits, int vocab, int32_t* out) {
  chain_start();
  const float* row = logits + int64_t(blockIdx.x) * vocab;
  float best = -FLT_MAX;
  int best_index = vocab;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) take_better(best, best_index, row[i], i);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, best, o);
    const int other_index = __shfl_xor_sync(0xffffffffu, best_index, o);
    take_better(best, best_index, other, other_index);
  }
  __shared__ float values[kArgmaxThreads / 32];
  __shared__ int indices[kArgmaxThreads / 32];
  if (threadIdx.x % 32 == 0) {
    values[threadIdx.x / 32] = best;
    indices[threadIdx.x / 32] = best_index;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < int(blockDim.x) / 32; ++w) take_better(best, best_index, values[w], indices[w]);
    out[blockIdx.x] = best_index < vocab ? best_index : 0;
  }
}

}  // namespace

void argmax_rows(const float* logits, int rows, int vocab, int32_t* out, cudaStream_t stream) {
  if (rows == 0) return;
  launch_chained(argmax_kernel, dim3(unsigned(rows)), dim3(kArgmaxThreads), 0, stream, logits, vocab, out);
  SPECQ_CUDA_LAUNCHED();
}

}  // namespace specq::cuda
