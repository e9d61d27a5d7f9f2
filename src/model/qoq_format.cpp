#include "model/qoq_format.h"

#include <fmt/ranges.h>

#include <cmath>

#include "core/dtype.h"
#include "core/error.h"

namespace specq::qoq {
namespace {

bool grouped_weight(const QuantizedWeight& q) { return q.group_scales.present(); }

void expect(const std::string& name, const char* part, const StoredTensor& t, DType dtype,
            const std::vector<int64_t>& shape) {
  SPECQ_CHECK(t.present(), "quantized tensor '{}' has no {}", name, part);
  SPECQ_CHECK(t.dtype == dtype && t.shape == shape, "quantized tensor '{}': {} is {} [{}], expected {} [{}]", name,
              part, dtype_name(t.dtype), fmt::join(t.shape, ", "), dtype_name(dtype), fmt::join(shape, ", "));
}

void expect_finite_f16(const std::string& name, const char* part, const StoredTensor& t) {
  const auto* h = static_cast<const uint16_t*>(t.data);
  for (int64_t i = 0; i < t.numel(); ++i)
    SPECQ_CHECK(std::isfinite(half_to_float(h[i])), "quantized tensor '{}': {}[{}] is {}", name, part, i,
                half_to_float(h[i]));
}

}  // namespace

NibblePos nibble_position(int64_t n, int64_t k, int64_t K) {
  const int64_t nt = n / 32, np = (n % 32) / 16, ns = (n % 16) / 8, nl = n % 8;
  const int64_t kt = k / 32, ks = (k % 32) / 16, kl = (k % 16) / 4, kr = k % 4;
  const int64_t byte = ((((((nt * (K / 32) + kt) * 8 + nl) * 4 + kl) * 2 + ks) * 2 + ns) * 4) + kr;
  return {byte, int(4 * np)};
}

int64_t group_column(int64_t n) { return (n / 32) * 32 + (n % 8) * 4 + (n % 32) / 8; }

void validate(const std::string& name, const QuantizedWeight& q, int64_t n, int64_t k) {
  SPECQ_CHECK(q.bits == 4, "quantized tensor '{}': {} bits is not supported (QoQ weights are 4-bit)", name, q.bits);
  SPECQ_CHECK(k % 32 == 0 && n % 32 == 0,
              "quantized tensor '{}' [{}, {}]: QServe packing needs both dimensions to be multiples of 32", name, n,
              k);
  SPECQ_CHECK(k <= kMaxInt8Inputs, "quantized tensor '{}' has {} inputs; int32 accumulation allows at most {}", name,
              k, kMaxInt8Inputs);
  expect(name, "qweight", q.qweight, DType::I8, {n, k / 2});
  expect(name, "s1_scales", q.scales, DType::F16, {n});
  expect_finite_f16(name, "s1_scales", q.scales);
  if (!grouped_weight(q)) {
    SPECQ_CHECK(q.group_size == k, "quantized tensor '{}': group size {} but no s2_scales (per-channel needs {})",
                name, q.group_size, k);
    expect(name, "s1_szeros", q.qzeros, DType::F16, {n});
    expect_finite_f16(name, "s1_szeros", q.qzeros);
    return;
  }
  SPECQ_CHECK(q.group_size > 0 && q.group_size % 32 == 0 && k % q.group_size == 0,
              "quantized tensor '{}': group size {} must be a multiple of 32 that divides its {} inputs", name,
              q.group_size, k);
  const int64_t groups = k / q.group_size;
  expect(name, "s2_scales", q.group_scales, DType::I8, {groups, n});
  expect(name, "s2_zeros", q.qzeros, DType::I8, {groups, n});
  // The kernel multiplies four uint4 lanes by s2 in one 32-bit product: code * s2 must stay <= 255.
  const auto* s2 = static_cast<const int8_t*>(q.group_scales.data);
  const auto* bytes = static_cast<const uint8_t*>(q.qweight.data);
  check_group_codes(
      name, groups, n, q.group_size, [&](int64_t g, int64_t out) { return int(uint8_t(s2[g * n + group_column(out)])); },
      [](int s) { return 15 * s <= 255; },
      [&](int64_t out, int64_t kk) {
        const NibblePos p = nibble_position(out, kk, k);
        return (bytes[p.byte] >> p.shift) & 15;
      },
      [](int c, int s) { return c * s <= 255; },
      "code * scale exceeds 255 (the kernel reads s2 as an unsigned byte)");
}

void int8_row(const Weight& w, int64_t n, int8_t* out) {
  const QuantizedWeight& q = *w.quant;
  const int64_t N = w.rows(), K = w.cols();
  const auto* bytes = static_cast<const uint8_t*>(q.qweight.data);
  // Inside one 32-input tile, output n's bytes sit at fixed offsets: compute them once.
  NibblePos first[32];
  for (int64_t k = 0; k < 32; ++k) first[k] = nibble_position(n, k, K);
  const int64_t tile_bytes = 512;  // 32 outputs x 32 inputs / 2
  auto code = [&](int64_t k) {
    const NibblePos& p = first[k % 32];
    return (bytes[p.byte + (k / 32) * tile_bytes] >> p.shift) & 15;
  };
  if (!grouped_weight(q)) {
    for (int64_t k = 0; k < K; ++k) out[k] = int8_t(code(k));
    return;
  }
  const auto* s2 = static_cast<const int8_t*>(q.group_scales.data);
  const auto* z2 = static_cast<const int8_t*>(q.qzeros.data);
  const int64_t col = group_column(n);
  for (int64_t g = 0; g < K / q.group_size; ++g) {
    const int8_t s = s2[g * N + col], z = z2[g * N + col];
    for (int64_t k = g * q.group_size; k < (g + 1) * q.group_size; ++k) out[k] = group_value(code(k), s, z);
  }
}

float channel_scale(const Weight& w, int64_t n) {
  return half_to_float(static_cast<const uint16_t*>(w.quant->scales.data)[n]);
}

float channel_szero(const Weight& w, int64_t n) {
  if (grouped_weight(*w.quant)) return 0.0f;
  return half_to_float(static_cast<const uint16_t*>(w.quant->qzeros.data)[n]);
}

Packed pack(const std::vector<uint8_t>& codes, int64_t N, int64_t K, std::vector<uint16_t> s1,
            std::vector<uint16_t> szero, const std::vector<int8_t>& s2, const std::vector<int8_t>& z2) {
  SPECQ_CHECK(N % 32 == 0 && K % 32 == 0 && int64_t(codes.size()) == N * K && int64_t(s1.size()) == N,
              "QoQ packing: a [{}, {}] matrix needs both dimensions to be multiples of 32", N, K);
  Packed p;
  p.qweight.assign(codes.size() / 2, 0);
  auto* bytes = reinterpret_cast<uint8_t*>(p.qweight.data());
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k) {
      const NibblePos pos = nibble_position(n, k, K);
      bytes[pos.byte] = uint8_t(bytes[pos.byte] | ((codes[size_t(n * K + k)] & 15u) << pos.shift));
    }
  }
  p.s1_scales = std::move(s1);
  p.s1_szeros = std::move(szero);
  if (!s2.empty()) {
    p.s2_scales.assign(s2.size(), 0);
    p.s2_zeros.assign(z2.size(), 0);
    const int64_t groups = int64_t(s2.size()) / N;
    for (int64_t g = 0; g < groups; ++g) {
      for (int64_t n = 0; n < N; ++n) {
        p.s2_scales[size_t(g * N + group_column(n))] = s2[size_t(g * N + n)];
        p.s2_zeros[size_t(g * N + group_column(n))] = z2[size_t(g * N + n)];
      }
    }
  }
  return p;
}

}  // namespace specq::qoq
