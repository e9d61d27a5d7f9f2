// Helpers shared by the speculative-decoding tests: small models, reference generation, statistics.
#pragma once
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/ops.h"
#include "chi_square.h"
#include "core/dtype.h"
#include "core/synthetic_rng.h"
#include "gen/generate.h"
#include "io/loader.h"
#include "io/synthetic.h"
#include "model/runner.h"

namespace specq::test {

inline std::string stories260k_path() { return std::string(SPECQ_SHARED_DIR) + "/models/stories260K"; }

inline RunnerOptions small_runner(int max_context = 320) {
  RunnerOptions o;
  o.max_context = max_context;
  o.threads = 1;  // the test machines are small and shared; one thread is the fastest there
  return o;
}

// A random Llama model with fp32 weights; logit_scale sharpens or flattens its distributions.
inline Model toy_model(int vocab, int hidden, int layers, uint64_t seed, float logit_scale) {
  Model m;
  ModelConfig& c = m.config;
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = 2 * hidden;
  c.num_layers = layers;
  c.num_heads = 2;
  c.num_kv_heads = 1;
  c.head_dim = hidden / 2;
  c.max_position_embeddings = 512;
  c.dtype = DType::F32;
  c.bos_token_id = 1;
  m.source = "toy";
  uint64_t stream = seed;
  auto make = [&](std::vector<int64_t> shape, float offset, float scale) {
    Weight w;
    w.dtype = DType::F32;
    w.shape = std::move(shape);
    auto values = std::make_shared<std::vector<float>>(size_t(w.numel()));
    const uint64_t s = splitmix64(++stream);
    for (size_t i = 0; i < values->size(); ++i) (*values)[i] = synthetic_value(s, i, offset, scale);
    w.data = values->data();
    m.storage.push_back(std::shared_ptr<const void>(values, values->data()));
    return w;
  };
  auto linear = [&](int64_t out, int64_t in) { return make({out, in}, 0.0f, std::sqrt(3.0f / float(in))); };
  const int64_t h = hidden;
  m.weights.embed = make({vocab, h}, 0.0f, 1.0f);
  for (int l = 0; l < layers; ++l) {
    LayerWeights lw;
    lw.attn_norm = make({h}, 1.0f, 0.1f);
    lw.wq = linear(c.q_dim(), h);
    lw.wk = linear(c.kv_dim(), h);
    lw.wv = linear(c.kv_dim(), h);
    lw.wo = linear(h, c.q_dim());
    lw.ffn_norm = make({h}, 1.0f, 0.1f);
    lw.w_gate = linear(c.intermediate_size, h);
    lw.w_up = linear(c.intermediate_size, h);
    lw.w_down = linear(h, c.intermediate_size);
    m.weights.layers.push_back(lw);
  }
  m.weights.final_norm = make({h}, 1.0f, 0.1f);
  m.weights.lm_head = make({vocab, h}, 0.0f, logit_scale * std::sqrt(3.0f / float(h)));
  return m;
}

// The same model with only its first `layers` layers (a cheap, related draft).
inline Model truncated(Model m, int layers) {
  m.weights.layers.resize(size_t(layers));
  m.config.num_layers = layers;
  return m;
}

// The same model with every weight rounded to bf16 (a reduced-precision draft).
inline Model rounded_to_bf16(Model m) {
  materialize_synthetic(m);
  auto convert = [&](Weight& w) {
    if (!w.present()) return;
    auto bytes = std::make_shared<std::vector<uint16_t>>(size_t(w.numel()));
    std::vector<float> values(size_t(w.numel()));
    cpu::to_float(w.data, w.dtype, w.numel(), values.data());
    for (size_t i = 0; i < values.size(); ++i) (*bytes)[i] = float_to_bf16(values[i]);
    w.dtype = DType::BF16;
    w.data = bytes->data();
    m.storage.push_back(std::shared_ptr<const void>(bytes, bytes->data()));
  };
  const bool tied = m.weights.lm_head.data == m.weights.embed.data;
  convert(m.weights.embed);
  for (LayerWeights& l : m.weights.layers)
    for (Weight* w : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down})
      convert(*w);
  convert(m.weights.final_norm);
  if (tied)
    m.weights.lm_head = m.weights.embed;
  else
    convert(m.weights.lm_head);
  m.config.dtype = DType::BF16;
  return m;
}


}  // namespace specq::test
