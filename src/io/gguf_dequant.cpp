#include "io/gguf_dequant.h"

#include <cstring>

#include "core/dtype.h"
#include "core/error.h"

namespace specq {
namespace {

// Blocks are packed without padding, so their fp16 fields may sit at any address.
float f16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return half_to_float(h);
}

// Q4_0, 18 bytes per 32 values: fp16 scale d, then 16 bytes whose low nibbles are values 0..15 and
// high nibbles values 16..31; x = (q - 8) * d.
void dequantize_q4_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = float(int(qs[j] & 15) - 8) * d;
    y[j + 16] = float(int(qs[j] >> 4) - 8) * d;
  }
}

// Q4_1, 20 bytes per 32 values: fp16 scale d and minimum m, nibbles as Q4_0; x = q * d + m.
void dequantize_q4_1(const uint8_t* b, float* y) {
  const float d = f16_at(b), m = f16_at(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = float(qs[j] & 15) * d + m;
    y[j + 16] = float(qs[j] >> 4) * d + m;
  }
}

// Q5_0, 22 bytes per 32 values: fp16 scale d, a 32-bit little-endian word whose bit j is the fifth
// bit of value j, then nibbles as Q4_0; x = (q - 16) * d.
void dequantize_q5_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const uint32_t qh = uint32_t(b[2]) | uint32_t(b[3]) << 8 | uint32_t(b[4]) << 16 | uint32_t(b[5]) << 24;
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const int q0 = (qs[j] & 15) | int((qh >> j) & 1) << 4;
    const int q1 = (qs[j] >> 4) | int((qh >> (j + 16)) & 1) << 4;
    y[j] = float(q0 - 16) * d;
    y[j + 16] = float(q1 - 16) * d;
  }
}

// Q5_1, 24 bytes per 32 values: fp16 d and m, the fifth-bit word, nibbles; x = q * d + m.
void dequantize_q5_1(const uint8_t* b, float* y) {
  const float d = f16_at(b), m = f16_at(b + 2);
  const uint32_t qh = uint32_t(b[4]) | uint32_t(b[5]) << 8 | uint32_t(b[6]) << 16 | uint32_t(b[7]) << 24;
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    const int q0 = (qs[j] & 15) | int((qh >> j) & 1) << 4;
    const int q1 = (qs[j] >> 4) | int((qh >> (j + 16)) & 1) << 4;
    y[j] = float(q0) * d + m;
    y[j + 16] = float(q1) * d + m;
  }
}

// Q8_0, 34 bytes per 32 values: fp16 scale d, 32 int8 q; x = q * d.
void dequantize_q8_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const auto* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < 32; ++j) y[j] = float(qs[j]) * d;
}

