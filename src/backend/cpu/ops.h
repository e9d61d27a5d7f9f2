// CPU kernels: fp32 arithmetic on fp32/fp16/bf16 weights. They are the reference every other
// backend is tested against, and fast enough to be used (vectorised, multi-threaded).
#pragma once
#include <cstdint>
#include <span>

#include "core/sampling_draw.h"
#include "model/weights.h"

namespace specq::cpu {

// Converts n elements of a floating-point array to fp32.
void to_float(const void* src, DType dtype, int64_t n, float* dst);

// out[t] = x[t] / rms(x[t]) * w, for n rows of dim values.
void rmsnorm(const float* x, const float* w, float eps, float* out, int n, int dim);
// x[t] += delta[t] (when delta is given), then out[t] = rmsnorm(x[t]).
void add_rmsnorm(float* x, const float* delta, const float* w, float eps, float* out, int n, int dim);

// W8A8 activation quantization of one row of k values (docs/FORMATS.md): symmetric, per token,
// scale = max|x| / 127 (0 for an all-zero row), q = clamp(round_half_even(x / scale), -127, 127).
// Returns the scale. A row with a non-finite value gets codes 0 and a non-finite scale, so the
// linear's output is NaN rather than a silently wrong number.
float quantize_row_int8(const float* x, int64_t k, int8_t* q);

// out[t * out_stride + o] = sum_k in[t * K + k] * W[o, k] (+ bias[o]) for the n rows of `in`.
// W is [N, K] of any floating dtype, or GptqInt4 (each row dequantized exactly, then fp32 math),
// or Int8PerChannel: each input row is quantized by quantize_row_int8, then
// out = float(sum_k q_x[k] * q_w[o, k]) * s_x * s_w[o] (+ bias[o]), the sum exact in int32;
// or W4A8 (QqqInt4, QoqInt4): the same with q_w the format's int8 values (w4a8_int8_row) and, for
// QoQ per-channel, minus szero[o] * sum_k in[t, k] (docs/FORMATS.md).
// Rows of W are split over threads; scratch holds omp_get_max_threads() * K floats for
// converting fp16/bf16, dequantizing rows, or one quantized input row.
void linear(const float* in, int n, const Weight& w, const float* bias, float* out, int64_t out_stride,
            float* scratch);

// Rotates pairs (c, c + d/2) of each head ("rotate_half" convention, as Hugging Face Llama) by
// position * inv_freq[c]. Row t starts at vec + t * stride and holds `heads` heads of head_dim.
void rope(float* vec, int64_t stride, int n, int heads, int head_dim, const int32_t* positions,
          const float* inv_freq);

// Attention of n new queries against a KV cache whose rows [0, cache_len) are committed and rows
// [cache_len, cache_len + n) hold the new tokens. q row t starts at q + t * q_stride;
// k/v caches are [rows, kv_heads * head_dim]. tree_mask: empty for causal, else n rows of
// mask_words(n) words. out is [n, heads * head_dim]. scores: scratch of threads * (cache_len + n).
void attention(const float* q, int64_t q_stride, const float* k_cache, const float* v_cache, int cache_len, int n,
               std::span<const uint64_t> tree_mask, int heads, int kv_heads, int head_dim, float* out,
               float* scores);

// The general form: the n queries are the last n of the cache rows [0, rows); every query sees the
// committed rows [0, committed) and row committed + j of the rest when bit j of its mask row is set
// (mask row t starts at mask + t * mask_stride words). A null mask is causal over [committed, rows).
// Speculative drafters use it to let new tokens see earlier, uncommitted tree rows.
void attention_rows(const float* q, int64_t q_stride, const float* k_cache, const float* v_cache, int committed,
                    int rows, int n, const uint64_t* mask, int mask_stride, int heads, int kv_heads, int head_dim,
                    float* out, float* scores);

// out[t, i] = silu(gate_up[t, i]) * gate_up[t, inter + i].
void swiglu(const float* gate_up, int n, int inter, float* out);

// Index of the largest value; ties go to the smallest index.
int32_t argmax(const float* values, int n);
// The k largest of logits[0, n) in descending order (ties: the smaller id) with their
// log-probabilities log_softmax(logits) (sum in double; clamped to <= 0), by sorting: the reference
// of the CUDA top-k (top_k.cu). scratch holds n ints.
void top_k_logprobs(const float* logits, int n, int k, int32_t* ids, float* logp, int32_t* scratch);
// The reference of the CUDA sampler (sample.cu): the Gumbel-max draw `draw` over the top-k, then
// top-p cut of softmax(logits / temperature), ties at a cut kept (core/sampling_draw.h).
int32_t sample_counter_based(const float* logits, int n, const DrawParams& params, uint64_t draw);

}  // namespace specq::cpu
