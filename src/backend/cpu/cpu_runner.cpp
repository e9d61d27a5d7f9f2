// The CPU backend: the Llama forward on fp32 activations, weights used in place.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/ops.h"
#include "core/error.h"
#include "core/timer.h"
#include "io/synthetic.h"
#include "model/llama_forward.h"
#include "model/runner.h"

namespace specq {
namespace {

struct CpuAct {
  std::vector<float> data;
  int64_t dim = 0;
  float* row(int t) { return data.data() + t * dim; }
};

// A linear layer as one or more weights whose outputs sit side by side (q|k|v, gate|up).
struct CpuLinear {
  int layer = -1;  // -1: the LM head
  LinearSlot slot = LinearSlot::Qkv;
  std::vector<const Weight*> parts;
  std::vector<float> bias;  // concatenated, empty if none
};

class CpuRunner final : public Runner {
 public:
  CpuRunner(Model& model, const RunnerOptions& options) : model_(model), config_(model.config) {
    materialize_synthetic(model_);
    validate_weights(model_);
    const ModelConfig& c = config_;
    if (options.threads > 0) omp_set_num_threads(options.threads);
    threads_ = omp_get_max_threads();
    observe_ = options.observe_linear_input;
    max_context_ = options.max_context > 0 ? options.max_context : std::min(c.max_position_embeddings, 4096);
    max_tokens_ = options.max_tokens_per_forward > 0 ? options.max_tokens_per_forward : 512;
    max_tokens_ = std::min(max_tokens_, max_context_);

    inv_freq_ = rope_inv_freq(c);
    auto to_vec = [](const Weight& w) {
      std::vector<float> v(size_t(w.numel()));
      cpu::to_float(w.data, w.dtype, w.numel(), v.data());
      return v;
    };
    layers_.resize(size_t(c.num_layers));
    for (int l = 0; l < c.num_layers; ++l) {
      const LayerWeights& lw = model_.weights.layers[size_t(l)];
      Layer& layer = layers_[size_t(l)];
      layer.attn_norm = to_vec(lw.attn_norm);
      layer.ffn_norm = to_vec(lw.ffn_norm);
      layer.qkv = {l, LinearSlot::Qkv, {&lw.wq, &lw.wk, &lw.wv}, {}};
      if (c.attention_bias) {
        for (const Weight* b : {&lw.bq, &lw.bk, &lw.bv}) {
          const std::vector<float> v = to_vec(*b);
          layer.qkv.bias.insert(layer.qkv.bias.end(), v.begin(), v.end());
        }
      }
      layer.wo = {l, LinearSlot::O, {&lw.wo}, {}};
      layer.gate_up = {l, LinearSlot::GateUp, {&lw.w_gate, &lw.w_up}, {}};
      layer.down = {l, LinearSlot::Down, {&lw.w_down}, {}};
      layer.k_cache.assign(size_t(max_context_) * size_t(c.kv_dim()), 0.0f);
      layer.v_cache.assign(size_t(max_context_) * size_t(c.kv_dim()), 0.0f);
    }
    final_norm_ = to_vec(model_.weights.final_norm);
    lm_head_.parts = {&model_.weights.lm_head};

    auto plan = [&](CpuAct& a, int64_t dim) {
      a.dim = dim;
      a.data.assign(size_t(max_tokens_) * size_t(dim), 0.0f);
    };
    plan(x_, c.hidden_size);
    plan(xn_, c.hidden_size);
    plan(qkv_, c.q_dim() + 2 * c.kv_dim());
    plan(attn_, c.q_dim());
    plan(delta_, c.hidden_size);
    plan(gate_up_, 2 * int64_t(c.intermediate_size));
    plan(ffn_, c.intermediate_size);
    plan(logits_, c.vocab_size);
    argmax_.assign(size_t(max_tokens_), 0);
    sampled_.assign(size_t(max_tokens_), 0);
    const int64_t widest = std::max<int64_t>({c.hidden_size, c.q_dim(), c.intermediate_size});
    linear_scratch_.assign(size_t(threads_) * size_t(widest), 0.0f);
    scores_.assign(size_t(threads_) * size_t(max_context_ + max_tokens_), 0.0f);
  }

  const ModelConfig& config() const override { return config_; }
  Device device() const override { return Device::Cpu; }
  int max_context() const override { return max_context_; }
  int max_tokens_per_forward() const override { return max_tokens_; }