// K-quants pack 8 six-bit (scale, min) pairs into 12 bytes: pairs 0..3 in the low 6 bits of bytes
// 0..3 / 4..7; pairs 4..7 take their low 4 bits from bytes 8..11 and their top 2 bits from the top
// bits of bytes 0..3 (scales) / 4..7 (mins).
void k_scale_min(const uint8_t* s, int j, int& scale, int& min) {
  if (j < 4) {
    scale = s[j] & 63;
    min = s[j + 4] & 63;
  } else {
    scale = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q4_K and Q5_K share their layout: fp16 d, fp16 dmin, 12 scale bytes, then (Q5_K only) 32 bytes
// qh, then 128 nibble bytes. Eight sub-blocks of 32; byte run c (32 bytes) holds sub-block 2c in its
// low and 2c+1 in its high nibbles; bit s of qh byte l is the fifth bit of value l of sub-block s;
// x = d * scale * q - dmin * min.
void dequantize_k_quant(const uint8_t* b, const uint8_t* qh, const uint8_t* qs, float* y) {
  const float d = f16_at(b), dmin = f16_at(b + 2);
  const uint8_t* scales = b + 4;
  for (int c = 0; c < 4; ++c) {
    int sc0, m0, sc1, m1;
    k_scale_min(scales, 2 * c, sc0, m0);
    k_scale_min(scales, 2 * c + 1, sc1, m1);
    const float d0 = d * float(sc0), min0 = dmin * float(m0);
    const float d1 = d * float(sc1), min1 = dmin * float(m1);
    for (int l = 0; l < 32; ++l) {
      const int high0 = qh != nullptr ? ((qh[l] >> (2 * c)) & 1) << 4 : 0;
      const int high1 = qh != nullptr ? ((qh[l] >> (2 * c + 1)) & 1) << 4 : 0;
      y[64 * c + l] = d0 * float((qs[32 * c + l] & 15) | high0) - min0;
      y[64 * c + 32 + l] = d1 * float((qs[32 * c + l] >> 4) | high1) - min1;
    }
  }
}

// Q4_K, 144 bytes per 256 values; Q5_K, 176 (qh at offset 16, before the nibbles).
void dequantize_q4_k(const uint8_t* b, float* y) { dequantize_k_quant(b, nullptr, b + 16, y); }
void dequantize_q5_k(const uint8_t* b, float* y) { dequantize_k_quant(b, b + 16, b + 48, y); }

// Q6_K, 210 bytes per 256 values: 128 bytes ql (low 4 bits), 64 bytes qh (high 2 bits), 16 int8
// scales (one per 16 values), fp16 d last; x = d * scale * (q - 32). Each half of 128 values uses
// 64 ql bytes (values l and l+64 share byte l, l+32 and l+96 byte l+32) and 32 qh bytes (bit
// pairs 0, 2, 4, 6 for values l, l+32, l+64, l+96).
void dequantize_q6_k(const uint8_t* b, float* y) {
  const float d = f16_at(b + 208);
  const auto* scales = reinterpret_cast<const int8_t*>(b + 192);
  for (int half = 0; half < 2; ++half) {
    const uint8_t* ql = b + 64 * half;
    const uint8_t* qh = b + 128 + 32 * half;
    const int8_t* sc = scales + 8 * half;
    float* out = y + 128 * half;
    for (int l = 0; l < 32; ++l) {
      const int s = l / 16;
      const int q0 = ((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q1 = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q2 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q3 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      out[l] = d * float(sc[s]) * float(q0);
      out[l + 32] = d * float(sc[s + 2]) * float(q1);
      out[l + 64] = d * float(sc[s + 4]) * float(q2);
      out[l + 96] = d * float(sc[s + 6]) * float(q3);
    }
  }
}

}  // namespace

bool ggml_type_dequantizable(GgmlType type) {
  switch (type) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16: case GgmlType::Q8_0: case GgmlType::Q4_0:
    case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1: case GgmlType::Q4_K: case GgmlType::Q5_K:
    case GgmlType::Q6_K: return true;
    default: return false;
  }
}

void dequantize_ggml(GgmlType type, const uint8_t* src, int64_t count, float* dst) {
  const std::optional<GgmlTypeTraits> traits = ggml_type_traits(uint32_t(type));
  SPECQ_CHECK(traits && ggml_type_dequantizable(type), "ggml type {} cannot be dequantized by specq",
              traits ? traits->name : std::string_view("?"));
  SPECQ_CHECK(count % traits->block_elements == 0, "{} values are not a whole number of {} blocks", count,
              traits->name);
  const int64_t blocks = count / traits->block_elements;
  void (*block_fn)(const uint8_t*, float*) = nullptr;
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, src, size_t(count) * 4);
      return;
    case GgmlType::F16:
    case GgmlType::BF16:
      for (int64_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = type == GgmlType::F16 ? half_to_float(h) : bf16_to_float(h);
      }
      return;
    case GgmlType::Q4_0: block_fn = dequantize_q4_0; break;
    case GgmlType::Q4_1: block_fn = dequantize_q4_1; break;
    case GgmlType::Q5_0: block_fn = dequantize_q5_0; break;
    case GgmlType::Q5_1: block_fn = dequantize_q5_1; break;
    case GgmlType::Q8_0: block_fn = dequantize_q8_0; break;
    case GgmlType::Q4_K: block_fn = dequantize_q4_k; break;
    case GgmlType::Q5_K: block_fn = dequantize_q5_k; break;
    case GgmlType::Q6_K: block_fn = dequantize_q6_k; break;
    default: break;
  }
  for (int64_t i = 0; i < blocks; ++i) block_fn(src + i * traits->block_bytes, dst + i * traits->block_elements);
}

RepackedQ4_0 repack_q4_0_as_gptq(const uint8_t* src, int64_t n, int64_t k, std::span<const int64_t> source_rows) {
  SPECQ_CHECK(n % 8 == 0 && k % 32 == 0, "a Q4_0 matrix [{}, {}] cannot be packed as GPTQ (needs N % 8 == 0 and "
              "K % 32 == 0)", n, k);
  SPECQ_CHECK(source_rows.empty() || int64_t(source_rows.size()) == n, "Q4_0 repack: {} source rows for {} outputs",
              source_rows.size(), n);
  const int64_t groups = k / 32, row_bytes = groups * 18;
  std::shared_ptr<uint32_t[]> qweight(new uint32_t[size_t(k / 8 * n)]());
  std::shared_ptr<uint32_t[]> qzeros(new uint32_t[size_t(groups * n / 8)]);
  std::shared_ptr<uint16_t[]> scales(new uint16_t[size_t(groups * n)]);
  // Symmetric: every zero point is 8 (gptq_v2 stores it as is).
  for (int64_t i = 0; i < groups * n / 8; ++i) qzeros[size_t(i)] = 0x88888888u;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const uint8_t* row = src + (source_rows.empty() ? r : source_rows[size_t(r)]) * row_bytes;
    for (int64_t g = 0; g < groups; ++g) {
      const uint8_t* block = row + g * 18;
      std::memcpy(&scales[size_t(g * n + r)], block, 2);
      for (int j = 0; j < 32; ++j) {
        const uint32_t q = j < 16 ? block[2 + j] & 15u : uint32_t(block[2 + j - 16] >> 4);
        const int64_t kk = g * 32 + j;
        // Each word is written by one thread only: words are per output r.
        qweight[size_t((kk / 8) * n + r)] |= q << (4 * (kk % 8));
      }
    }
  }
  RepackedQ4_0 out;
  out.quant = std::make_shared<QuantizedWeight>();
  QuantizedWeight& q = *out.quant;
  q.bits = 4;
  q.group_size = 32;
  q.sym = true;
  q.zero_offset = 0;
  q.act_order = false;
  q.qweight = StoredTensor{DType::I32, {k / 8, n}, qweight.get()};
  q.qzeros = StoredTensor{DType::I32, {groups, n / 8}, qzeros.get()};
  q.scales = StoredTensor{DType::F16, {groups, n}, scales.get()};
  out.qweight = std::shared_ptr<const void>(qweight, qweight.get());
  out.qzeros = std::shared_ptr<const void>(qzeros, qzeros.get());
  out.scales = std::shared_ptr<const void>(scales, scales.get());
  return out;
}

}  // namespace specq
