// W4A8 validation shared by the QQQ and QoQ formats. Kept out of model/weights.h, which CUDA sources
// include and which therefore must not pull in fmt (core/error.h) under nvcc.
#pragma once
#include <cstdint>
#include <string>

#include "core/error.h"

namespace specq {

// For W4A8 validation: for every group g and output `out` whose scale_of(g, out) is not
// always_fits, checks fits(code_of(out, k), scale) for each input k of the group; a code that does
// not fit is an Error naming tensor `name`, the weight, its code and scale, and `why`.
template <class ScaleOf, class AlwaysFits, class CodeOf, class Fits>
void check_group_codes(const std::string& name, int64_t groups, int64_t n, int group_size, ScaleOf&& scale_of,
                       AlwaysFits&& always_fits, CodeOf&& code_of, Fits&& fits, const char* why) {
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t out = 0; out < n; ++out) {
      const auto s = scale_of(g, out);
      if (always_fits(s)) continue;
      for (int64_t k = g * group_size; k < (g + 1) * group_size; ++k) {
        const int c = code_of(out, k);
        SPECQ_CHECK(fits(c, s), "quantized tensor '{}': weight [{}, {}] is code {} with group scale {}: {}", name, out,
                    k, c, s, why);
      }
    }
  }
}

}  // namespace specq
