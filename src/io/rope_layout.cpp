#include "io/rope_layout.h"

namespace specq {

std::vector<int64_t> rotate_half_source_rows(int heads, int head_dim) {
  const int half = head_dim / 2;
  std::vector<int64_t> rows(size_t(heads) * size_t(head_dim));
  for (int h = 0; h < heads; ++h)
    for (int j = 0; j < 2; ++j)
      for (int i = 0; i < half; ++i) rows[size_t(h * head_dim + j * half + i)] = int64_t(h) * head_dim + 2 * i + j;
  return rows;
}

}  // namespace specq
