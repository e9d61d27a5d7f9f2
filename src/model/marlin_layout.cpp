#include "model/marlin_layout.h"

#include <array>
#include <cstddef>

namespace specq::marlin {
namespace {

constexpr int kChunk = 1024;  // values of a B row permuted together (64 outputs x 16 inputs)

// inverse[src] = position in a 1024-run of the value at tile-order index src. The forward
// permutation (Marlin's get_perms): thread i of a warp takes column i/4 of both 8-wide blocks of a
// tile at its four fragment rows, for each of the run's four tiles; then every 8 are interleaved.
std::array<int16_t, kChunk> make_inverse(Layout layout) {
  std::array<int16_t, kChunk> perm{};
  int p = 0;
  for (int i = 0; i < 32; ++i) {
    const std::array<int, 4> rows = layout == Layout::Fp16
                                        ? std::array<int, 4>{2 * (i % 4), 2 * (i % 4) + 1, 2 * (i % 4 + 4),
                                                             2 * (i % 4 + 4) + 1}
                                        : std::array<int, 4>{4 * (i % 4), 4 * (i % 4) + 1, 4 * (i % 4) + 2,
                                                             4 * (i % 4) + 3};
    std::array<int, 8> per_thread{};
    int m = 0;
    for (int block = 0; block < 2; ++block)
      for (int row : rows) per_thread[size_t(m++)] = 16 * row + i / 4 + 8 * block;
    for (int j = 0; j < 4; ++j)
      for (int v : per_thread) perm[size_t(p++)] = int16_t(v + 256 * j);
  }
  constexpr std::array<int, 8> kPairs = {0, 2, 4, 6, 1, 3, 5, 7}, kInt8Channel = {4, 0, 5, 1, 6, 2, 7, 3};
  const std::array<int, 8>& interleave = layout == Layout::Int8Channel ? kInt8Channel : kPairs;
  std::array<int16_t, kChunk> inverse{};
  for (int g = 0; g < kChunk / 8; ++g)
    for (int t = 0; t < 8; ++t) inverse[size_t(perm[size_t(g * 8 + interleave[size_t(t)])])] = int16_t(g * 8 + t);
  return inverse;
}

const std::array<int16_t, kChunk>& inverse_for(Layout layout) {
  static const std::array<int16_t, kChunk> fp16 = make_inverse(Layout::Fp16),
                                           grouped = make_inverse(Layout::Int8Grouped),
                                           channel = make_inverse(Layout::Int8Channel);
  return layout == Layout::Fp16 ? fp16 : layout == Layout::Int8Grouped ? grouped : channel;
}

// inverse of scale_perm_single ([2i + j for i in 0..3 for j in (0,1,8,9,16,17,24,25)]) and of
// scale_perm ([i + 8j for i in 0..7 for j in 0..7]).
template <int Size>
std::array<int8_t, Size> scale_inverse() {
  std::array<int8_t, Size> inverse{};
  int c = 0;
  if constexpr (Size == 32) {
    for (int i = 0; i < 4; ++i)
      for (int j : {0, 1, 8, 9, 16, 17, 24, 25}) inverse[size_t(2 * i + j)] = int8_t(c++);
  } else {
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 8; ++j) inverse[size_t(i + 8 * j)] = int8_t(c++);
  }
  return inverse;
}

}  // namespace

NibblePos nibble_position(int64_t n, int64_t k, int64_t N, Layout layout) {
  const int64_t flat = (n / 16) * 256 + (k % 16) * 16 + n % 16;  // tile order: 16x16 tiles, k-major inside
  const int64_t pos = (flat / kChunk) * kChunk + inverse_for(layout)[size_t(flat % kChunk)];
  return {(k / 16) * 2 * N + pos / 8, int(4 * (pos % 8))};
}

int64_t channel_scale_index(int64_t n) {
  static const std::array<int8_t, 32> inverse = scale_inverse<32>();
  return (n / 32) * 32 + inverse[size_t(n % 32)];
}

int64_t group_scale_column(int64_t n) {
  static const std::array<int8_t, 64> inverse = scale_inverse<64>();
  return (n / 64) * 64 + inverse[size_t(n % 64)];
}

}  // namespace specq::marlin
