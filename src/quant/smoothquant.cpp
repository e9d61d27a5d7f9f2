#include "quant/smoothquant.h"

#include <algorithm>
#include <cmath>

#include "backend/cpu/ops.h"
#include "core/error.h"

namespace specq::quant {
namespace {

// Replaces w's bytes by an f32 copy the model owns (checkpoint bytes are read-only mappings) and
// returns it for editing.
float* owned_f32(Model& model, Weight& w) {
  SPECQ_CHECK(!w.quantized() && w.present() && w.data != nullptr, "SmoothQuant needs dense host weights");
  std::shared_ptr<float[]> copy(new float[size_t(w.numel())]);
  cpu::to_float(w.data, w.dtype, w.numel(), copy.get());
  model.storage.push_back(std::shared_ptr<const void>(copy, copy.get()));
  w.data = copy.get();
  w.dtype = DType::F32;
  return copy.get();
}

// Raises max[j] to the largest |w[., j]| of an [n, k] matrix.
void column_abs_max(const float* w, int64_t n, int64_t k, std::vector<float>& max) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < k; ++j) max[size_t(j)] = std::max(max[size_t(j)], std::fabs(w[r * k + j]));
}

void scale_columns(float* w, int64_t n, int64_t k, const std::vector<float>& s) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < k; ++j) w[r * k + j] *= s[size_t(j)];
}

struct Matrix {
  float* data;
  int64_t n, k;
};

// One input shared by `consumers` and produced by a norm: norm[j] /= s_j, columns j *= s_j.
void smooth_after_norm(float* norm, std::initializer_list<Matrix> consumers, const std::vector<float>& act_max,
                       double alpha) {
  const int64_t k = consumers.begin()->k;
  std::vector<float> weight_max(size_t(k), 0.0f);
  for (const Matrix& m : consumers) column_abs_max(m.data, m.n, m.k, weight_max);
  const std::vector<float> s = smoothing_factors(act_max, weight_max, alpha);
  for (int64_t j = 0; j < k; ++j) norm[j] /= s[size_t(j)];
  for (const Matrix& m : consumers) scale_columns(m.data, m.n, m.k, s);
}

}  // namespace

void observe_ranges(std::vector<LayerRanges>& ranges, const LinearInput& in) {
  std::vector<float>& max = ranges.at(size_t(in.layer))[size_t(in.slot)];
  if (max.empty()) max.assign(size_t(in.dim), 0.0f);
  SPECQ_CHECK(int64_t(max.size()) == in.dim, "activation ranges: layer {} input has {} channels, then {}", in.layer,
              max.size(), in.dim);
  column_abs_max(in.rows, in.n, in.dim, max);
}

std::vector<float> smoothing_factors(const std::vector<float>& act_max, const std::vector<float>& weight_max,
                                     double alpha) {
  SPECQ_CHECK(act_max.size() == weight_max.size(), "SmoothQuant: {} activation ranges for {} weight columns",
              act_max.size(), weight_max.size());
  std::vector<float> s(act_max.size(), 1.0f);
  for (size_t j = 0; j < s.size(); ++j) {
    if (!(act_max[j] > 0.0f) || !(weight_max[j] > 0.0f)) continue;
    const double v = std::pow(double(act_max[j]), alpha) / std::pow(double(weight_max[j]), 1.0 - alpha);
    s[j] = float(std::max(v, 1e-5));
  }
  return s;
}

