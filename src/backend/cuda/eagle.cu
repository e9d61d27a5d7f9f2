// The EAGLE head's glue kernels (backend/cuda/cuda_eagle_head.cpp): its fused fc input
// [embedding | feature], the verifier's hidden states into the head's feature store, and the
// head's residual output. The layer itself runs on the shared kernels (linear, RoPE, attention).
#include <algorithm>

#include "backend/cuda/device_types.cuh"
#include "backend/cuda/kernels.h"

namespace specq::cuda {
namespace {

// One block per input; 16-byte vectors (hidden % 8 == 0, rows 16-byte aligned).
template <typename T>
__global__ void gather_inputs_kernel(const T* embed, const int32_t* tokens, const int32_t* sources, const T* store,
                                     const T* prev_out, int hidden, T* cat) {
  chain_start();
  const int t = blockIdx.x;
  const int source = sources[t];
  const T* emb = embed + int64_t(tokens[t]) * hidden;
  const T* feature = source >= 0 ? store + int64_t(source) * hidden : prev_out + int64_t(-1 - source) * hidden;
  T* out = cat + int64_t(t) * 2 * hidden;
  const int vectors = hidden / 8;
  for (int v = threadIdx.x; v < 2 * vectors; v += blockDim.x) {
    const T* src = v < vectors ? emb + v * 8 : feature + (v - vectors) * 8;
    *reinterpret_cast<uint4*>(out + v * 8) = *reinterpret_cast<const uint4*>(src);
  }
}

template <typename T>
__global__ void store_features_kernel(const float* src, const int32_t* select, int hidden, T* store, int first) {
  chain_start();
  const int r = blockIdx.x;
  const float* row = src + int64_t(select != nullptr ? select[r] : r) * hidden;
  T* out = store + int64_t(first + r) * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) out[i] = from_f32<T>(row[i]);
}

template <typename T>
__global__ void residual_out_kernel(const float* x, const T* delta, float* out_f32, T* out_act, int64_t count) {
  chain_start();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const float v = x[i] + to_f32<T>(delta[i]);
    out_f32[i] = v;
    out_act[i] = from_f32<T>(v);
  }
}

}  // namespace

void eagle_gather_inputs(const void* embed, const int32_t* tokens, const int32_t* sources, const void* store,
                         const void* prev_out, int n, int hidden, void* cat, DType act, cudaStream_t stream) {
  if (hidden % 8 != 0) fail_message("eagle_gather_inputs: hidden size must be a multiple of 8");
  if (n == 0) return;
  dispatch_act(act, [&](auto t) {
    using T = decltype(t);
    launch_chained(gather_inputs_kernel<T>, dim3(unsigned(n)), dim3(256), 0, stream, static_cast<const T*>(embed),
                   tokens, sources, static_cast<const T*>(store), static_cast<const T*>(prev_out), hidden,
                   static_cast<T*>(cat));
  });
  SPECQ_CUDA_LAUNCHED();
}

void eagle_store_features(const float* src, const int32_t* select, int count, int hidden, void* store, int first,
                          DType act, cudaStream_t stream) {
  if (count == 0) return;
  dispatch_act(act, [&](auto t) {
    using T = decltype(t);
    launch_chained(store_features_kernel<T>, dim3(unsigned(count)), dim3(256), 0, stream, src, select, hidden,
                   static_cast<T*>(store), first);
  });
  SPECQ_CUDA_LAUNCHED();
}

void eagle_residual_out(const float* x, const void* delta, float* out_f32, void* out_act, int64_t count, DType act,
                        cudaStream_t stream) {
  if (count == 0) return;
  dispatch_act(act, [&](auto t) {
    using T = decltype(t);
    const int blocks = int(std::min<int64_t>((count + 255) / 256, 1024));
    launch_chained(residual_out_kernel<T>, dim3(unsigned(blocks)), dim3(256), 0, stream, x,
                   static_cast<const T*>(delta), out_f32, static_cast<T*>(out_act), count);
  });
  SPECQ_CUDA_LAUNCHED();
}

}  // namespace specq::cuda
