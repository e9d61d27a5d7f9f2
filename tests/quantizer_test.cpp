// The quantizer: the inverse-Hessian factor, RTN and GPTQ grids, act-order bookkeeping, and that
// GPTQ lowers the layer's output error below RTN's on correlated inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/cpu/ops.h"
#include "core/error.h"
#include "quant/gptq.h"

namespace specq::quant {
namespace {

// Correlated inputs (x = z A with a random mixing A), as real activations are.
std::vector<float> correlated_inputs(int rows, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> mix(size_t(k * k)), z(static_cast<size_t>(k)), x(size_t(rows * k));
  for (float& v : mix) v = normal(rng) / std::sqrt(float(k));
  for (int64_t i = 0; i < k; ++i) mix[size_t(i * k + i)] += 1.0f;
  for (int r = 0; r < rows; ++r) {
    for (float& v : z) v = normal(rng) * (1.0f + 3.0f * float(rng() % 8 == 0));
    for (int64_t j = 0; j < k; ++j) {
      float s = 0.0f;
      for (int64_t i = 0; i < k; ++i) s += z[size_t(i)] * mix[size_t(i * k + j)];
      x[size_t(r * k + j)] = s;
    }
  }
  return x;
}

std::vector<float> dequantized(const std::shared_ptr<const GptqMatrix>& m) {
  const Weight w = gptq_weight_view(m);
  std::vector<float> out(size_t(m->n * m->k));
  for (int64_t o = 0; o < m->n; ++o) dequantize_row(w, o, out.data() + o * m->k);
  return out;
}

double output_error(const std::vector<float>& x, int rows, const std::vector<float>& w,
                    const std::vector<float>& q, int64_t n, int64_t k) {
  double e = 0.0;
  for (int r = 0; r < rows; ++r)
    for (int64_t o = 0; o < n; ++o) {
      double d = 0.0;
      for (int64_t i = 0; i < k; ++i) d += double(x[size_t(r * k + i)]) * (w[size_t(o * k + i)] - q[size_t(o * k + i)]);
      e += d * d;
    }
  return e;
}

TEST(Quantizer, InverseCholeskyUpperFactorsTheInverse) {
  const int64_t k = 40;
  const std::vector<float> x = correlated_inputs(200, k, 3);
  HessianAccumulator acc(k);
  acc.add(x.data(), 200);
  std::vector<double> h = acc.hessian();
  const std::vector<double> original = h;
  ASSERT_TRUE(inverse_cholesky_upper(h, k));
  // (U^T U) H == I
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j) {
      double s = 0.0;
      for (int64_t m = 0; m < k; ++m) {
        double inv = 0.0;
        for (int64_t t = 0; t <= std::min(i, m); ++t) inv += h[size_t(t * k + i)] * h[size_t(t * k + m)];
        s += inv * original[size_t(m * k + j)];
      }
      EXPECT_NEAR(s, i == j ? 1.0 : 0.0, 1e-8) << i << "," << j;
    }
  std::vector<double> not_pd(4, 0.0);
  not_pd[0] = 1.0;
  not_pd[3] = -1.0;
  EXPECT_FALSE(inverse_cholesky_upper(not_pd, 2));
}

TEST(Quantizer, RtnRoundsToTheNearestGridValue) {
  const int64_t n = 16, k = 64;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::vector<float> w(size_t(n * k));
  for (float& v : w) v = normal(rng) * 0.05f;
  for (bool sym : {true, false}) {
    QuantOptions o;
    o.method = Method::Rtn;
    o.group_size = 32;
    o.sym = sym;
    auto m = std::make_shared<const GptqMatrix>(quantize_matrix(w.data(), n, k, {}, o));
    const std::vector<float> q = dequantized(m);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < k; ++c) {
        const float scale = half_to_float(m->scales[size_t((c / 32) * n + r)]);
        EXPECT_LE(std::abs(q[size_t(r * k + c)] - w[size_t(r * k + c)]), 0.5f * scale * 1.0001f + 1e-7f);
      }
  }
}

TEST(Quantizer, GptqBeatsRtnOnCorrelatedInputs) {
  const int64_t n = 64, k = 128;
  const int rows = 512;
  const std::vector<float> x = correlated_inputs(rows, k, 11);
  std::mt19937 rng(12);
  std::normal_distribution<float> normal;
  std::vector<float> w(size_t(n * k));
  for (float& v : w) v = normal(rng) * 0.02f;
  HessianAccumulator acc(k);
  acc.add(x.data(), rows);
  const std::vector<double> h = acc.hessian();
  for (int group : {32, -1}) {
    for (bool sym : {true, false}) {
      QuantOptions o;
      o.group_size = group;
      o.sym = sym;
      o.method = Method::Rtn;
      const auto rtn = std::make_shared<const GptqMatrix>(quantize_matrix(w.data(), n, k, h, o));
      o.method = Method::Gptq;
      const auto gptq = std::make_shared<const GptqMatrix>(quantize_matrix(w.data(), n, k, h, o));
      o.act_order = true;
      const auto act = std::make_shared<const GptqMatrix>(quantize_matrix(w.data(), n, k, h, o));
      o.static_groups = true;
      const auto stat = std::make_shared<const GptqMatrix>(quantize_matrix(w.data(), n, k, h, o));
      const double e_rtn = output_error(x, rows, w, dequantized(rtn), n, k);
      const double e_gptq = output_error(x, rows, w, dequantized(gptq), n, k);
      const double e_act = output_error(x, rows, w, dequantized(act), n, k);
      const double e_stat = output_error(x, rows, w, dequantized(stat), n, k);
      EXPECT_LT(e_gptq, 0.8 * e_rtn) << "group " << group << " sym " << sym;
      EXPECT_LT(e_act, 0.8 * e_rtn) << "group " << group << " sym " << sym;
      EXPECT_LT(e_stat, 0.8 * e_rtn) << "group " << group << " sym " << sym;
      // Act-order groups follow the processing order; static groups keep g_idx = k / group.
      EXPECT_EQ(act->act_order, group > 0);
      EXPECT_FALSE(stat->act_order);
      for (int64_t i = 0; i < k; ++i) EXPECT_EQ(stat->g_idx[size_t(i)], i / stat->group_size);
      if (group > 0) {
        std::vector<int> per_group(size_t(act->groups()), 0);
        for (int32_t g : act->g_idx) ++per_group[size_t(g)];
        for (int c : per_group) EXPECT_EQ(c, group);
      }
    }
  }
}

TEST(Quantizer, RejectsUnsupportedSettings) {
  QuantOptions o;
  o.bits = 3;
  EXPECT_THROW(o.validate(), Error);
  o = {};
  o.method = Method::Rtn;
  o.act_order = true;
  EXPECT_THROW(o.validate(), Error);
  o = {};
  EXPECT_NE(incompatibility(172, 64, o).find("outputs"), std::string::npos);
  EXPECT_NE(incompatibility(64, 172, o).find("inputs"), std::string::npos);
  o.group_size = 32;
  EXPECT_EQ(incompatibility(64, 64, o), "");
  EXPECT_NE(incompatibility(64, 48, o).find("does not divide"), std::string::npos);
  std::vector<float> w(16 * 172, 0.1f);
  EXPECT_THROW(quantize_matrix(w.data(), 16, 172, {}, o), Error);
}

}  // namespace
}  // namespace specq::quant
