// Sampling on the device (temperature, top-k, top-p), one block per logits row, so sampled decoding
// copies one id per step instead of a vocabulary of logits. The cuts are found by radix selection
// on order-preserving keys (core/sampling_draw.h), four passes of 8 bits each with shared-memory
// histograms: top-k counts tokens, top-p sums their softmax mass. The draw is the Gumbel-max of the
// kept tokens with counter-based noise, identical to the CPU reference Sampler::draw_counter_based.
#include <cfloat>
#include <climits>

#include "backend/cuda/device_types.cuh"
#include "backend/cuda/kernels.h"
#include "core/sampling_draw.h"

namespace specq::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

template <typename V, typename Op>
__device__ V block_reduce(V value, Op op, V* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) value = op(value, __shfl_xor_sync(0xffffffffu, value, o));
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = value;
  __syncthreads();
  V total = scratch[0];
  for (int w = 1; w < kWarps; ++w) total = op(total, scratch[w]);
  __syncthreads();  // scratch reusable
  return total;
}

// The largest key t (always the key of an element) such that the weight of the
// elements with key >= t, among those with key >= floor_key, reaches `need`. weight(i) is 1 for
// top-k (need = k) and the softmax mass for top-p. Four 8-bit radix passes from the top byte.
// `unreachable` is a weight no bin reaches: once rounding has left the target out of reach, every
// later pass takes the lowest non-empty bin, so the whole remaining group is kept.
template <typename W, typename Weight>
__device__ uint32_t radix_cut(const float* row, int vocab, uint32_t floor_key, W need, W unreachable, Weight weight,
                              W* hist, uint32_t* chosen) {
  uint32_t prefix = 0, mask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += kThreads) hist[b] = W(0);
    __syncthreads();
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      const uint32_t key = order_key(row[i]);
      if (key >= floor_key && (key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], weight(i, row[i]));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      // Walk the bins from the top; the bin where the running weight reaches `need` holds the cut.
      W running = W(0);
      int digit = -1, lowest_nonempty = 0;
      for (int d = 255; d >= 0; --d) {
        if (hist[d] > W(0)) lowest_nonempty = d;
        if (running + hist[d] >= need) {
          digit = d;
          need -= running;
          break;
        }
        running += hist[d];
      }
      // Rounding left the target just out of reach: the cut is the smallest kept element.
      if (digit < 0) {
        digit = lowest_nonempty;
        need = unreachable;
      }
      *chosen = uint32_t(digit);
      hist[0] = need;  // carried to the next pass through shared memory
    }
    __syncthreads();
    const uint32_t digit = *chosen;
    need = hist[0];
    __syncthreads();
    prefix |= digit << shift;
    mask |= 255u << shift;
  }
  return prefix;
}

__global__ void __launch_bounds__(kThreads) sample_kernel(const float* logits, int vocab, const DrawParams* params,
                                                          int32_t* out) {
  chain_start();
  __shared__ float fscratch[kWarps];
  __shared__ int iscratch[kWarps];
  __shared__ float fhist[256];
  __shared__ int ihist[256];
  __shared__ uint32_t chosen;
  const DrawParams p = *params;
  const float* row = logits + int64_t(blockIdx.x) * vocab;

  float local_max = -FLT_MAX;
  for (int i = threadIdx.x; i < vocab; i += kThreads) local_max = fmaxf(local_max, row[i]);
  const float row_max = block_reduce(local_max, [](float a, float b) { return fmaxf(a, b); }, fscratch);
  const float inv_t = 1.0f / p.temperature;

  uint32_t cut = 0;  // tokens with key >= cut are kept
  if (p.top_k > 0 && p.top_k < vocab)
    cut = radix_cut<int>(row, vocab, 0u, p.top_k, INT_MAX, [](int, float) { return 1; }, ihist, &chosen);
  auto mass = [&](int, float z) { return expf((z - row_max) * inv_t); };
  if (p.top_p < 1.0f) {
    float local = 0.0f;
    for (int i = threadIdx.x; i < vocab; i += kThreads)
      if (order_key(row[i]) >= cut) local += mass(i, row[i]);
    const float total = block_reduce(local, [](float a, float b) { return a + b; }, fscratch);
    cut = radix_cut<float>(row, vocab, cut, p.top_p * total, FLT_MAX, mass, fhist, &chosen);
  }

  // Gumbel-max over the kept tokens; ties go to the smaller id.
  double best = -DBL_MAX;
  int best_index = vocab;
  const uint64_t draw = p.draw + blockIdx.x;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    if (order_key(row[i]) < cut) continue;
    const double score = double((row[i] - row_max) * inv_t) + gumbel_noise(p.seed, draw, uint32_t(i));
    if (score > best) {
      best = score;
      best_index = i;
    }
  }
  __shared__ double dbest[kWarps];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const double other = __shfl_xor_sync(0xffffffffu, best, o);
    const int other_index = __shfl_xor_sync(0xffffffffu, best_index, o);
    if (other > best || (other == best && other_index < best_index)) {
      best = other;
      best_index = other_index;
    }
  }
  if (threadIdx.x % 32 == 0) {
    dbest[threadIdx.x / 32] = best;
    iscratch[threadIdx.x / 32] = best_index;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kWarps; ++w)
      if (dbest[w] > best || (dbest[w] == best && iscratch[w] < best_index)) {
        best = dbest[w];
        best_index = iscratch[w];
      }
    out[blockIdx.x] = best_index < vocab ? best_index : 0;
  }
}

}  // namespace

void sample_rows(const float* logits, int rows, int vocab, const DrawParams* params, int32_t* out,
                 cudaStream_t stream) {
  if (rows == 0) return;
  launch_chained(sample_kernel, dim3(unsigned(rows)), dim3(kThreads), 0, stream, logits, vocab, params, out);
  SPECQ_CUDA_LAUNCHED();
}

}  // namespace specq::cuda
