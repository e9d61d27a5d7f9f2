// KV-cache compaction after speculative verification: accepted rows slide down to close the gaps.
#include "backend/cuda/device_types.cuh"
#include "backend/cuda/kernels.h"

namespace specq::cuda {
namespace {

// One block per (layer, k or v). Rows move one after another, as the CPU does: a later row's
// source may be an earlier row's destination, so row i is read before any later row is written.
template <typename T>
__global__ void compact_kv_kernel(T* k_cache, T* v_cache, int64_t layer_stride, int kv_dim, const int32_t* src_rows,
                                  int count, int dst_start) {
  T* cache = (blockIdx.y == 0 ? k_cache : v_cache) + blockIdx.x * layer_stride;
  for (int i = 0; i < count; ++i) {
    const int64_t src = src_rows[i], dst = dst_start + i;
    if (src != dst)
      for (int c = threadIdx.x; c < kv_dim; c += blockDim.x) cache[dst * kv_dim + c] = cache[src * kv_dim + c];
    __syncthreads();
  }
}

}  // namespace

void compact_kv(void* k_cache, void* v_cache, DType act, int layers, int64_t layer_stride, int kv_dim,
                const int32_t* src_rows, int count, int dst_start, cudaStream_t stream) {
  if (count == 0) return;
  dispatch_act(act, [&](auto t) {
    using T = decltype(t);
    compact_kv_kernel<T><<<dim3(unsigned(layers), 2), 256, 0, stream>>>(
        static_cast<T*>(k_cache), static_cast<T*>(v_cache), layer_stride, kv_dim, src_rows, count, dst_start);
  });
  SPECQ_CUDA_LAUNCHED();
}

}  // namespace specq::cuda
