#include "quant/qoq.h"

#include <algorithm>
#include <cmath>

#include "core/dtype.h"
#include "core/error.h"
#include "model/qoq_format.h"

namespace specq::quant {
namespace {

constexpr float kLevel1Max = 119.0f;  // QServe's protective range for the int8 level

Weight view(const std::shared_ptr<const qoq::Packed>& p, int64_t n, int64_t k, int group_size) {
  const bool grouped = !p->s2_scales.empty();
  return owning_4bit_weight(WeightFormat::QoqInt4, p, n, k, group_size, [&](QuantizedWeight& q) {
    q.qweight = {DType::I8, {n, k / 2}, p->qweight.data()};
    q.scales = {DType::F16, {n}, p->s1_scales.data()};
    if (grouped) {
      q.group_scales = {DType::I8, {k / group_size, n}, p->s2_scales.data()};
      q.qzeros = {DType::I8, {k / group_size, n}, p->s2_zeros.data()};
    } else {
      q.qzeros = {DType::F16, {n}, p->s1_szeros.data()};
    }
  });
}

void min_max(const float* x, int64_t count, float& lo, float& hi) {
  lo = 0.0f;
  hi = 0.0f;
  for (int64_t i = 0; i < count; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
}

}  // namespace

Weight quantize_qoq(const float* w, int64_t n, int64_t k, const std::vector<double>& hessian,
                    const QuantOptions& options) {
  const GroupLayout layout = group_layout(n, k, options, "QoQ");
  const int gs = layout.group_size;
  std::vector<uint16_t> s1(static_cast<size_t>(n)), szero(layout.grouped ? 0 : size_t(n));
  std::vector<int8_t> s2(layout.grouped ? size_t(layout.groups * n) : 0), z2(s2.size());
  std::vector<CodeGrid> grids(static_cast<size_t>(layout.groups * n));  // [G][N], made before GPTQ runs
  for (int64_t r = 0; r < n; ++r) {
    const float* row = w + r * k;
    float lo = 0.0f, hi = 0.0f;
    min_max(row, k, lo, hi);
    if (!layout.grouped) {
      const float scale = round_scale_to_half(hi > lo ? (hi - lo) / 15.0f : 1.0f);
      const int zero = std::clamp(int(std::nearbyint(-lo / scale)), 0, 15);
      s1[size_t(r)] = float_to_half(scale);
      szero[size_t(r)] = float_to_half(float(zero) * scale);
      CodeGrid& cg = grids[size_t(r)];
      const float sz = half_to_float(szero[size_t(r)]);
      for (int c = 0; c < 16; ++c) cg.values[size_t(c)] = float(c) * scale - sz;
      continue;
    }
    const float amax = std::max(-lo, hi);
    const float scale = round_scale_to_half(amax > 0.0f ? amax / kLevel1Max : 1.0f);
    s1[size_t(r)] = float_to_half(scale);
    for (int64_t g = 0; g < layout.groups; ++g) {
      float glo = 0.0f, ghi = 0.0f;
      min_max(row + g * gs, gs, glo, ghi);
      glo /= scale;  // level-1 (int8-domain) range of this group
      ghi /= scale;
      const int step = std::clamp(int(std::ceil((ghi - glo) / 15.0f)), 1, 17);
      const int zero = std::clamp(int(std::nearbyint(-glo / float(step))), 0, 15);
      const size_t at = size_t(g * n + r);
      s2[at] = int8_t(step);
      z2[at] = int8_t(uint8_t((256 - (zero * step) % 256) % 256));
      CodeGrid& cg = grids[at];
      cg.lo = std::max(0, zero - 128 / step);  // (c - zero) * step stays within [-128, 127]
      cg.hi = std::min(15, zero + 127 / step);
      for (int c = 0; c < 16; ++c) cg.values[size_t(c)] = float(qoq::group_value(c, s2[at], z2[at])) * scale;
    }
  }
  const std::vector<int32_t> codes = quantize_codes(
      w, n, k, hessian, options, [&](int64_t r, int64_t g, const float*, int64_t) { return grids[size_t(g * n + r)]; });
  std::vector<uint8_t> nibbles(codes.begin(), codes.end());
  auto packed = std::make_shared<const qoq::Packed>(qoq::pack(nibbles, n, k, s1, szero, s2, z2));
  return view(packed, n, k, gs);
}

}  // namespace specq::quant
