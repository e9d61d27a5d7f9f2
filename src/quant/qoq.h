// QoQ quantization (Lin et al., 2024, QServe) into WeightFormat::QoqInt4 (model/qoq_format.h):
// GPTQ (or RTN without a Hessian) onto QoQ's grids, after whole-model smoothing (quantize_model).
// SmoothAttention and rotation are not applied. The grids are the format's exact values:
//  - per-channel: asymmetric uint4 over the row's range (which includes 0): s1 = fp16 scale,
//    zero point z, s1_szeros = fp16(z * s1); a code's value is c * s1 - szero;
//  - grouped (progressive): level 1 is symmetric int8 per channel, s1 = fp16(max|row| / 119) (the
//    protective range keeps level 2 inside int8); level 2 is asymmetric uint4 on the level-1
//    values of each group: integer s2 = ceil(range / 15) (<= 17, so code * s2 <= 255), zero z,
//    s2_zeros = -z * s2 (mod 256); codes whose (c - z) * s2 leaves int8 are not used. A code's
//    value is int8(c * s2 + s2_zeros) * s1.
#pragma once
#include <cstdint>
#include <vector>

#include "model/weights.h"
#include "quant/gptq.h"

namespace specq::quant {

Weight quantize_qoq(const float* w, int64_t n, int64_t k, const std::vector<double>& hessian,
                    const QuantOptions& options);

}  // namespace specq::quant
