#include "quant/qqq.h"

#include <algorithm>
#include <cmath>

#include "core/dtype.h"
#include "core/error.h"
#include "model/qqq_format.h"

namespace specq::quant {
namespace {

constexpr float kMaxGroupScale = 127.0f / 8.0f;  // (0 - 8) * s_group stays >= -127

float abs_max(const float* x, int64_t count) {
  float m = 0.0f;
  for (int64_t i = 0; i < count; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

Weight view(const std::shared_ptr<const qqq::Packed>& p, int64_t n, int64_t k, int group_size) {
  return owning_4bit_weight(WeightFormat::QqqInt4, p, n, k, group_size, [&](QuantizedWeight& q) {
    q.qweight = {DType::I32, {k / 16, 2 * n}, p->b.data()};
    q.scales = {DType::F32, {1, n}, p->s_channel.data()};
    if (!p->s_group.empty()) q.group_scales = {DType::F16, {k / group_size, n}, p->s_group.data()};
  });
}

}  // namespace

Weight quantize_qqq(const float* w, int64_t n, int64_t k, const std::vector<double>& hessian,
                    const QuantOptions& options) {
  const GroupLayout layout = group_layout(n, k, options, "QQQ");
  const int gs = layout.group_size;
  std::vector<float> channel(static_cast<size_t>(n));  // per-channel: s; grouped: s_c
  std::vector<uint16_t> group(layout.grouped ? size_t(layout.groups * n) : 0);  // natural order, [G][N]
  for (int64_t r = 0; r < n; ++r) {
    const float* row = w + r * k;
    if (!layout.grouped) {
      const float amax = abs_max(row, k);
      channel[size_t(r)] = amax > 0.0f ? amax / 7.0f : 1.0f;
      continue;
    }
    float max_sg = 0.0f;
    for (int64_t g = 0; g < layout.groups; ++g) max_sg = std::max(max_sg, 2.0f * abs_max(row + g * gs, gs) / 15.0f);
    const float sc = max_sg > 0.0f ? max_sg / kMaxGroupScale : 1.0f;
    channel[size_t(r)] = sc;
    for (int64_t g = 0; g < layout.groups; ++g) {
      const float sg = 2.0f * abs_max(row + g * gs, gs) / 15.0f;
      group[size_t(g * n + r)] = float_to_half(std::min(sg / sc, kMaxGroupScale));
    }
  }
  const GridMaker grid = [&](int64_t r, int64_t g, const float*, int64_t) {
    CodeGrid cg;
    const float s = channel[size_t(r)];
    if (!layout.grouped) {
      cg.lo = 1;  // codes - 8 in [-7, 7]
      for (int c = 1; c < 16; ++c) cg.values[size_t(c)] = float(c - 8) * s;
      return cg;
    }
    const float s_group = half_to_float(group[size_t(g * n + r)]);
    for (int c = 0; c < 16; ++c) {
      int8_t v = 0;
      SPECQ_CHECK(qqq::group_value(c, s_group, v), "QQQ: group scale {} leaves the int8 range", s_group);
      cg.values[size_t(c)] = float(v) * s;
    }
    return cg;
  };
  const std::vector<int32_t> codes = quantize_codes(w, n, k, hessian, options, grid);
  std::vector<int8_t> stored(codes.size());
  for (size_t i = 0; i < codes.size(); ++i) stored[i] = int8_t(layout.grouped ? codes[i] : codes[i] - 8);
  auto packed = std::make_shared<const qqq::Packed>(qqq::pack(stored, n, k, channel, group));
  return view(packed, n, k, gs);
}

}  // namespace specq::quant
