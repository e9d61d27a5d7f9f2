#include "spec/eagle_head.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "backend/cpu/ops.h"
#include "core/error.h"
#include "core/synthetic_rng.h"
#include "spec/frspec.h"

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

void validate_eagle_weights(const EagleWeights& w, const ModelConfig& c) {
  const int64_t h = c.hidden_size;
  auto check = [&](const Weight& t, int64_t rows, int64_t cols, const char* name) {
    SPECQ_CHECK(t.present() && t.rows() == rows && t.cols() == cols,
                "EAGLE head: {} has shape [{}, {}], expected [{}, {}]", name, t.rows(), t.cols(), rows, cols);
  };
  check(w.fc1, h, h, "fc (embedding half)");
  check(w.fc2, h, h, "fc (feature half)");
  check(w.wq, c.q_dim(), h, "q_proj");
  check(w.wk, c.kv_dim(), h, "k_proj");
  check(w.wv, c.kv_dim(), h, "v_proj");
  check(w.wo, h, c.q_dim(), "o_proj");
  check(w.w_gate, c.intermediate_size, h, "gate_proj");
  check(w.w_up, c.intermediate_size, h, "up_proj");
  check(w.w_down, h, c.intermediate_size, "down_proj");
  SPECQ_CHECK(w.fc_bias.empty() || int64_t(w.fc_bias.size()) == h, "EAGLE head: fc.bias has {} values",
              w.fc_bias.size());
  SPECQ_CHECK(int64_t(w.ffn_norm.size()) == h, "EAGLE head: post_attention_layernorm has {} values",
              w.ffn_norm.size());
  if (!w.draft_vocab.empty()) validate_token_map(w.draft_vocab, c.vocab_size, "the EAGLE head's draft vocabulary");
}

Weight gather_lm_head_rows(const Weight& lm_head, std::span<const int32_t> ids, std::vector<float>& storage) {
  SPECQ_CHECK(!lm_head.quantized() && lm_head.shape.size() == 2,
              "a draft vocabulary (FR-Spec) needs a float LM head (this one is {})", weight_format_name(lm_head.format));
  SPECQ_CHECK(lm_head.data != nullptr || lm_head.synthetic, "EAGLE head: the LM head has no data");
  const int64_t cols = lm_head.cols();
  storage.resize(ids.size() * size_t(cols));
  for (size_t r = 0; r < ids.size(); ++r) {
    SPECQ_CHECK(ids[r] >= 0 && ids[r] < lm_head.rows(), "draft vocabulary id {} beyond the LM head's {} rows",
                ids[r], lm_head.rows());
    float* dst = storage.data() + r * size_t(cols);
    const size_t first = size_t(ids[r]) * size_t(cols);
    if (lm_head.synthetic) {
      for (int64_t c = 0; c < cols; ++c)
        dst[c] = synthetic_value(lm_head.seed, first + size_t(c), lm_head.offset, lm_head.scale);
    } else {
      cpu::to_float(static_cast<const uint8_t*>(lm_head.data) + first * dtype_size(lm_head.dtype), lm_head.dtype,
                    cols, dst);
    }
  }
  Weight out;
  out.dtype = DType::F32;
  out.shape = {int64_t(ids.size()), cols};
  out.data = storage.data();
  return out;
}