  ForwardResult forward(const ForwardRequest& request) override {
    validate_request(*this, request);
    // OpenMP's thread count is per calling thread; the scratch was planned for threads_, whichever
    // thread (a server's engine thread, say) runs this forward.
    omp_set_num_threads(threads_);
    request_ = &request;
    const int n = int(request.tokens.size());
    llama_forward(*this, config_.num_layers, n);
    request_ = nullptr;
    return result_;
  }

  void compact_kv(std::span<const int32_t> src_rows, int dst_start) override {
    const int64_t kv = config_.kv_dim();
    for (Layer& layer : layers_) {
      for (size_t i = 0; i < src_rows.size(); ++i) {
        const int64_t src = src_rows[i], dst = dst_start + int64_t(i);
        SPECQ_CHECK(src >= dst && src < max_context_, "compact_kv: bad source row {} for destination {}", src, dst);
        if (src == dst) continue;
        std::copy_n(layer.k_cache.data() + src * kv, kv, layer.k_cache.data() + dst * kv);
        std::copy_n(layer.v_cache.data() + src * kv, kv, layer.v_cache.data() + dst * kv);
      }
    }
  }

  double measure_copy_bandwidth() override {
    const size_t bytes = size_t(256) << 20;
    std::vector<uint8_t> a(bytes, 1), b(bytes, 2);
    double best = 0.0;
    for (int rep = 0; rep < 5; ++rep) {
      Stopwatch clock;
#pragma omp parallel for schedule(static)
      for (int64_t chunk = 0; chunk < 64; ++chunk)
        std::memcpy(b.data() + chunk * (bytes / 64), a.data() + chunk * (bytes / 64), bytes / 64);
      best = std::max(best, 2.0 * double(bytes) / clock.seconds());
      std::swap(a, b);
    }
    return best;
  }

  size_t weight_bytes() const override { return model_.weight_bytes(); }

  // ---- backend interface of llama_forward ----
  using Act = CpuAct;
  CpuAct& act_x() { return x_; }
  CpuAct& act_xn() { return xn_; }
  CpuAct& act_qkv() { return qkv_; }
  CpuAct& act_attn() { return attn_; }
  CpuAct& act_delta() { return delta_; }
  CpuAct& act_gate_up() { return gate_up_; }
  CpuAct& act_ffn() { return ffn_; }
  const std::vector<float>& norm(int l, NormSlot slot) const {
    return slot == NormSlot::Attention ? layers_[size_t(l)].attn_norm : layers_[size_t(l)].ffn_norm;
  }
  const std::vector<float>& final_norm() const { return final_norm_; }
  const CpuLinear& qkv(int l) const { return layers_[size_t(l)].qkv; }
  const CpuLinear& wo(int l) const { return layers_[size_t(l)].wo; }
  const CpuLinear& gate_up(int l) const { return layers_[size_t(l)].gate_up; }
  const CpuLinear& down(int l) const { return layers_[size_t(l)].down; }

  void embed(CpuAct& out, int n) {
    const Weight& table = model_.weights.embed;
    const int64_t h = config_.hidden_size;
    for (int t = 0; t < n; ++t) {
      const auto* row = static_cast<const uint8_t*>(table.data) +
                        size_t(request_->tokens[size_t(t)]) * size_t(h) * dtype_size(table.dtype);
      cpu::to_float(row, table.dtype, h, out.row(t));
    }
  }

  void add_rmsnorm(CpuAct& x, const CpuAct* delta, const std::vector<float>& w, CpuAct& out, int n) {
    cpu::add_rmsnorm(x.data.data(), delta != nullptr ? delta->data.data() : nullptr, w.data(), config_.rms_norm_eps,
                     out.data.data(), n, int(x.dim));
  }

  void linear(const CpuLinear& lin, const CpuAct& in, CpuAct& out, int n) {
    if (observe_ && lin.layer >= 0) observe_({lin.layer, lin.slot, in.data.data(), n, in.dim});
    int64_t column = 0;
    for (const Weight* part : lin.parts) {
      cpu::linear(in.data.data(), n, *part, lin.bias.empty() ? nullptr : lin.bias.data() + column,
                  out.data.data() + column, out.dim, linear_scratch_.data());
      column += part->rows();
    }
  }

