#include "model/qqq_format.h"

#include <fmt/ranges.h>

#include <array>
#include <cmath>

#include "core/dtype.h"
#include "core/error.h"
#include "model/group_codes.h"

namespace specq::qqq {
namespace {

bool grouped_weight(const QuantizedWeight& q) { return q.group_scales.present(); }

int code_at(const uint32_t* b, const NibblePos& p) { return int((b[p.word] >> p.shift) & 15u); }

}  // namespace

NibblePos nibble_position(int64_t n, int64_t k, int64_t N, bool grouped) {
  return marlin::nibble_position(n, k, N, grouped ? marlin::Layout::Int8Grouped : marlin::Layout::Int8Channel);
}

bool group_value(int code, float s, int8_t& out) {
  const float v = std::nearbyint(float(code - 8) * s);  // (c - 8) * s is exact in fp32
  if (!(v >= -128.0f && v <= 127.0f)) return false;
  out = int8_t(v);
  return true;
}

void validate(const std::string& name, const QuantizedWeight& q, int64_t n, int64_t k) {
  SPECQ_CHECK(q.bits == 4, "quantized tensor '{}': {} bits is not supported (QQQ weights are 4-bit)", name, q.bits);
  SPECQ_CHECK(k % 16 == 0 && n % 64 == 0,
              "quantized tensor '{}' [{}, {}]: QQQ tiles need inputs a multiple of 16 and outputs a multiple of 64",
              name, n, k);
  SPECQ_CHECK(k <= kMaxInt8Inputs, "quantized tensor '{}' has {} inputs; int32 accumulation allows at most {}", name,
              k, kMaxInt8Inputs);
  SPECQ_CHECK(q.qweight.present() && q.qweight.dtype == DType::I32 &&
                  q.qweight.shape == (std::vector<int64_t>{k / 16, 2 * n}),
              "quantized tensor '{}': B is {} [{}], expected i32 [{}, {}]", name, dtype_name(q.qweight.dtype),
              fmt::join(q.qweight.shape, ", "), k / 16, 2 * n);
  SPECQ_CHECK(q.scales.present() && q.scales.dtype == DType::F32 &&
                  (q.scales.shape == std::vector<int64_t>{n} || q.scales.shape == (std::vector<int64_t>{1, n})),
              "quantized tensor '{}': s_channel is {} [{}], expected f32 [1, {}]", name, dtype_name(q.scales.dtype),
              fmt::join(q.scales.shape, ", "), n);
  const auto* s_channel = static_cast<const float*>(q.scales.data);
  for (int64_t i = 0; i < n; ++i)
    SPECQ_CHECK(std::isfinite(s_channel[i]) && s_channel[i] >= 0.0f,
                "quantized tensor '{}': s_channel[{}] is {} (expected finite and >= 0)", name, i, s_channel[i]);
  SPECQ_CHECK(!q.qzeros.present(), "quantized tensor '{}': QQQ weights have no zero-point tensor", name);
  if (!grouped_weight(q)) {
    SPECQ_CHECK(q.group_size == k, "quantized tensor '{}': group size {} but no s_group (per-channel needs {})", name,
                q.group_size, k);
    return;
  }
  SPECQ_CHECK(q.group_size > 0 && q.group_size % 16 == 0 && k % q.group_size == 0,
              "quantized tensor '{}': group size {} must be a multiple of 16 that divides its {} inputs", name,
              q.group_size, k);
  const int64_t groups = k / q.group_size;
  const StoredTensor& sg = q.group_scales;
  SPECQ_CHECK(sg.dtype == DType::F16 && sg.shape == (std::vector<int64_t>{groups, n}),
              "quantized tensor '{}': s_group is {} [{}], expected f16 [{}, {}] (group size {})", name,
              dtype_name(sg.dtype), fmt::join(sg.shape, ", "), groups, n, q.group_size);
  const auto* b = static_cast<const uint32_t*>(q.qweight.data);
  const auto* group_scales = static_cast<const uint16_t*>(sg.data);
  for (int64_t i = 0; i < sg.numel(); ++i)
    SPECQ_CHECK(std::isfinite(half_to_float(group_scales[i])), "quantized tensor '{}': s_group[{}, {}] is {}", name,
                i / n, i % n, half_to_float(group_scales[i]));
  // A scale outside [-15.875, 16] is valid only if the codes present keep (c - 8) * s inside int8.
  check_group_codes(
      name, groups, n, q.group_size,
      [&](int64_t g, int64_t out) { return half_to_float(group_scales[g * n + group_scale_column(out)]); },
      [](float s) { return s >= -15.875f && s <= 16.0f; },
      [&](int64_t out, int64_t kk) { return code_at(b, nibble_position(out, kk, n, true)); },
      [](int c, float s) {
        int8_t v = 0;
        return group_value(c, s, v);
      },
      "(code - 8) * scale leaves the int8 range");
}

void int8_row(const Weight& w, int64_t n, int8_t* out) {
  const QuantizedWeight& q = *w.quant;
  const int64_t N = w.rows(), K = w.cols();
  const bool grouped = grouped_weight(q);
  const auto* b = static_cast<const uint32_t*>(q.qweight.data);
  // Within a 16-row block of B, output n's 16 inputs sit at fixed positions: compute them once.
  std::array<NibblePos, 16> first{};
  for (int64_t k = 0; k < 16; ++k) first[size_t(k)] = nibble_position(n, k, N, grouped);
  if (!grouped) {
    for (int64_t k = 0; k < K; ++k) {
      const NibblePos& p = first[size_t(k % 16)];
      out[k] = int8_t(uint8_t(((b[p.word + (k / 16) * 2 * N] >> p.shift) & 15u) << 4));  // 16 * int4
    }
    return;
  }
  const auto* group_scales = static_cast<const uint16_t*>(q.group_scales.data);
  const int64_t col = group_scale_column(n);
  for (int64_t g = 0; g < K / q.group_size; ++g) {
    const float s = half_to_float(group_scales[g * N + col]);
    std::array<int8_t, 16> table{};  // the int8 of each code under this group's scale
    for (int c = 0; c < 16; ++c)
      if (!group_value(c, s, table[size_t(c)])) table[size_t(c)] = 0;  // unused codes (validate checks)
    for (int64_t k = g * q.group_size; k < (g + 1) * q.group_size; ++k) {
      const NibblePos& p = first[size_t(k % 16)];
      out[k] = table[(b[p.word + (k / 16) * 2 * N] >> p.shift) & 15u];
    }
  }
}

float channel_scale(const Weight& w, int64_t n) {
  return static_cast<const float*>(w.quant->scales.data)[channel_scale_index(n)];
}

Packed pack(const std::vector<int8_t>& codes, int64_t N, int64_t K, const std::vector<float>& channel,
            const std::vector<uint16_t>& group) {
  const bool grouped = !group.empty();
  SPECQ_CHECK(N % 64 == 0 && K % 16 == 0 && int64_t(codes.size()) == N * K && int64_t(channel.size()) == N,
              "QQQ packing: a [{}, {}] matrix needs outputs a multiple of 64 and inputs of 16", N, K);
  Packed p;
  p.b.assign(codes.size() / 8, 0);  // (K / 16) x 2N words
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k) {
      const NibblePos pos = nibble_position(n, k, N, grouped);
      p.b[size_t(pos.word)] |= int32_t(uint32_t(codes[size_t(n * K + k)]) & 15u) << pos.shift;
    }
  }
  p.s_channel.assign(channel.size(), 0.0f);
  for (int64_t n = 0; n < N; ++n) p.s_channel[size_t(channel_scale_index(n))] = grouped ? channel[size_t(n)]
                                                                                        : channel[size_t(n)] / 16.0f;
  if (grouped) {
    const int64_t groups = int64_t(group.size()) / N;
    p.s_group.assign(group.size(), 0);
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t n = 0; n < N; ++n) p.s_group[size_t(g * N + group_scale_column(n))] = group[size_t(g * N + n)];
  }
  return p;
}

}  // namespace specq::qqq
