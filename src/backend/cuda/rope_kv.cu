// RoPE on q and k ("rotate_half" convention, as Hugging Face Llama) fused with the KV-cache store.
// Angles use precise double sin/cos of the fp32 angle, as the CPU reference: no fast-math.
#include "backend/cuda/device_types.cuh"
#include "backend/cuda/kernels.h"

namespace specq::cuda {
namespace {

// grid (n, heads + 2 * kv_heads); thread c < head_dim / 2 handles pair (c, c + d/2) of one head.
template <typename T>
__global__ void rope_store_kv_kernel(T* qkv, int heads, int kv_heads, int head_dim, StepInputs step,
                                     const float* inv_freq, T* k_cache, T* v_cache) {
  chain_start();
  const int t = blockIdx.x;
  const int head = blockIdx.y;  // q heads, then k heads, then v heads
  const int half = head_dim / 2;
  const int kv_dim = kv_heads * head_dim;
  const int64_t stride = int64_t(heads) * head_dim + 2 * kv_dim;
  T* v = qkv + t * stride + int64_t(head) * head_dim;
  const int64_t cache_row = int64_t(*step.cache_len) + t;
  if (head >= heads + kv_heads) {  // v: stored unrotated
    T* dst = v_cache + cache_row * kv_dim + int64_t(head - heads - kv_heads) * head_dim;
    for (int i = threadIdx.x; i < head_dim; i += blockDim.x) dst[i] = v[i];
    return;
  }
  const float position = float(step.positions[t]);
  for (int c = threadIdx.x; c < half; c += blockDim.x) {
    const float angle = position * inv_freq[c];
    double s, co;
    sincos(double(angle), &s, &co);
    const float cs = float(co), sn = float(s);
    const float a = to_f32<T>(v[c]), b = to_f32<T>(v[c + half]);
    const T ra = from_f32<T>(a * cs - b * sn), rb = from_f32<T>(b * cs + a * sn);
    v[c] = ra;
    v[c + half] = rb;
    if (head >= heads) {
      T* dst = k_cache + cache_row * kv_dim + int64_t(head - heads) * head_dim;
      dst[c] = ra;
      dst[c + half] = rb;
    }
  }
}

}  // namespace

void rope_store_kv(void* qkv, DType act, int n, int heads, int kv_heads, int head_dim, const StepInputs& step,
                   const float* inv_freq, void* k_cache, void* v_cache, cudaStream_t stream) {
  dispatch_act(act, [&](auto t) {
    using T = decltype(t);
    const dim3 grid(unsigned(n), unsigned(heads + 2 * kv_heads));
    launch_chained(rope_store_kv_kernel<T>, grid, dim3(64), 0, stream, static_cast<T*>(qkv), heads, kv_heads, head_dim,
                   step, inv_freq, static_cast<T*>(k_cache), static_cast<T*>(v_cache));
  });
  SPECQ_CUDA_LAUNCHED();
}

}  // namespace specq::cuda
