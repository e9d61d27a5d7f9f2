// Counter-based sampling: a token is drawn as the argmax of (logit / temperature + Gumbel noise)
// over the kept tokens (top-k, then top-p), which is an exact draw from their softmax. The noise
// is a pure function of (seed, draw, token), so the CUDA kernel (sample.cu) and its CPU reference
// (Sampler::draw_counter_based) make the same choice from the same logits, with no RNG state on
// the device and nothing to copy but the chosen ids.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/synthetic_rng.h"

namespace specq {

// What a forward needs to sample on the device. Rows r of one forward use draw + r.
struct DrawParams {
  float temperature = 1.0f;  // > 0
  int32_t top_k = 0;         // 0 = whole vocabulary; ties at the cut are kept (as Hugging Face does)
  float top_p = 1.0f;        // (0, 1]; the smallest top set whose mass reaches it, ties kept
  uint32_t reserved = 0;
  uint64_t seed = 0;
  uint64_t draw = 0;
};

// Maps a float to an unsigned key with the same order (negative values below positive ones).
SPECQ_HOST_DEVICE inline uint32_t order_key(float value) {
  uint32_t u = 0;
#if defined(__CUDA_ARCH__)
  u = __float_as_uint(value);
#else
  __builtin_memcpy(&u, &value, 4);
#endif
  return (u & 0x80000000u) != 0 ? ~u : (u | 0x80000000u);
}

// Standard Gumbel noise -log(-log(u)), u uniform in (0, 1) from 53 hashed bits; double precision
// so the far tails (u near 0 or 1) stay accurate.
SPECQ_HOST_DEVICE inline double gumbel_noise(uint64_t seed, uint64_t draw, uint32_t token) {
  const uint64_t h = splitmix64(seed ^ splitmix64(draw ^ 0x5851f42d4c957f2dull) ^ (uint64_t(token) * 0xd1b54a32d192ed03ull));
  const double u = (double(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);
  return -log(-log(u));
}

}  // namespace specq
