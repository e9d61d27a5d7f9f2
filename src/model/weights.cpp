#include "model/weights.h"

#include <fmt/ranges.h>

#include "core/error.h"

namespace specq {
namespace {

template <typename F>
void for_each_weight(const Model& m, F&& f) {
  const ModelWeights& w = m.weights;
  f("embed", w.embed);
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& l = w.layers[i];
    const std::string p = fmt::format("layers.{}.", i);
    f(p + "attn_norm", l.attn_norm);
    f(p + "wq", l.wq);
    f(p + "wk", l.wk);
    f(p + "wv", l.wv);
    f(p + "wo", l.wo);
    f(p + "bq", l.bq);
    f(p + "bk", l.bk);
    f(p + "bv", l.bv);
    f(p + "ffn_norm", l.ffn_norm);
    f(p + "w_gate", l.w_gate);
    f(p + "w_up", l.w_up);
    f(p + "w_down", l.w_down);
  }
  f("final_norm", w.final_norm);
  if (w.lm_head.data != w.embed.data) f("lm_head", w.lm_head);
}

void expect(const std::string& name, const Weight& w, std::vector<int64_t> shape) {
  SPECQ_CHECK(w.present(), "tensor '{}' is missing", name);
  SPECQ_CHECK(w.shape == shape, "tensor '{}' has shape [{}], expected [{}]", name, fmt::join(w.shape, ", "),
              fmt::join(shape, ", "));
  SPECQ_CHECK(w.dtype == DType::F32 || w.dtype == DType::F16 || w.dtype == DType::BF16,
              "tensor '{}' has dtype {}, expected a floating-point dtype (f32, f16, bf16)", name,
              dtype_name(w.dtype));
}

}  // namespace

size_t Model::weight_bytes() const {
  size_t total = 0;
  for_each_weight(*this, [&](const std::string&, const Weight& w) { total += w.present() ? w.nbytes() : 0; });
  return total;
}

int64_t Model::parameter_count() const {
  int64_t total = 0;
  for_each_weight(*this, [&](const std::string&, const Weight& w) { total += w.present() ? w.numel() : 0; });
  return total;
}

void validate_weights(const Model& model) {
  const ModelConfig& c = model.config;
  c.validate();
  const ModelWeights& w = model.weights;
  const int64_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), inter = c.intermediate_size;
  expect("model.embed_tokens.weight", w.embed, {c.vocab_size, h});
  SPECQ_CHECK(int(w.layers.size()) == c.num_layers, "model has {} layers, config says {}", w.layers.size(),
              c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) {
    const LayerWeights& l = w.layers[size_t(i)];
    const std::string p = fmt::format("model.layers.{}.", i);
    expect(p + "input_layernorm.weight", l.attn_norm, {h});
    expect(p + "self_attn.q_proj.weight", l.wq, {q, h});
    expect(p + "self_attn.k_proj.weight", l.wk, {kv, h});
    expect(p + "self_attn.v_proj.weight", l.wv, {kv, h});
    expect(p + "self_attn.o_proj.weight", l.wo, {h, q});
    if (c.attention_bias) {
      expect(p + "self_attn.q_proj.bias", l.bq, {q});
      expect(p + "self_attn.k_proj.bias", l.bk, {kv});
      expect(p + "self_attn.v_proj.bias", l.bv, {kv});
    }
    expect(p + "post_attention_layernorm.weight", l.ffn_norm, {h});
    expect(p + "mlp.gate_proj.weight", l.w_gate, {inter, h});
    expect(p + "mlp.up_proj.weight", l.w_up, {inter, h});
    expect(p + "mlp.down_proj.weight", l.w_down, {h, inter});
  }
  expect("model.norm.weight", w.final_norm, {h});
  expect("lm_head.weight", w.lm_head, {c.vocab_size, h});
}

}  // namespace specq