// The head reads the base's embedding and LM head on the host. A synthetic: base has no host bytes
// (its values are a function of the index); make fp32 copies of these two tensors only.
Weight CpuEagleHead::host_view(const Weight& w, std::vector<float>& storage) {
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

std::unique_ptr<EagleHead> make_eagle_head(const Model& base, EagleWeights weights, Runner& runner, int max_rows,
                                           int max_tokens_per_forward) {
  if (runner.device() == Device::Cuda)
    return make_cuda_eagle_head(base, std::move(weights), runner, max_rows, max_tokens_per_forward);
  return std::make_unique<CpuEagleHead>(base, std::move(weights), max_rows, max_tokens_per_forward);
}

#if !defined(SPECQ_HAVE_CUDA)
std::unique_ptr<EagleHead> make_cuda_eagle_head(const Model&, EagleWeights, Runner&, int, int, bool) {
  fail("this build of specq has no CUDA backend (nvcc was not found when it was configured)");
}
#endif

CpuEagleHead::CpuEagleHead(const Model& base, EagleWeights weights, int max_rows, int max_tokens_per_forward)
    : config_(base.config), w_(std::move(weights)) {
  embed_ = host_view(base.weights.embed, host_embed_);
  const ModelConfig& c = config_;
  hidden_ = c.hidden_size;
  vocab_ = c.vocab_size;
  validate_eagle_weights(w_, c);
  lm_head_ = w_.draft_vocab.empty() ? host_view(base.weights.lm_head, host_lm_head_)
                                    : gather_lm_head_rows(base.weights.lm_head, w_.draft_vocab, host_lm_head_);
  head_vocab_ = int(lm_head_.rows());
  max_rows_ = max_rows;
  max_tokens_ = std::min(max_tokens_per_forward, max_rows);

  inv_freq_ = rope_inv_freq(c);
  k_cache_.assign(size_t(max_rows_) * size_t(c.kv_dim()), 0.0f);
  v_cache_.assign(size_t(max_rows_) * size_t(c.kv_dim()), 0.0f);
  features_.assign(size_t(max_rows_) * size_t(hidden_), 0.0f);
  order_.assign(size_t(head_vocab_), 0);
  if (head_vocab_ != vocab_) draft_logits_.assign(size_t(max_tokens_) * size_t(head_vocab_), 0.0f);
  const size_t t = size_t(max_tokens_);
  for (auto [buffer, dim] : {std::pair{&feat_, hidden_}, {&emb_, hidden_}, {&x_, hidden_}, {&xn_, hidden_},
                             {&attn_, c.q_dim()}, {&delta_, hidden_}, {&ffn_, c.intermediate_size}, {&out_, hidden_},
                             {&logits_, vocab_}})
    buffer->assign(t * size_t(dim), 0.0f);
  qkv_.assign(t * size_t(c.q_dim() + 2 * c.kv_dim()), 0.0f);
  gate_up_.assign(t * size_t(2 * c.intermediate_size), 0.0f);
  const int widest = std::max({hidden_, c.q_dim(), c.intermediate_size});
  threads_ = omp_get_max_threads();
  scratch_.assign(size_t(threads_) * size_t(widest), 0.0f);
  scores_.assign(size_t(threads_) * size_t(max_rows_), 0.0f);
}

void CpuEagleHead::set_features(int first_pos, const HiddenRows& rows) {
  SPECQ_CHECK(first_pos >= 0 && first_pos + rows.count <= max_rows_,
              "EAGLE head: hidden states of positions [{}, {}) beyond its {} positions", first_pos,
              first_pos + rows.count, max_rows_);
  SPECQ_CHECK(!rows.host.empty(), "the CPU EAGLE head needs the verifier's hidden states on the host");
  const size_t h = size_t(hidden_), available = rows.host.size() / h;
  for (int r = 0; r < rows.count; ++r) {
    const size_t src = rows.select.empty() ? size_t(r) : size_t(rows.select[size_t(r)]);
    SPECQ_CHECK(src < available, "EAGLE head: hidden row {} of {}", src, available);
    std::copy_n(rows.host.data() + src * h, h, features_.data() + size_t(first_pos + r) * h);
  }
}

void CpuEagleHead::forward(const EagleStep& step) {
  const ModelConfig& c = config_;
  const std::span<const int32_t> tokens = step.tokens, positions = step.positions;
  const int n = int(tokens.size()), committed = step.committed, row0 = step.row0;
  omp_set_num_threads(threads_);  // the scratch holds threads_ rows, whichever thread calls
  SPECQ_CHECK(n >= 1 && n <= max_tokens_ && positions.size() == tokens.size() &&
                  step.features.size() == tokens.size(),
              "EAGLE head: bad forward of {} inputs", n);
  SPECQ_CHECK(committed >= 0 && committed <= row0 && row0 + n <= max_rows_,
              "EAGLE head: rows [{}, {}) exceed its cache of {} rows", row0, row0 + n, max_rows_);
  SPECQ_CHECK(step.logits_from >= 0 && step.logits_from <= n && step.top_k >= 0 && step.top_k <= head_vocab_,
              "EAGLE head: bad logits rows from {} or top-k {}", step.logits_from, step.top_k);
  // Features first, into their own buffer: a deeper level reads the previous forward's outputs.
  for (int t = 0; t < n; ++t) {
    const int32_t f = step.features[size_t(t)];
    SPECQ_CHECK(f < max_rows_ && -1 - f < max_tokens_, "EAGLE head: feature source {} out of range", f);
    const float* src = f >= 0 ? features_.data() + size_t(f) * size_t(hidden_)
                              : out_.data() + size_t(-1 - f) * size_t(hidden_);
    std::copy_n(src, hidden_, feat_.data() + size_t(t) * size_t(hidden_));
  }
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
  cpu::linear(feat_.data(), n, w_.fc2, nullptr, delta_.data(), h, scratch_.data());
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
  cpu::attention_rows(qkv_.data(), qkv_dim, k_cache_.data(), v_cache_.data(), committed, row0 + n, n, step.mask,
                      step.mask_stride, c.num_heads, c.num_kv_heads, c.head_dim, attn_.data(), scores_.data());
  cpu::linear(attn_.data(), n, w_.wo, nullptr, delta_.data(), h, scratch_.data());

  // a = e + attn; o = a + MLP(RMSNorm(a)).
  cpu::add_rmsnorm(x_.data(), delta_.data(), w_.ffn_norm.data(), c.rms_norm_eps, xn_.data(), n, int(h));
  const int64_t inter = c.intermediate_size;
  cpu::linear(xn_.data(), n, w_.w_gate, nullptr, gate_up_.data(), 2 * inter, scratch_.data());
  cpu::linear(xn_.data(), n, w_.w_up, nullptr, gate_up_.data() + inter, 2 * inter, scratch_.data());
  cpu::swiglu(gate_up_.data(), n, int(inter), ffn_.data());
  cpu::linear(ffn_.data(), n, w_.w_down, nullptr, delta_.data(), h, scratch_.data());
  for (int64_t i = 0; i < n * h; ++i) out_[size_t(i)] = x_[size_t(i)] + delta_[size_t(i)];

  // Logits over the head's rows (a draft vocabulary's, or the whole vocabulary's).
  const int logits_from = step.logits_from, hv = head_vocab_;
  float* head_logits = hv == vocab_ ? logits_.data() : draft_logits_.data();
  if (logits_from < n)
    cpu::linear(out_.data() + logits_from * h, n - logits_from, lm_head_, nullptr,
                head_logits + int64_t(logits_from) * hv, hv, scratch_.data());
  if (hv != vocab_) {  // the whole vocabulary's view: -inf where the draft vocabulary has no row
    const std::vector<int32_t>& ids = w_.draft_vocab;
    for (int i = logits_from; i < n; ++i) {
      float* full = logits_.data() + size_t(i) * size_t(vocab_);
      std::fill_n(full, vocab_, -std::numeric_limits<float>::infinity());
      for (int j = 0; j < hv; ++j) full[ids[size_t(j)]] = head_logits[size_t(i) * size_t(hv) + size_t(j)];
    }
  }
  top_k_ = step.top_k;
  if (top_k_ == 0) return;
  if (top_ids_.size() < size_t(max_tokens_) * size_t(top_k_)) {  // grows once, for the drafter's k
    top_ids_.resize(size_t(max_tokens_) * size_t(top_k_));
    top_logp_.resize(top_ids_.size());
  }
  for (int i = logits_from; i < n; ++i) {
    int32_t* ids = top_ids_.data() + size_t(i) * size_t(top_k_);
    cpu::top_k_logprobs(head_logits + size_t(i) * size_t(hv), hv, top_k_, ids,
                        top_logp_.data() + size_t(i) * size_t(top_k_), order_.data());
    if (hv != vocab_)
      for (int j = 0; j < top_k_; ++j) ids[j] = w_.draft_vocab[size_t(ids[j])];
  }
}

}  // namespace specq
