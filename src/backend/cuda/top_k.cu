// Top-k of logits rows with their log-probabilities, so an EAGLE draft step copies k ids and k
// values per row to the host instead of a 128k-entry logits row. One block per row: each thread
// keeps the K best of its strided share in registers (sorted, inserted by an unrolled bubble) and
// an online (max, sum of exp) for the log-softmax normaliser; then k rounds of a block-wide argmax
// over the threads' current heads pick the winners in order (the winner's thread pops its head).
#include <cfloat>
#include <climits>

#include "backend/cuda/device_types.cuh"
#include "backend/cuda/kernels.h"

namespace specq::cuda {
namespace {

constexpr int kTopKThreads = 256;
constexpr int kTopKWarps = kTopKThreads / 32;

// The CPU reference's order: larger value first; equal values: smaller id first.
__device__ __forceinline__ bool better(float v, int i, float w, int j) { return v > w || (v == w && i < j); }

// (m, s): running max and sum of exp(x - m); m = -inf means empty.
__device__ __forceinline__ void merge_lse(float& m, float& s, float m2, float s2) {
  if (m2 == -INFINITY) return;
  if (m == -INFINITY) {
    m = m2;
    s = s2;
    return;
  }
  const float top = fmaxf(m, m2);
  s = s * expf(m - top) + s2 * expf(m2 - top);
  m = top;
}

template <int K>
__global__ void __launch_bounds__(kTopKThreads) top_k_kernel(const float* logits, int vocab, int k, int32_t* ids,
                                                             float* logp) {
  chain_start();
  const float* row = logits + int64_t(blockIdx.x) * vocab;
  float vals[K];
  int idx[K];
#pragma unroll
  for (int j = 0; j < K; ++j) {
    vals[j] = -INFINITY;
    idx[j] = INT_MAX;  // placeholders lose to every real entry, -inf logits included
  }
  float m = -INFINITY, s = 0.0f;
  for (int i = threadIdx.x; i < vocab; i += kTopKThreads) {
    const float v = row[i];
    if (v != -INFINITY) {
      if (v > m) {
        s = (m == -INFINITY ? 0.0f : s * expf(m - v)) + 1.0f;
        m = v;
      } else {
        s += expf(v - m);
      }
    }
    if (better(v, i, vals[K - 1], idx[K - 1])) {
      float cv = v;
      int ci = i;
#pragma unroll
      for (int j = 0; j < K; ++j) {
        if (better(cv, ci, vals[j], idx[j])) {
          const float tv = vals[j];
          const int ti = idx[j];
          vals[j] = cv;
          idx[j] = ci;
          cv = tv;
          ci = ti;
        }
      }
    }
  }

  // Block-wide log-sum-exp.
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __shared__ float sh_m[kTopKWarps], sh_s[kTopKWarps];
  __shared__ float win_val[kTopKWarps];
  __shared__ int win_idx[kTopKWarps];
  __shared__ float out_val[K];
  __shared__ int out_idx[K];
  __shared__ float log_total;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    merge_lse(m, s, m2, s2);
  }
  if (lane == 0) {
    sh_m[warp] = m;
    sh_s[warp] = s;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float tm = sh_m[0], ts = sh_s[0];
    for (int w = 1; w < kTopKWarps; ++w) merge_lse(tm, ts, sh_m[w], sh_s[w]);
    log_total = tm == -INFINITY ? -INFINITY : tm + logf(ts);
  }

  // k rounds: the best head among all threads wins and its thread pops it.
  for (int r = 0; r < k; ++r) {
    float bv = vals[0];
    int bi = idx[0];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float v2 = __shfl_xor_sync(0xffffffffu, bv, o);
      const int i2 = __shfl_xor_sync(0xffffffffu, bi, o);
      if (better(v2, i2, bv, bi)) {
        bv = v2;
        bi = i2;
      }
    }
    if (lane == 0) {
      win_val[warp] = bv;
      win_idx[warp] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int w = 1; w < kTopKWarps; ++w)
        if (better(win_val[w], win_idx[w], bv, bi)) {
          bv = win_val[w];
          bi = win_idx[w];
        }
      out_val[r] = bv;
      out_idx[r] = bi;
    }
    __syncthreads();
    if (idx[0] == out_idx[r]) {  // ids are unique across threads: exactly one thread pops
#pragma unroll
      for (int j = 0; j + 1 < K; ++j) {
        vals[j] = vals[j + 1];
        idx[j] = idx[j + 1];
      }
      vals[K - 1] = -INFINITY;
      idx[K - 1] = INT_MAX;
    }
  }
  if (threadIdx.x < k) {
    const int64_t at = int64_t(blockIdx.x) * k + threadIdx.x;
    ids[at] = out_idx[threadIdx.x];
    logp[at] = fminf(0.0f, out_val[threadIdx.x] - log_total);
  }
}

}  // namespace

void top_k_logprobs(const float* logits, int rows, int vocab, int k, int32_t* ids, float* logp, cudaStream_t stream) {
  if (k < 1 || k > kTopKMax || k > vocab)
    fail_message("top_k_logprobs: k = " + std::to_string(k) + " must be in [1, min(" + std::to_string(kTopKMax) +
                 ", vocab " + std::to_string(vocab) + ")]");
  if (rows == 0) return;
  if (k <= 16)
    launch_chained(top_k_kernel<16>, dim3(unsigned(rows)), dim3(kTopKThreads), 0, stream, logits, vocab, k, ids, logp);
  else
    launch_chained(top_k_kernel<kTopKMax>, dim3(unsigned(rows)), dim3(kTopKThreads), 0, stream, logits, vocab, k, ids,
                   logp);
  SPECQ_CUDA_LAUNCHED();
}

}  // namespace specq::cuda
