// Helpers shared by the speculative-decoding tests: small models, reference generation, statistics.
#pragma once
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/ops.h"
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

// Upper tail of the chi-square distribution with `dof` degrees of freedom: Q(dof/2, x/2).
inline double chi_square_p_value(double x, int dof) {
  const double a = 0.5 * dof, z = 0.5 * x;
  if (z <= 0.0) return 1.0;
  const double log_prefix = a * std::log(z) - z - std::lgamma(a);
  if (z < a + 1.0) {  // series for the lower part P, then Q = 1 - P
    double term = 1.0 / a, sum = term;
    for (int n = 1; n < 1000; ++n) {
      term *= z / (a + n);
      sum += term;
      if (term < sum * 1e-15) break;
    }
    return std::max(0.0, 1.0 - sum * std::exp(log_prefix));
  }
  // Continued fraction for Q (modified Lentz).
  double b = z + 1.0 - a, c = 1e300, d = 1.0 / b, h = d;
  for (int i = 1; i < 1000; ++i) {
    const double an = -i * (i - a);
    b += 2.0;
    d = an * d + b;
    if (std::fabs(d) < 1e-300) d = 1e-300;
    c = b + an / c;
    if (std::fabs(c) < 1e-300) c = 1e-300;
    d = 1.0 / d;
    const double delta = d * c;
    h *= delta;
    if (std::fabs(delta - 1.0) < 1e-15) break;
  }
  return std::exp(log_prefix) * h;
}

struct ChiSquare {
  double statistic = 0.0;
  int dof = 0;
  double p_value = 1.0;
};

// Pearson's test of observed counts against expected probabilities; cells expected below 5 are
// pooled into one, and a count where the probability is 0 fails the test outright.
inline ChiSquare chi_square(const std::vector<int64_t>& counts, const std::vector<double>& probs) {
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  ChiSquare r;
  double pooled_expected = 0.0, pooled_observed = 0.0;
  int cells = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double expected = probs[i] * double(total);
    if (probs[i] <= 0.0) {
      if (counts[i] > 0) return {1e300, 1, 0.0};
      continue;
    }
    if (expected < 5.0) {
      pooled_expected += expected;
      pooled_observed += double(counts[i]);
      continue;
    }
    r.statistic += (double(counts[i]) - expected) * (double(counts[i]) - expected) / expected;
    ++cells;
  }
  if (pooled_expected > 0.0) {
    r.statistic += (pooled_observed - pooled_expected) * (pooled_observed - pooled_expected) / pooled_expected;
    ++cells;
  }
  r.dof = std::max(1, cells - 1);
  r.p_value = chi_square_p_value(r.statistic, r.dof);
  return r;
}

}  // namespace specq::test
