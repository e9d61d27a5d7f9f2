// Device-side element helpers: fp32 <-> fp16/bf16 and 16-byte vectors of 8 elements.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>

#include "backend/cuda/cuda_common.h"

namespace specq::cuda {

template <typename T>
__device__ __forceinline__ float to_f32(T v);
template <>
__device__ __forceinline__ float to_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ float to_f32<__half>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Eight 16-bit elements held in one 16-byte register group, unpacked to fp32.
template <typename T>
__device__ __forceinline__ void unpack8(const uint4& v, float out[8]) {
  const T* e = reinterpret_cast<const T*>(&v);
#pragma unroll
  for (int i = 0; i < 8; ++i) out[i] = to_f32<T>(e[i]);
}

// Calls f(T{}) with T the device type of a 16-bit activation dtype.
template <typename F>
void dispatch_act(DType act, F&& f) {
  if (act == DType::F16) f(__half{});
  else if (act == DType::BF16) f(__nv_bfloat16{});
  else fail_message("CUDA activations must be f16 or bf16 (got " + std::string(dtype_name(act)) + ")");
}

inline int ceil_div(int64_t a, int64_t b) { return int((a + b - 1) / b); }

}  // namespace specq::cuda

namespace specq::cuda {

// Programmatic dependent launch (Hopper): a kernel launched with launch_chained() may be scheduled
// while the previous kernel in the stream is still finishing; it must call chain_start() before
// touching global memory, which waits for the previous grid to complete and lets the next kernel
// be scheduled in turn. This hides the launch gap between the many small kernels of a step.
__device__ __forceinline__ void chain_start() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cudaGridDependencySynchronize();
  cudaTriggerProgrammaticLaunchCompletion();
#endif
}

template <typename... KernelArgs, typename... Args>
void launch_chained(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                    Args&&... args) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = 1;
  SPECQ_CUDA(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
}

}  // namespace specq::cuda
