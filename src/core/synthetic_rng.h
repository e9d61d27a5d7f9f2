// Counter-based random values for synthetic: models. The same function runs on the host and in CUDA
// kernels, so a synthetic model has identical weights on every backend without a host copy.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define SPECQ_HOST_DEVICE __host__ __device__
#else
#define SPECQ_HOST_DEVICE
#endif

namespace specq {

SPECQ_HOST_DEVICE inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// offset + scale * u with u uniform in [-1, 1), a pure function of (seed, index).
SPECQ_HOST_DEVICE inline float synthetic_value(uint64_t seed, uint64_t index, float offset, float scale) {
  const uint64_t r = splitmix64(seed ^ (index * 0xd1b54a32d192ed03ull));
  const float u = float(int32_t(uint32_t(r >> 40) & 0xffffffu) - 0x800000) * (1.0f / 8388608.0f);
  return offset + scale * u;
}

// 32 random bits, a pure function of (seed, index): the packed 4-bit words of synthetic GptqInt4.
SPECQ_HOST_DEVICE inline uint32_t synthetic_word(uint64_t seed, uint64_t index) {
  return uint32_t(splitmix64(seed ^ (index * 0x9fb21c651e98df25ull)) >> 32);
}

}  // namespace specq
