// W4A8-QQQ (HandH1998/QQQ, seed-spec 2.5): 4-bit weights in QQQ's Marlin-style int8-MMA tiles,
// used in place as WeightFormat::QqqInt4. Per-channel (signed int4, fp32 channel scales) and
// grouped (uint4 with zero 8, fp16 group scales in the int8 domain, fp32 channel scales).
// docs/FORMATS.md has the exact layout; this file is its single implementation (index maps,
// validation, the int8 values the kernel multiplies, and packing for the quantizer).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/marlin_layout.h"
#include "model/weights.h"

namespace specq::qqq {

// Where weight (n, k) of a QQQ matrix with N outputs lives in B (i32 [K/16, 2N]; model/marlin_layout.h
// with the int8 fragment rows): `grouped` picks the nibble interleave ([0,2,4,6,1,3,5,7] grouped,
// [4,0,5,1,6,2,7,3] per-channel).
using NibblePos = marlin::NibblePos;
NibblePos nibble_position(int64_t n, int64_t k, int64_t N, bool grouped);

// Index of output n's scale in s_channel (scale_perm_single) and its column in s_group (scale_perm).
using marlin::channel_scale_index;
using marlin::group_scale_column;

// The int8 the grouped kernel multiplies for 4-bit code c (0..15) under fp16 group scale s:
// round_half_even((c - 8) * s), exact as the kernel's fp16 FMA against the 1152 magic number.
// False when that value leaves [-128, 127] (the kernel's byte extraction would wrap).
bool group_value(int code, float s, int8_t& out);

// Checks a QqqInt4 matrix of logical shape [n, k] (Error naming `name`).
void validate(const std::string& name, const QuantizedWeight& q, int64_t n, int64_t k);

// Row n (k values) in the int8 domain: per-channel 16 * int4, grouped round((q - 8) * s_group).
void int8_row(const Weight& w, int64_t n, int8_t* out);
// s_channel of output n: W[n, k] = int8_row[k] * channel_scale(n).
float channel_scale(const Weight& w, int64_t n);

// A packed QQQ matrix, as QQQ's export writes it.
struct Packed {
  std::vector<int32_t> b;            // [K/16, 2N]
  std::vector<float> s_channel;      // [N], permuted
  std::vector<uint16_t> s_group;     // fp16 [K/g, N], permuted (empty per-channel)
};
// codes: [N][K] nibbles (per-channel: signed int4 in [-8, 7]; grouped: 0..15); channel: [N]
// scales in natural order (per-channel: the int4 scale s, stored as s / 16); group: fp16 [G][N]
// int8-domain group scales in natural order (empty per-channel).
Packed pack(const std::vector<int8_t>& codes, int64_t N, int64_t K, const std::vector<float>& channel,
            const std::vector<uint16_t>& group);

}  // namespace specq::qqq
