// The EAGLE-1/2 draft head: one Llama decoder layer over fused (token, feature) inputs, using the
// base model's embedding and LM head. Input for token x with feature h (a base-model final hidden
// state, or the head's own output when drafting deeper):
//   e = fc1(embed(x)) + fc2(h)      (fc.weight [H, 2H] split as [fc1 | fc2]; fc.bias goes with fc1)
//   a = e + Attn(e)                  (no pre-attention norm)
//   o = a + MLP(RMSNorm(a))          (SwiGLU; no final norm)
//   logits = lm_head(o)
// It keeps its own one-layer KV cache.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "model/weights.h"

namespace specq {

struct EagleWeights {
  Weight fc1, fc2;              // [H, H] each: the embedding half and the feature half of fc
  std::vector<float> fc_bias;   // [H] (may be empty)
  Weight wq, wk, wv, wo;        // as a Llama layer
  std::vector<float> ffn_norm;  // post_attention_layernorm [H]
  Weight w_gate, w_up, w_down;
  std::vector<std::shared_ptr<const void>> storage;  // owns the bytes the views point into
};

// Seeded random weights of the right shapes for `base` (tests and benchmarks; no training).
EagleWeights random_eagle_weights(const ModelConfig& base, uint64_t seed);

class EagleHead {
 public:
  // `base` lends its embedding and LM head (it must outlive the head); max_rows is the KV-cache size.
  EagleHead(const Model& base, EagleWeights weights, int max_rows, int max_tokens_per_forward);

  // Runs n inputs (tokens[i], feature row i of features, [n][H]) at `positions`. Their K/V go to
  // rows [row0, row0 + n); each sees rows [0, committed) and, of rows [committed, row0 + n), those
  // its mask row allows (bit j: row committed + j; row i at mask + i * mask_stride; null = causal).
  // Logits are computed for rows [logits_from, n).
  void forward(std::span<const int32_t> tokens, const float* features, std::span<const int32_t> positions,
               int committed, int row0, const uint64_t* mask, int mask_stride, int logits_from);
  const float* output(int i) const { return out_.data() + size_t(i) * size_t(hidden_); }
  const float* logits(int i) const { return logits_.data() + size_t(i) * size_t(vocab_); }

  const ModelConfig& config() const { return config_; }
  int max_rows() const { return max_rows_; }
  int max_tokens_per_forward() const { return max_tokens_; }

 private:
  static Weight host_view(const Weight& w, std::vector<float>& storage);

  ModelConfig config_;
  Weight embed_, lm_head_;                         // the base's, readable on the host
  std::vector<float> host_embed_, host_lm_head_;   // their bytes, for synthetic: bases only
  EagleWeights w_;
  int hidden_ = 0, vocab_ = 0, max_rows_ = 0, max_tokens_ = 0;
  std::vector<float> inv_freq_, k_cache_, v_cache_;
  int threads_ = 1;  // OpenMP threads the scratch is planned for
  std::vector<float> emb_, x_, xn_, qkv_, attn_, delta_, gate_up_, ffn_, out_, logits_, scratch_, scores_;
};

}  // namespace specq
