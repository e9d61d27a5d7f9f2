// Weight initialisation on the device: synthetic: models are generated in place (no host bytes,
// so an 8B model loads in seconds) and real checkpoints are converted to the activation dtype.
#include <algorithm>

#include "backend/cuda/device_types.cuh"
#include "backend/cuda/kernels.h"
#include "core/synthetic_rng.h"

namespace specq::cuda {
namespace {

template <typename Stored, typename T>
__global__ void fill_synthetic_kernel(T* dst, int64_t count, uint64_t seed, uint64_t first_index, float offset,
                                      float scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const float value = synthetic_value(seed, first_index + uint64_t(i), offset, scale);
    dst[i] = from_f32<T>(to_f32<Stored>(from_f32<Stored>(value)));
  }
}

template <typename S, typename D>
__global__ void convert_kernel(const S* src, D* dst, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = from_f32<D>(to_f32<S>(src[i]));
}

// Calls f(T{}) for any floating dtype, fp32 included.
template <typename F>
void dispatch_float(DType dtype, F&& f) {
  if (dtype == DType::F32) f(float{});
  else dispatch_act(dtype, f);
}

int grid_for(int64_t count) { return int(std::min<int64_t>((count + 255) / 256, 65536)); }

}  // namespace

void fill_synthetic(void* dst, DType dtype, int64_t count, uint64_t seed, uint64_t first_index, float offset,
                    float scale, DType stored_as, cudaStream_t stream) {
  if (count == 0) return;
  dispatch_float(dtype, [&](auto t) {
    using T = decltype(t);
    dispatch_float(stored_as, [&](auto s) {
      using Stored = decltype(s);
      fill_synthetic_kernel<Stored, T><<<grid_for(count), 256, 0, stream>>>(static_cast<T*>(dst), count, seed,
                                                                            first_index, offset, scale);
    });
  });
  SPECQ_CUDA_LAUNCHED();
}

void convert(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t count, cudaStream_t stream) {
  if (count == 0) return;
  dispatch_float(src_dtype, [&](auto s) {
    using S = decltype(s);
    dispatch_float(dst_dtype, [&](auto d) {
      using D = decltype(d);
      convert_kernel<S, D><<<grid_for(count), 256, 0, stream>>>(static_cast<const S*>(src), static_cast<D*>(dst),
                                                                count);
    });
  });
  SPECQ_CUDA_LAUNCHED();
}

}  // namespace specq::cuda
