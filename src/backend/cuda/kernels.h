// Host entry points of the CUDA kernels, one family per .cu file. Every pointer is a device
// pointer; `act` (F16 or BF16) is the element type of every activation, weight and KV-cache
// pointer passed as void*. Norm weights, biases and the residual stream are fp32. All launches go
// to `stream` and are checked. Plain C++ so tests (.cpp) and the runner can call them.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"
#include "core/sampling_draw.h"

namespace specq::cuda {

// Per-forward inputs read on the device, so one captured graph serves every step.
struct StepInputs {
  const int32_t* tokens;     // [n]
  const int32_t* positions;  // [n]
  const int32_t* cache_len;  // [1]: committed rows before this forward
  const int32_t* has_mask;   // [1]: 0 = causal among the new tokens, 1 = tree mask below
  const uint64_t* mask;      // [n][mask words]
  // attention() only (the EAGLE head's draft levels; the runner leaves both unset): the n queries
  // are new rows query_offset .. query_offset + n - 1 after cache_len, so each also sees the earlier
  // uncommitted rows its mask allows (bit j: row cache_len + j; causal without a mask); mask rows
  // are mask_stride words apart. Null / 0: no offset, mask_words(n).
  const int32_t* query_offset = nullptr;  // [1]
  int mask_stride = 0;
};

// ---- synthetic_init.cu ----
// dst[i] = synthetic_value(seed, first_index + i, offset, scale) rounded to `stored_as` (the dtype the
// model's host bytes would hold, so every backend sees the same weights), then stored as dtype.
void fill_synthetic(void* dst, DType dtype, int64_t count, uint64_t seed, uint64_t first_index, float offset,
                    float scale, DType stored_as, cudaStream_t stream);
// Converts count elements between floating dtypes (F32, F16, BF16).
void convert(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t count, cudaStream_t stream);

// ---- embedding_norm.cu ----
// x[t] = float(table[tokens[t]]) for t < n; table is [vocab, hidden] of `act`.
void embed(const void* table, DType act, const int32_t* tokens, int n, int hidden, float* x, cudaStream_t stream);
// x[t] += delta[t] (delta may be null), then out[t] = x[t] / rms(x[t]) * w.
void add_rmsnorm(float* x, const void* delta, const float* w, float eps, void* out, DType act, int n, int dim,
                 cudaStream_t stream);

// ---- rope_kv.cu ----
// qkv rows are [q heads | k heads | v heads] of head_dim, row stride q_dim + 2 kv_dim. Rotates q and
// k ("rotate_half" pairs (c, c + d/2), angle = float(position) * inv_freq[c], sin/cos in double
// as the CPU reference), then writes k and v of token t to cache row cache_len + t.
void rope_store_kv(void* qkv, DType act, int n, int heads, int kv_heads, int head_dim, const StepInputs& step,
                   const float* inv_freq, void* k_cache, void* v_cache, cudaStream_t stream);

// ---- attention.cu ----
struct AttentionShape {
  int n = 0;         // new tokens
  int heads = 0, kv_heads = 0, head_dim = 0;
  int max_rows = 0;  // cache rows (bounds the split count)
};
// Workspace bytes attention() needs for this shape on a GPU with `sm_count` multiprocessors.
size_t attention_workspace_bytes(const AttentionShape& shape, int sm_count);
// out[t, h*d..] = softmax(q k^T / sqrt(d)) v over cache rows [0, cache_len) and the new rows the
// mask allows. q comes from the qkv rows (already rotated); out is [n, heads * head_dim].
void attention(const void* qkv, DType act, const void* k_cache, const void* v_cache, const AttentionShape& shape,
               const StepInputs& step, void* out, void* workspace, int sm_count, cudaStream_t stream);

// ---- swiglu.cu ----
// out[t, i] = silu(gate_up[t, i]) * gate_up[t, inter + i].
void swiglu(const void* gate_up, void* out, DType act, int n, int inter, cudaStream_t stream);

// ---- gemv.cu ----
constexpr int kGemvMaxTokens = 8;
// y[t, o] = sum_k x[t, k] w[o, k] (+ bias[o]) for n <= kGemvMaxTokens rows: one pass over w.
// y is fp32 when y_fp32, else `act`.
void gemv(const void* w, const void* x, const float* bias, void* y, bool y_fp32, DType act, int n, int rows,
          int cols, cudaStream_t stream);

// SwiGLU fused into the gate|up GEMV: w is [gate rows; up rows] ([2 inter, cols]); each block
// computes gate and up rows i, i+1 together and writes ffn[t, i] = silu(gate) * up. inter even.
void gemv_swiglu(const void* w, const void* x, void* ffn, DType act, int n, int inter, int cols, cudaStream_t stream);

// ---- gemm.cu ----
// The same product through cuBLAS (fp32 accumulation), for larger n; bias added by a small kernel.
// handle is a cublasHandle_t already bound to `stream` with its workspace set.
void gemm(void* cublas_handle, const void* w, const void* x, const float* bias, void* y, bool y_fp32, DType act, int n,
          int rows, int cols, cudaStream_t stream);

// ---- gemm_skinny.cu ----
constexpr int kSkinnyMaxTokens = 128;
// The same product on tensor cores for n <= kSkinnyMaxTokens, reading W once (memory-bound like the
// GEMV). With swiglu, w is [gate rows; up rows] ([2 inter, cols], no bias) and y receives
// silu(gate) * up, [n, inter]. workspace: skinny_gemm_workspace_bytes(sm_count) bytes, cleared once
// by skinny_gemm_clear_workspace (split-K tickets return to zero after every call).
size_t skinny_gemm_workspace_bytes(int sm_count);
void skinny_gemm_clear_workspace(void* workspace, int sm_count, cudaStream_t stream);
// Needs cols % 8 == 0 (16-byte rows).
void skinny_gemm(const void* w, const void* x, const float* bias, void* y, bool y_fp32, DType act, int n, int rows,
                 int cols, bool swiglu, void* workspace, int sm_count, cudaStream_t stream);

// ---- lm_head_argmax.cu ----
// out[r] = index of the largest of logits[r, 0..vocab); ties go to the smallest index.
void argmax_rows(const float* logits, int rows, int vocab, int32_t* out, cudaStream_t stream);

// ---- top_k.cu ----
constexpr int kTopKMax = 32;
// For each row r of logits ([rows, vocab], fp32): ids[r * k + i] and logp[r * k + i], i < k, are
// the k largest logits in descending order (ties: the smaller id) and their log_softmax values
// (clamped to <= 0), as cpu::top_k_logprobs. 1 <= k <= min(kTopKMax, vocab).
void top_k_logprobs(const float* logits, int rows, int vocab, int k, int32_t* ids, float* logp, cudaStream_t stream);

// ---- eagle.cu (the EAGLE head's glue; weights and activations of `act`) ----
// cat[t] = [embed[tokens[t]] | feature of t], [n, 2 hidden]: the feature is store row sources[t]
// when sources[t] >= 0, else row -1 - sources[t] of prev_out (the previous forward's output).
void eagle_gather_inputs(const void* embed, const int32_t* tokens, const int32_t* sources, const void* store,
                         const void* prev_out, int n, int hidden, void* cat, DType act, cudaStream_t stream);
// store[first + r] = src[select[r]] (select null: src[r]) rounded to act, r < count; src is fp32 [*][hidden].
void eagle_store_features(const float* src, const int32_t* select, int count, int hidden, void* store, int first,
                          DType act, cudaStream_t stream);
// out = x + delta for count values: fp32 into out_f32 and rounded into out_act.
void eagle_residual_out(const float* x, const void* delta, float* out_f32, void* out_act, int64_t count, DType act,
                        cudaStream_t stream);

// ---- sample.cu ----
// out[r] = a token drawn from row r of logits with *params (a device pointer; row r uses draw
// params->draw + r): Gumbel-max over the top-k / top-p cut, as Sampler::draw_counter_based.
void sample_rows(const float* logits, int rows, int vocab, const DrawParams* params, int32_t* out, cudaStream_t stream);

// ---- kv_compact.cu ----
// For each of `layers` caches (k and v, each [rows, kv_dim] at layer stride): row src_rows[i] moves
// to dst_start + i, in order (src_rows ascending, src_rows[i] >= dst_start + i).
void compact_kv(void* k_cache, void* v_cache, DType act, int layers, int64_t layer_stride, int kv_dim,
                const int32_t* src_rows, int count, int dst_start, cudaStream_t stream);

}  // namespace specq::cuda
