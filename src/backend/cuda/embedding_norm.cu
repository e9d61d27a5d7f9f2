// Embedding gather and the fused residual add + RMSNorm. The residual stream x stays fp32; the
// normalised output is the activation dtype that the next linear layer reads.
#include "backend/cuda/device_types.cuh"
#include "backend/cuda/kernels.h"

namespace specq::cuda {
namespace {

template <typename T>
__global__ void embed_kernel(const T* table, const int32_t* tokens, int hidden, float* x) {
  const T* row = table + int64_t(tokens[blockIdx.x]) * hidden;
  float* out = x + int64_t(blockIdx.x) * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) out[i] = to_f32<T>(row[i]);
}

constexpr int kNormThreads = 512;

template <typename T>
__global__ void __launch_bounds__(kNormThreads) add_rmsnorm_kernel(float* x, const T* delta, const float* w, float eps,
                                                                   T* out, int dim) {
  float* row = x + int64_t(blockIdx.x) * dim;
  const T* d = delta != nullptr ? delta + int64_t(blockIdx.x) * dim : nullptr;
  float sum = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    float v = row[i];
    if (d != nullptr) {
      v += to_f32<T>(d[i]);
      row[i] = v;
    }
    sum += v * v;
  }
  __shared__ float partial[kNormThreads / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = sum;
  __syncthreads();
  float total = 0.0f;
  for (int i = 0; i < int(blockDim.x) / 32; ++i) total += partial[i];
  const float r = 1.0f / sqrtf(total / float(dim) + eps);
  T* o = out + int64_t(blockIdx.x) * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = from_f32<T>(row[i] * r * w[i]);
}

}  // namespace

void embed(const void* table, DType act, const int32_t* tokens, int n, int hidden, float* x, cudaStream_t stream) {
  dispatch_act(act, [&](auto t) {
    using T = decltype(t);
    embed_kernel<T><<<n, 256, 0, stream>>>(static_cast<const T*>(table), tokens, hidden, x);
  });
  SPECQ_CUDA_LAUNCHED();
}

void add_rmsnorm(float* x, const void* delta, const float* w, float eps, void* out, DType act, int n, int dim,
                 cudaStream_t stream) {
  dispatch_act(act, [&](auto t) {
    using T = decltype(t);
    add_rmsnorm_kernel<T><<<n, kNormThreads, 0, stream>>>(x, static_cast<const T*>(delta), w, eps,
                                                          static_cast<T*>(out), dim);
  });
  SPECQ_CUDA_LAUNCHED();
}

}  // namespace specq::cuda
