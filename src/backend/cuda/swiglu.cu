// SwiGLU: out = silu(gate) * up, reading the fused gate|up rows.
#include <algorithm>

#include "backend/cuda/device_types.cuh"
#include "backend/cuda/kernels.h"

namespace specq::cuda {
namespace {

template <typename T>
__global__ void swiglu_kernel(const T* gate_up, T* out, int n, int inter) {
  chain_start();
  const int64_t total = int64_t(n) * inter;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / inter, c = i % inter;
    const float g = to_f32<T>(gate_up[t * 2 * inter + c]);
    const float u = to_f32<T>(gate_up[t * 2 * inter + inter + c]);
    out[i] = from_f32<T>(g / (1.0f + expf(-g)) * u);
  }
}

}  // namespace

void swiglu(const void* gate_up, void* out, DType act, int n, int inter, cudaStream_t stream) {
  dispatch_act(act, [&](auto t) {
    using T = decltype(t);
    const int64_t total = int64_t(n) * inter;
    const int grid = int(std::min<int64_t>((total + 255) / 256, 4096));
    launch_chained(swiglu_kernel<T>, dim3(unsigned(grid)), dim3(256), 0, stream, static_cast<const T*>(gate_up),
                   static_cast<T*>(out), n, inter);
  });
  SPECQ_CUDA_LAUNCHED();
}

}  // namespace specq::cuda
