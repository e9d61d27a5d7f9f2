// The EAGLE-1/2 draft head: one Llama decoder layer over fused (token, feature) inputs, using the
// base model's embedding and LM head. Input for token x with feature h (a base-model final hidden
// state, or the head's own output when drafting deeper):
//   e = fc1(embed(x)) + fc2(h)      (fc.weight [H, 2H] split as [fc1 | fc2]; fc.bias goes with fc1)
//   a = e + Attn(e)                  (no pre-attention norm)
//   o = a + MLP(RMSNorm(a))          (SwiGLU; no final norm)
//   logits = lm_head(o)
// It keeps its own one-layer KV cache and the verifier's hidden states by position (its features).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "model/runner.h"
#include "model/weights.h"
#include "spec/drafter.h"

namespace specq {

struct EagleWeights {
  Weight fc1, fc2;              // [H, H] each: the embedding half and the feature half of fc
  std::vector<float> fc_bias;   // [H] (may be empty)
  Weight wq, wk, wv, wo;        // as a Llama layer
  std::vector<float> ffn_norm;  // post_attention_layernorm [H]
  Weight w_gate, w_up, w_down;
  // The target ids the draft LM head keeps, one per row (FR-Spec's frequency-ranked map, spec/frspec.h);
  // empty = the whole vocabulary. Drafts can only be these tokens; the target still verifies over all.
  std::vector<int32_t> draft_vocab;
  std::vector<std::shared_ptr<const void>> storage;  // owns the bytes the views point into
};

// Rows `ids` of a float (or synthetic) LM head as an fp32 [ids.size(), H] weight backed by `storage`:
// the draft LM head of a head with a draft vocabulary.
Weight gather_lm_head_rows(const Weight& lm_head, std::span<const int32_t> ids, std::vector<float>& storage);

// Seeded random weights of the right shapes for `base` (tests and benchmarks; no training).
EagleWeights random_eagle_weights(const ModelConfig& base, uint64_t seed);
// Error naming the tensor when a weight's shape does not fit `base`.
void validate_eagle_weights(const EagleWeights& weights, const ModelConfig& base);

// One forward of a head: n inputs (tokens[i] with feature features[i]) at `positions`. Their K/V go
// to rows [row0, row0 + n); each sees rows [0, committed) and, of rows [committed, row0 + n), those
// its mask row allows (bit j: row committed + j; row i at mask + i * mask_stride; null = causal).
struct EagleStep {
  std::span<const int32_t> tokens;
  // Feature of input i: features[i] >= 0: the stored verifier hidden state of that position
  // (set_features); < 0: output row -1 - features[i] of the previous forward (drafting deeper).
  std::span<const int32_t> features;
  std::span<const int32_t> positions;
  int committed = 0, row0 = 0;
  const uint64_t* mask = nullptr;
  int mask_stride = 0;
  int logits_from = 0;           // rows [logits_from, n) produce logits
  int top_k = 0;                 // > 0: the top_k ids and log-probabilities of each logits row
  bool logits_to_host = false;   // the full logits rows too (sampling drafts draw from them)
};

// Where the head runs is its business: the drafter sees this interface only. The CPU head is the
// reference; the CUDA head (backend/cuda/cuda_eagle_head.cpp) runs beside a CUDA verifier.
class EagleHead {
 public:
  virtual ~EagleHead() = default;
  virtual const ModelConfig& config() const = 0;
  virtual Device device() const = 0;
  virtual int max_rows() const = 0;                // KV-cache rows, and feature positions
  virtual int max_tokens_per_forward() const = 0;
  virtual int max_top_k() const = 0;
  // Keeps the verifier's hidden states as the features of positions [first_pos, first_pos + rows.count).
  virtual void set_features(int first_pos, const HiddenRows& rows) = 0;
  virtual void forward(const EagleStep& step) = 0;
  // Results of the last forward for its row i (logits_from <= i < n):
  // Most likely first; ties: the smaller id (with a draft vocabulary: the earlier entry of it).
  virtual std::span<const int32_t> top_ids(int i) const = 0;
  virtual std::span<const float> top_logp(int i) const = 0;   // their log-probabilities, <= 0
  // Over the whole vocabulary (-inf outside a draft vocabulary); needs logits_to_host (the CPU head: always).
  virtual std::span<const float> logits(int i) const = 0;
  virtual std::vector<float> output(int i) const = 0;         // the head's output o (tests)
};

// The head on the device of `runner` (the verifier whose hidden states it reads): the CUDA head,
// borrowing the runner's embedding, LM head, stream and kernel choice, when it is a CUDA runner;
// else the CPU head. `base` lends its embedding and LM head to the CPU head and must outlive it.
std::unique_ptr<EagleHead> make_eagle_head(const Model& base, EagleWeights weights, Runner& runner, int max_rows,
                                           int max_tokens_per_forward);
// Error in builds without CUDA, or when `runner` is not a CUDA runner. borrow_base_weights = false
// uploads the head's own copies of the embedding and LM head instead of using the runner's.
std::unique_ptr<EagleHead> make_cuda_eagle_head(const Model& base, EagleWeights weights, Runner& runner, int max_rows,
                                                int max_tokens_per_forward, bool borrow_base_weights = true);

// The reference: the cpu:: kernels in fp32.
class CpuEagleHead final : public EagleHead {
 public:
  CpuEagleHead(const Model& base, EagleWeights weights, int max_rows, int max_tokens_per_forward);

  const ModelConfig& config() const override { return config_; }
  Device device() const override { return Device::Cpu; }
  int max_rows() const override { return max_rows_; }
  int max_tokens_per_forward() const override { return max_tokens_; }
  int max_top_k() const override { return head_vocab_; }
  void set_features(int first_pos, const HiddenRows& rows) override;
  void forward(const EagleStep& step) override;
  std::span<const int32_t> top_ids(int i) const override {
    return {top_ids_.data() + size_t(i) * size_t(top_k_), size_t(top_k_)};
  }
  std::span<const float> top_logp(int i) const override {
    return {top_logp_.data() + size_t(i) * size_t(top_k_), size_t(top_k_)};
  }
  std::span<const float> logits(int i) const override {
    return {logits_.data() + size_t(i) * size_t(vocab_), size_t(vocab_)};
  }
  std::vector<float> output(int i) const override {
    return {out_.begin() + std::ptrdiff_t(i) * hidden_, out_.begin() + std::ptrdiff_t(i + 1) * hidden_};
  }

 private:
  static Weight host_view(const Weight& w, std::vector<float>& storage);

  ModelConfig config_;
  Weight embed_, lm_head_;                         // the base's, readable on the host
  std::vector<float> host_embed_, host_lm_head_;   // their bytes, for synthetic: bases only
  EagleWeights w_;
  int hidden_ = 0, vocab_ = 0, max_rows_ = 0, max_tokens_ = 0, top_k_ = 0;
  int head_vocab_ = 0;            // rows of lm_head_: the draft vocabulary's size, or vocab_
  std::vector<float> draft_logits_;  // [T][head_vocab_] before the scatter into logits_ (draft vocabulary only)
  std::vector<float> inv_freq_, k_cache_, v_cache_;
  int threads_ = 1;  // OpenMP threads the scratch is planned for
  std::vector<float> features_;  // verifier hidden state by position, [max_rows][H]
  std::vector<float> feat_, emb_, x_, xn_, qkv_, attn_, delta_, gate_up_, ffn_, out_, logits_, scratch_, scores_;
  std::vector<int32_t> top_ids_, order_;
  std::vector<float> top_logp_;
};

}  // namespace specq
