// Embedding gather and the fused residual add + RMSNorm. The residual stream x stays fp32; the
// normalised output is the activation dtype that the next linear layer reads.
#include "backend/cuda/device_types.cuh"
#include "backend/cuda/kernels.h"

namespace specq::cuda {
namespace {

template <typename T>
__global__ void embed_kernel(const T* table, const int32_t* tokens, int hidden, float* x) {
  chain_start();
  const T* row = table + int64_t(tokens[blockIdx.x]) * hidden;
  float* out = x + int64_t(blockIdx.x) * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) out[i] = to_f32<T>(row[i]);
}

constexpr int kNormThreads = 512;

constexpr int kNormChunks = 2;  // 8-element chunks per thread held in registers: dim <= 8192

__device__ __forceinline__ float block_sum(float v) {
  __shared__ float partial[kNormThreads / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  float total = 0.0f;
  for (int i = 0; i < int(blockDim.x) / 32; ++i) total += partial[i];
  return total;
}

// Rows of dim % 8 == 0 up to 8192: every load is issued at once (16-byte vectors) and the row
// stays in registers between the sum and the scaling, so a row costs one memory round trip
// (the strided loop below costs several, which at one token is most of the kernel's time).
template <typename T>
__global__ void __launch_bounds__(kNormThreads) add_rmsnorm_vector_kernel(float* x, const T* delta, const float* w,
                                                                          float eps, T* out, int dim) {
  chain_start();
  float* row = x + int64_t(blockIdx.x) * dim;
  const T* d = delta != nullptr ? delta + int64_t(blockIdx.x) * dim : nullptr;
  float v[kNormChunks][8], wv[kNormChunks][8];
  float sum = 0.0f;
#pragma unroll
  for (int c = 0; c < kNormChunks; ++c) {
    const int i = (c * kNormThreads + int(threadIdx.x)) * 8;
    if (i >= dim) continue;
    const float4 a = *reinterpret_cast<const float4*>(row + i), b = *reinterpret_cast<const float4*>(row + i + 4);
    const float4 wa = *reinterpret_cast<const float4*>(w + i), wb = *reinterpret_cast<const float4*>(w + i + 4);
    float dv[8] = {};
    if (d != nullptr) unpack8<T>(*reinterpret_cast<const uint4*>(d + i), dv);
    v[c][0] = a.x + dv[0], v[c][1] = a.y + dv[1], v[c][2] = a.z + dv[2], v[c][3] = a.w + dv[3];
    v[c][4] = b.x + dv[4], v[c][5] = b.y + dv[5], v[c][6] = b.z + dv[6], v[c][7] = b.w + dv[7];
    wv[c][0] = wa.x, wv[c][1] = wa.y, wv[c][2] = wa.z, wv[c][3] = wa.w;
    wv[c][4] = wb.x, wv[c][5] = wb.y, wv[c][6] = wb.z, wv[c][7] = wb.w;
    if (d != nullptr) {
      *reinterpret_cast<float4*>(row + i) = make_float4(v[c][0], v[c][1], v[c][2], v[c][3]);
      *reinterpret_cast<float4*>(row + i + 4) = make_float4(v[c][4], v[c][5], v[c][6], v[c][7]);
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) sum += v[c][j] * v[c][j];
  }
  const float r = 1.0f / sqrtf(block_sum(sum) / float(dim) + eps);
  T* o = out + int64_t(blockIdx.x) * dim;
#pragma unroll
  for (int c = 0; c < kNormChunks; ++c) {
    const int i = (c * kNormThreads + int(threadIdx.x)) * 8;
    if (i >= dim) continue;
    uint4 packed;
    T* e = reinterpret_cast<T*>(&packed);
#pragma unroll
    for (int j = 0; j < 8; ++j) e[j] = from_f32<T>(v[c][j] * r * wv[c][j]);
    *reinterpret_cast<uint4*>(o + i) = packed;
  }
}

template <typename T>
__global__ void __launch_bounds__(kNormThreads) add_rmsnorm_kernel(float* x, const T* delta, const float* w, float eps,
                                                                   T* out, int dim) {
  chain_start();
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
  const float r = 1.0f / sqrtf(block_sum(sum) / float(dim) + eps);
  T* o = out + int64_t(blockIdx.x) * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = from_f32<T>(row[i] * r * w[i]);
}

}  // namespace

void embed(const void* table, DType act, const int32_t* tokens, int n, int hidden, float* x, cudaStream_t stream) {
  dispatch_act(act, [&](auto t) {
    using T = decltype(t);
    launch_chained(embed_kernel<T>, dim3(unsigned(n)), dim3(256), 0, stream, static_cast<const T*>(table), tokens,
                   hidden, x);
  });
  SPECQ_CUDA_LAUNCHED();
}

void add_rmsnorm(float* x, const void* delta, const float* w, float eps, void* out, DType act, int n, int dim,
                 cudaStream_t stream) {
  dispatch_act(act, [&](auto t) {
    using T = decltype(t);
    const bool vector = dim % 8 == 0 && dim <= kNormThreads * 8 * kNormChunks;
    launch_chained(vector ? add_rmsnorm_vector_kernel<T> : add_rmsnorm_kernel<T>, dim3(unsigned(n)),
                   dim3(kNormThreads), 0, stream, x, static_cast<const T*>(delta), w, eps, static_cast<T*>(out), dim);
  });
  SPECQ_CUDA_LAUNCHED();
}

}  // namespace specq::cuda
