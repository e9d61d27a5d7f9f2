#include "spec/eagle_head.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "backend/cpu/ops.h"
#include "core/error.h"
#include "core/synthetic_rng.h"

namespace specq {

EagleWeights random_eagle_weights(const ModelConfig& c, uint64_t seed) {
  EagleWeights w;
  uint64_t stream = splitmix64(seed);
  auto make = [&](int64_t rows, int64_t cols, float offset, float scale) {
    auto values = std::make_shared<std::vector<float>>(size_t(rows * cols));
    const uint64_t s = ++stream;
    for (size_t i = 0; i < values->size(); ++i) (*values)[i] = synthetic_value(s, i, offset, scale);
    Weight t;
    t.dtype = DType::F32;
    t.shape = cols == 1 ? std::vector<int64_t>{rows} : std::vector<int64_t>{rows, cols};
    t.data = values->data();
    w.storage.push_back(std::shared_ptr<const void>(values, values->data()));
    return t;
  };
  auto linear = [&](int64_t out, int64_t in) { return make(out, in, 0.0f, std::sqrt(3.0f / float(in))); };
  auto vec = [&](const Weight& t) {
    const float* p = static_cast<const float*>(t.data);
    return std::vector<float>(p, p + t.numel());
  };
  const int64_t h = c.hidden_size;
  w.fc1 = linear(h, h);
  w.fc2 = linear(h, h);
  w.fc_bias = vec(make(h, 1, 0.0f, 0.1f));
  w.wq = linear(c.q_dim(), h);
  w.wk = linear(c.kv_dim(), h);
  w.wv = linear(c.kv_dim(), h);
  w.wo = linear(h, c.q_dim());
  w.ffn_norm = vec(make(h, 1, 1.0f, 0.1f));
  w.w_gate = linear(c.intermediate_size, h);
  w.w_up = linear(c.intermediate_size, h);
  w.w_down = linear(h, c.intermediate_size);
  return w;
}

// The head reads the base's embedding and LM head on the host. A synthetic: base has no host bytes
// (its values are a function of the index); make fp32 copies of these two tensors only.
Weight EagleHead::host_view(const Weight& w, std::vector<float>& storage) {
  if (w.data != nullptr) return w;
  SPECQ_CHECK(w.synthetic, "EAGLE head: a base-model tensor has no data");
  storage.resize(size_t(w.numel()));
  for (size_t i = 0; i < storage.size(); ++i) storage[i] = synthetic_value(w.seed, i, w.offset, w.scale);
  Weight out = w;
  out.dtype = DType::F32;
  out.synthetic = false;
  out.data = storage.data();
  return out;
}

EagleHead::EagleHead(const Model& base, EagleWeights weights, int max_rows, int max_tokens_per_forward)
    : config_(base.config), w_(std::move(weights)) {
  embed_ = host_view(base.weights.embed, host_embed_);
  lm_head_ = host_view(base.weights.lm_head, host_lm_head_);
  const ModelConfig& c = config_;
  hidden_ = c.hidden_size;
  vocab_ = c.vocab_size;
  max_rows_ = max_rows;
  max_tokens_ = std::min(max_tokens_per_forward, max_rows);
  auto check = [&](const Weight& t, int64_t rows, int64_t cols, const char* name) {
    SPECQ_CHECK(t.present() && t.rows() == rows && t.cols() == cols,
                "EAGLE head: {} has shape [{}, {}], expected [{}, {}]", name, t.rows(), t.cols(), rows, cols);
  };
  check(w_.fc1, hidden_, hidden_, "fc (embedding half)");
  check(w_.fc2, hidden_, hidden_, "fc (feature half)");
  check(w_.wq, c.q_dim(), hidden_, "q_proj");
  check(w_.wk, c.kv_dim(), hidden_, "k_proj");
  check(w_.wv, c.kv_dim(), hidden_, "v_proj");
  check(w_.wo, hidden_, c.q_dim(), "o_proj");
  check(w_.w_gate, c.intermediate_size, hidden_, "gate_proj");
  check(w_.w_up, c.intermediate_size, hidden_, "up_proj");
  check(w_.w_down, hidden_, c.intermediate_size, "down_proj");
  SPECQ_CHECK(w_.fc_bias.empty() || int(w_.fc_bias.size()) == hidden_, "EAGLE head: fc.bias has {} values",
              w_.fc_bias.size());
  SPECQ_CHECK(int(w_.ffn_norm.size()) == hidden_, "EAGLE head: post_attention_layernorm has {} values",
              w_.ffn_norm.size());

  inv_freq_ = rope_inv_freq(c);
  k_cache_.assign(size_t(max_rows_) * size_t(c.kv_dim()), 0.0f);
  v_cache_.assign(size_t(max_rows_) * size_t(c.kv_dim()), 0.0f);
  const size_t t = size_t(max_tokens_);
  for (auto [buffer, dim] : {std::pair{&emb_, hidden_}, {&x_, hidden_}, {&xn_, hidden_}, {&attn_, c.q_dim()},
                             {&delta_, hidden_}, {&ffn_, c.intermediate_size}, {&out_, hidden_}, {&logits_, vocab_}})
    buffer->assign(t * size_t(dim), 0.0f);
  qkv_.assign(t * size_t(c.q_dim() + 2 * c.kv_dim()), 0.0f);
  gate_up_.assign(t * size_t(2 * c.intermediate_size), 0.0f);
  const int widest = std::max({hidden_, c.q_dim(), c.intermediate_size});
  threads_ = omp_get_max_threads();
  scratch_.assign(size_t(threads_) * size_t(widest), 0.0f);
  scores_.assign(size_t(threads_) * size_t(max_rows_), 0.0f);
}

void EagleHead::forward(std::span<const int32_t> tokens, const float* features, std::span<const int32_t> positions,
                        int committed, int row0, const uint64_t* mask, int mask_stride, int logits_from) {
  const ModelConfig& c = config_;
  const int n = int(tokens.size());
  omp_set_num_threads(threads_);  // the scratch holds threads_ rows, whichever thread calls
  SPECQ_CHECK(n >= 1 && n <= max_tokens_ && positions.size() == tokens.size(), "EAGLE head: bad forward of {} inputs",
              n);
  SPECQ_CHECK(committed >= 0 && committed <= row0 && row0 + n <= max_rows_,
              "EAGLE head: rows [{}, {}) exceed its cache of {} rows", row0, row0 + n, max_rows_);
  const int64_t h = hidden_, q_dim = c.q_dim(), kv = c.kv_dim(), qkv_dim = q_dim + 2 * kv;
  const Weight& embed = embed_;
  for (int t = 0; t < n; ++t) {
    SPECQ_CHECK(tokens[size_t(t)] >= 0 && tokens[size_t(t)] < vocab_, "EAGLE head: token {} out of range",
                tokens[size_t(t)]);
    const auto* row =
        static_cast<const uint8_t*>(embed.data) + size_t(tokens[size_t(t)]) * size_t(h) * dtype_size(embed.dtype);
    cpu::to_float(row, embed.dtype, h, emb_.data() + t * h);
  }
  // e = fc1(embed) + bias + fc2(feature), kept in x_ as the residual stream.
  cpu::linear(emb_.data(), n, w_.fc1, w_.fc_bias.empty() ? nullptr : w_.fc_bias.data(), x_.data(), h, scratch_.data());
  cpu::linear(features, n, w_.fc2, nullptr, delta_.data(), h, scratch_.data());
  for (int64_t i = 0; i < n * h; ++i) x_[size_t(i)] += delta_[size_t(i)];

  // Attention straight on e (EAGLE skips the input norm).
  cpu::linear(x_.data(), n, w_.wq, nullptr, qkv_.data(), qkv_dim, scratch_.data());
  cpu::linear(x_.data(), n, w_.wk, nullptr, qkv_.data() + q_dim, qkv_dim, scratch_.data());
  cpu::linear(x_.data(), n, w_.wv, nullptr, qkv_.data() + q_dim + kv, qkv_dim, scratch_.data());
  cpu::rope(qkv_.data(), qkv_dim, n, c.num_heads, c.head_dim, positions.data(), inv_freq_.data());
  cpu::rope(qkv_.data() + q_dim, qkv_dim, n, c.num_kv_heads, c.head_dim, positions.data(), inv_freq_.data());
  for (int t = 0; t < n; ++t) {
    std::copy_n(qkv_.data() + t * qkv_dim + q_dim, kv, k_cache_.data() + (row0 + t) * kv);
    std::copy_n(qkv_.data() + t * qkv_dim + q_dim + kv, kv, v_cache_.data() + (row0 + t) * kv);
  }
  cpu::attention_rows(qkv_.data(), qkv_dim, k_cache_.data(), v_cache_.data(), committed, row0 + n, n, mask,
                      mask_stride, c.num_heads, c.num_kv_heads, c.head_dim, attn_.data(), scores_.data());
  cpu::linear(attn_.data(), n, w_.wo, nullptr, delta_.data(), h, scratch_.data());

  // a = e + attn; o = a + MLP(RMSNorm(a)).
  cpu::add_rmsnorm(x_.data(), delta_.data(), w_.ffn_norm.data(), c.rms_norm_eps, xn_.data(), n, int(h));
  const int64_t inter = c.intermediate_size;
  cpu::linear(xn_.data(), n, w_.w_gate, nullptr, gate_up_.data(), 2 * inter, scratch_.data());
  cpu::linear(xn_.data(), n, w_.w_up, nullptr, gate_up_.data() + inter, 2 * inter, scratch_.data());
  cpu::swiglu(gate_up_.data(), n, int(inter), ffn_.data());
  cpu::linear(ffn_.data(), n, w_.w_down, nullptr, delta_.data(), h, scratch_.data());
  for (int64_t i = 0; i < n * h; ++i) out_[size_t(i)] = x_[size_t(i)] + delta_[size_t(i)];

  if (logits_from < n)
    cpu::linear(out_.data() + logits_from * h, n - logits_from, lm_head_, nullptr,
                logits_.data() + int64_t(logits_from) * vocab_, vocab_, scratch_.data());
}

}  // namespace specq
