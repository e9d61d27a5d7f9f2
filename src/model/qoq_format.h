// W4A8-QoQ (DeepCompressor -> QServe, seed-spec 2.6): uint4 weights in QServe's packing, used in
// place as WeightFormat::QoqInt4. Per-channel: W = s1[n] * q - szero[n] (the linear needs each
// token's activation sum); grouped (progressive): the int8 level q * s2 + z2 (int8 lanes, modulo
// 256) times the per-channel s1. docs/FORMATS.md has the exact layout; this file is its single
// implementation (index maps, validation, the int8 values, packing for the quantizer).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/weights.h"

namespace specq::qoq {

// Where weight (n, k) lives in qweight (i8 [N, K/2] as bytes): byte index and nibble shift (0: low,
// 4: high). QServe's pack_w4: [N/32, 2, 2, 8, K/32, 2, 4, 4] permuted (1, 0, 4, 3, 6, 5, 2, 7),
// the leading pair combined as hi << 4 | lo.
struct NibblePos {
  int64_t byte = 0;
  int shift = 0;
};
NibblePos nibble_position(int64_t n, int64_t k, int64_t K);

// Column of output n in s2_scales / s2_zeros ([G, N]; QServe permutes within 32 outputs).
int64_t group_column(int64_t n);

// The int8 the grouped kernel multiplies: (code * s2 + z2) in a byte lane, s2 read as an unsigned
// byte; valid only while code * s2 <= 255 (the kernel multiplies four packed lanes at once).
inline int8_t group_value(int code, int8_t s2, int8_t z2) {
  return int8_t(uint8_t(code * int(uint8_t(s2)) + int(uint8_t(z2))));
}

// Checks a QoqInt4 matrix of logical shape [n, k] (Error naming `name`).
void validate(const std::string& name, const QuantizedWeight& q, int64_t n, int64_t k);

// Row n (k values) in the int8 domain: per-channel the code itself (0..15), grouped the value above.
void int8_row(const Weight& w, int64_t n, int8_t* out);
// s1_scales[n] and (per-channel) s1_szeros[n]; 0 for grouped weights.
float channel_scale(const Weight& w, int64_t n);
float channel_szero(const Weight& w, int64_t n);

// A packed QoQ matrix in QServe's layout.
struct Packed {
  std::vector<int8_t> qweight;     // [N, K/2]
  std::vector<uint16_t> s1_scales; // fp16 [N]
  std::vector<uint16_t> s1_szeros; // fp16 [N] (per-channel; empty grouped)
  std::vector<int8_t> s2_scales;   // [G, N], permuted (grouped; empty per-channel)
  std::vector<int8_t> s2_zeros;    // [G, N], permuted
};
// codes: [N][K] uint4; s1, szero: fp16 [N]; s2, z2: [G][N] in natural order (empty per-channel).
Packed pack(const std::vector<uint8_t>& codes, int64_t N, int64_t K, std::vector<uint16_t> s1,
            std::vector<uint16_t> szero, const std::vector<int8_t>& s2, const std::vector<int8_t>& z2);

}  // namespace specq::qoq