  void rope_store_kv(int l, CpuAct& qkv_act, int n) {
    const ModelConfig& c = config_;
    const int32_t* pos = request_->positions.data();
    float* q = qkv_act.data.data();
    float* k = q + c.q_dim();
    cpu::rope(q, qkv_act.dim, n, c.num_heads, c.head_dim, pos, inv_freq_.data());
    cpu::rope(k, qkv_act.dim, n, c.num_kv_heads, c.head_dim, pos, inv_freq_.data());
    Layer& layer = layers_[size_t(l)];
    const int64_t kv = c.kv_dim();
    for (int t = 0; t < n; ++t) {
      const int64_t row = request_->cache_len + t;
      std::copy_n(qkv_act.row(t) + c.q_dim(), kv, layer.k_cache.data() + row * kv);
      std::copy_n(qkv_act.row(t) + c.q_dim() + kv, kv, layer.v_cache.data() + row * kv);
    }
  }

  void attention(int l, const CpuAct& qkv_act, CpuAct& out, int n) {
    const Layer& layer = layers_[size_t(l)];
    cpu::attention(qkv_act.data.data(), qkv_act.dim, layer.k_cache.data(), layer.v_cache.data(),
                   request_->cache_len, n, request_->tree_mask, config_.num_heads, config_.num_kv_heads,
                   config_.head_dim, out.data.data(), scores_.data());
  }

  void swiglu(const CpuAct& gate_up_act, CpuAct& out, int n) {
    cpu::swiglu(gate_up_act.data.data(), n, config_.intermediate_size, out.data.data());
  }

  void lm_head(const CpuAct& xn, int n) {
    using Rows = ForwardRequest::Rows;
    const int first = request_->logits_rows == Rows::Last ? n - 1 : 0;
    const int rows = request_->logits_rows == Rows::None ? 0 : n - first;
    const int64_t vocab = config_.vocab_size;
    if (rows > 0) {
      cpu::linear(xn.data.data() + first * xn.dim, rows, *lm_head_.parts[0], nullptr, logits_.data.data(), vocab,
                  linear_scratch_.data());
      for (int r = 0; r < rows; ++r) argmax_[size_t(r)] = cpu::argmax(logits_.row(r), int(vocab));
      if (const DrawParams* draw = request_->device_draw; draw != nullptr)
        for (int r = 0; r < rows; ++r)
          sampled_[size_t(r)] = cpu::sample_counter_based(logits_.row(r), int(vocab), *draw, draw->draw + uint64_t(r));
    }
    result_.sampled =
        std::span<const int32_t>(sampled_.data(), request_->device_draw != nullptr ? size_t(rows) : size_t(0));
    result_.logits = std::span<const float>(logits_.data.data(), size_t(rows) * size_t(vocab));
    result_.argmax = std::span<const int32_t>(argmax_.data(), size_t(rows));
    // xn holds the final-normed hidden states; hand out a view (valid until the next forward).
    const int hidden_first = request_->hidden_rows == Rows::Last ? n - 1 : 0;
    const int hidden_count = request_->hidden_rows == Rows::None ? 0 : n - hidden_first;
    result_.hidden =
        std::span<const float>(xn.data.data() + hidden_first * xn.dim, size_t(hidden_count) * size_t(xn.dim));
  }

 private:
  struct Layer {
    std::vector<float> attn_norm, ffn_norm;
    CpuLinear qkv, wo, gate_up, down;
    std::vector<float> k_cache, v_cache;
  };

  Model& model_;
  ModelConfig config_;
  std::function<void(const LinearInput&)> observe_;
  int threads_ = 1;
  int max_context_ = 0;
  int max_tokens_ = 0;
  std::vector<float> inv_freq_;
  std::vector<Layer> layers_;
  std::vector<float> final_norm_;
  CpuLinear lm_head_;
  CpuAct x_, xn_, qkv_, attn_, delta_, gate_up_, ffn_, logits_;
  std::vector<int32_t> argmax_;
  std::vector<int32_t> sampled_;  // [rows] when a request asks for draws
  std::vector<float> linear_scratch_;
  std::vector<float> scores_;
  const ForwardRequest* request_ = nullptr;
  ForwardResult result_;
};

}  // namespace

std::unique_ptr<Runner> make_cpu_runner(Model& model, const RunnerOptions& options) {
  return std::make_unique<CpuRunner>(model, options);
}

}  // namespace specq
