// A GptqInt4 matrix made by the project's own quantizer from random weights (GPTQ on a Hessian with
// an uneven diagonal when act-order, so g_idx is a real permutation), for packing and kernel tests.
#pragma once
#include <memory>
#include <random>
#include <vector>

#include "quant/gptq.h"

namespace specq::test {

inline std::shared_ptr<quant::GptqMatrix> random_gptq_matrix(int n, int k, int group, bool sym, bool act_order,
                                                             std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> w(size_t(n) * k);
  for (float& v : w) v = 0.05f * dist(rng);
  quant::QuantOptions o;
  o.group_size = group;
  o.sym = sym;
  o.act_order = act_order;
  o.method = act_order ? quant::Method::Gptq : quant::Method::Rtn;
  std::vector<double> h;
  if (act_order) {
    const int rows = 2 * k;
    std::vector<float> x(size_t(rows) * k);
    for (int r = 0; r < rows; ++r)
      for (int i = 0; i < k; ++i) x[size_t(r) * k + i] = dist(rng) * (1.0f + float((i * 7919) % 13));
    quant::HessianAccumulator acc(k);
    acc.add(x.data(), rows);
    h = acc.hessian();
  }
  return std::make_shared<quant::GptqMatrix>(quant::quantize_matrix(w.data(), n, k, h, o));
}

}  // namespace specq::test
