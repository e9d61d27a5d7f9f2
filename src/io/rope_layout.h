// Checkpoints that rotate interleaved RoPE pairs (llama2.c, and llama.cpp's GGUF for the llama
// architecture) store q/k rows in another order than the rotate-half layout the forward uses.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace specq {

// For each output row of a [heads * head_dim, ...] q or k matrix in rotate-half order, the row of
// the interleaved matrix it comes from: rotate-half row h*d + j*d/2 + i is interleaved row
// h*d + 2i + j (pair i, element j). Scores q.k are unchanged because q and k get the same order.
std::vector<int64_t> rotate_half_source_rows(int heads, int head_dim);

}  // namespace specq
