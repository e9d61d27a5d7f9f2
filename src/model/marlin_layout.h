// Marlin-style 4-bit tiles (IST-DASLab Marlin; vLLM's gptq_marlin_repack and QQQ's export write
// them): B is i32 [K/16, 2N]. Row r of B holds inputs 16r..16r+15 of every output: the [16 x N]
// slab is cut into 16x16 tiles (k-major inside a tile), each run of 1024 values (4 tiles) is
// permuted so that a warp's mma fragments load with plain vector loads, then 8 values pack into a
// word, lowest nibble first. The permutation depends on the mma the kernel feeds. Scales of such
// matrices are permuted too, in runs of 64 outputs (group scales) or 32 (per-channel scales).
// docs/FORMATS.md has the details; this file is the one implementation of these index maps.
#pragma once
#include <cstdint>

namespace specq::marlin {

enum class Layout {
  Fp16,         // W4A16 Marlin: m16n8k16 fp16 fragment rows {2(i%4), 2(i%4)+1, 2(i%4+4), 2(i%4+4)+1},
                // nibble interleave [0,2,4,6,1,3,5,7]
  Int8Grouped,  // QQQ grouped: int8 fragment rows 4(i%4)+0..3, interleave [0,2,4,6,1,3,5,7]
  Int8Channel,  // QQQ per-channel: int8 fragment rows, interleave [4,0,5,1,6,2,7,3]
};

// Where weight (n, k) of a matrix with N outputs lives in B: word index into B's row-major words
// and the nibble's bit shift.
struct NibblePos {
  int64_t word = 0;
  int shift = 0;
};
NibblePos nibble_position(int64_t n, int64_t k, int64_t N, Layout layout);

// Index of output n's scale among per-channel scales (scale_perm_single, runs of 32 outputs) and its
// column among group scales (scale_perm, runs of 64).
int64_t channel_scale_index(int64_t n);
int64_t group_scale_column(int64_t n);

}  // namespace specq::marlin