void smooth_model(Model& model, const std::vector<LayerRanges>& ranges, double alpha) {
  const ModelConfig& c = model.config;
  SPECQ_CHECK(int(ranges.size()) == c.num_layers, "SmoothQuant: activation ranges for {} layers, the model has {}",
              ranges.size(), c.num_layers);
  const int64_t h = c.hidden_size, q_dim = c.q_dim(), kv_dim = c.kv_dim(), inter = c.intermediate_size;
  const int64_t hd = c.head_dim, group = c.num_heads / c.num_kv_heads;
  for (int l = 0; l < c.num_layers; ++l) {
    LayerWeights& lw = model.weights.layers[size_t(l)];
    const LayerRanges& r = ranges[size_t(l)];
    for (const std::vector<float>& slot : r)
      SPECQ_CHECK(!slot.empty(), "SmoothQuant: layer {} saw no calibration activations", l);
    const Matrix wq{owned_f32(model, lw.wq), q_dim, h}, wk{owned_f32(model, lw.wk), kv_dim, h},
        wv{owned_f32(model, lw.wv), kv_dim, h}, wo{owned_f32(model, lw.wo), h, q_dim},
        gate{owned_f32(model, lw.w_gate), inter, h}, up{owned_f32(model, lw.w_up), inter, h},
        down{owned_f32(model, lw.w_down), h, inter};
    float* bv = c.attention_bias ? owned_f32(model, lw.bv) : nullptr;

    smooth_after_norm(owned_f32(model, lw.attn_norm), {wq, wk, wv}, r[size_t(LinearSlot::Qkv)], alpha);
    smooth_after_norm(owned_f32(model, lw.ffn_norm), {gate, up}, r[size_t(LinearSlot::GateUp)], alpha);

    // o_proj input channel (head, d) is attention over v channel (head / group, d): one factor per
    // KV channel, from the maxima over the heads that read it.
    std::vector<float> o_weight_max(size_t(q_dim), 0.0f);
    column_abs_max(wo.data, wo.n, wo.k, o_weight_max);
    const std::vector<float>& o_act = r[size_t(LinearSlot::O)];
    std::vector<float> kv_act(size_t(kv_dim), 0.0f), kv_weight(size_t(kv_dim), 0.0f);
    for (int64_t j = 0; j < q_dim; ++j) {
      const int64_t kv_channel = (j / hd) / group * hd + j % hd;
      kv_act[size_t(kv_channel)] = std::max(kv_act[size_t(kv_channel)], o_act[size_t(j)]);
      kv_weight[size_t(kv_channel)] = std::max(kv_weight[size_t(kv_channel)], o_weight_max[size_t(j)]);
    }
    const std::vector<float> s_kv = smoothing_factors(kv_act, kv_weight, alpha);
    std::vector<float> s_o(static_cast<size_t>(q_dim));
    for (int64_t j = 0; j < q_dim; ++j) s_o[size_t(j)] = s_kv[size_t((j / hd) / group * hd + j % hd)];
    for (int64_t row = 0; row < kv_dim; ++row) {
      for (int64_t j = 0; j < h; ++j) wv.data[row * h + j] /= s_kv[size_t(row)];
      if (bv != nullptr) bv[row] /= s_kv[size_t(row)];
    }
    scale_columns(wo.data, wo.n, wo.k, s_o);

    // down_proj input i = silu(gate_i) * up_i: divide up's row i.
    std::vector<float> down_weight_max(size_t(inter), 0.0f);
    column_abs_max(down.data, down.n, down.k, down_weight_max);
    const std::vector<float> s_down = smoothing_factors(r[size_t(LinearSlot::Down)], down_weight_max, alpha);
    for (int64_t row = 0; row < inter; ++row)
      for (int64_t j = 0; j < h; ++j) up.data[row * h + j] /= s_down[size_t(row)];
    scale_columns(down.data, down.n, down.k, s_down);
  }
}

Int8Matrix quantize_int8(const float* w, int64_t n, int64_t k) {
  Int8Matrix m;
  m.n = n;
  m.k = k;
  m.q.resize(size_t(n * k));
  m.scales.resize(size_t(n));
  for (int64_t r = 0; r < n; ++r) {
    const float s = cpu::quantize_row_int8(w + r * k, k, m.q.data() + r * k);
    SPECQ_CHECK(std::isfinite(s), "int8 quantization: row {} of a [{}, {}] matrix is not finite", r, n, k);
    m.scales[size_t(r)] = s;
  }
  return m;
}

Weight int8_weight_view(const std::shared_ptr<const Int8Matrix>& m) {
  auto q = quantized_parts_owning(m);
  q->bits = 8;
  q->group_size = int(m->k);
  q->sym = true;
  q->qweight = {DType::I8, {m->n, m->k}, m->q.data()};
  q->scales = {DType::F32, {m->n, 1}, m->scales.data()};
  Weight w;
  w.format = WeightFormat::Int8PerChannel;
  w.quant = q;
  w.dtype = DType::F32;
  w.shape = {m->n, m->k};
  return w;
}

}  // namespace specq::quant
