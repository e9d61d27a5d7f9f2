// QQQ quantization (Zhang et al., 2024) into WeightFormat::QqqInt4 (model/qqq_format.h): GPTQ (or
// RTN without a Hessian) onto QQQ's grids. Smoothing happens before, on the whole model
// (quant/smoothquant.h, quantize_model). The grids are the format's exact values, so GPTQ's error
// feedback sees what the kernel will compute:
//  - per-channel: symmetric int4 codes in [-7, 7], scale s = max|row| / 7 (stored s_channel = s/16);
//  - grouped: uint4 codes with zero 8 and group scale s_g = 2 max|group| / 15 (AutoGPTQ's rule);
//    the channel scale s_c = max_g s_g / 15.875 and s_group = fp16(s_g / s_c), so every code's
//    int8 value round((q - 8) * s_group) fits int8; a code's value is that int8 times s_c.
#pragma once
#include <cstdint>
#include <vector>

#include "model/weights.h"
#include "quant/gptq.h"

namespace specq::quant {

// w: fp32 [n, k]; hessian [k, k] (GPTQ) or empty (RTN). options.group_size -1 is per-channel.
// The Weight owns its tensors.
Weight quantize_qqq(const float* w, int64_t n, int64_t k, const std::vector<double>& hessian,
                    const QuantOptions& options);

}  // namespace specq::quant
