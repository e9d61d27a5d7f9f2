// The tile layout the CUDA W4A16 kernel reads (docs/FORMATS.md, "W4A16 tiles"): GptqInt4 matrices
// repacked at upload so that each lane of a warp fetches its mma.m16n8k16 A fragments for a
// 16-row x 64-input block with one 16-byte load, and dequantizes them with a few bit operations.
// Host code, so CPU tests check the packing (unpack_w4a16_tile(pack) == dequantize_row).
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "core/dtype.h"
#include "model/weights.h"

namespace specq {

// One 16 x 64 block = 32 lanes x 4 words. Lane l (gid = l / 4, tig = l % 4) holds in word j the 8
// nibbles of inputs kb = 64 c + 16 tig + 4 j + {0, 1, 2, 3} (c: the block's chunk) for the tile's
// rows gid (r0) and gid + 8 (r1), placed so that (word >> 4i) & 0x000f000f is the A register i:
//   bits 0-3 / 16-19: r0 at kb+0 / kb+1;  4-7 / 20-23: r1 at kb+0 / kb+1;
//   bits 8-11 / 24-27: r0 at kb+2 / kb+3; 12-15 / 28-31: r1 at kb+2 / kb+3.
// Activations use the same input order: lane tig reads inputs 64 c + 16 tig .. + 15 of its token.
struct W4A16Tiles {
  int rows = 0;         // logical output rows (the sum of the parts)
  int row_tiles = 0;    // ceil(rows / 16); padded rows have zero scales
  int k = 0;            // inputs
  int chunks = 0;       // ceil(k / 64); inputs past k hold zero weights
  int group_size = 0;   // a multiple of 16 (k for per-channel)
  int groups = 0;
  bool sym = true;      // every zero point is 8: scales only
  bool swiglu = false;  // rows are [gate; up]: tile t holds gate rows 8t..8t+7 then up rows 8t..8t+7
  DType act = DType::F16;
  std::vector<uint32_t> tiles;  // [row_tiles][chunks][32 lanes][4 words]
  // Per tile and group, as `act` bits, paired for one 32-bit load per lane: sym [8][2] = {scale of
  // row gid, scale of row gid + 8}; asym [8][4] = {scale r0, scale r1, bias + zero r0, bias + zero r1}
  // with bias 1024 (f16) or 128 (bf16), the exponent trick's offset.
  std::vector<uint16_t> scales;
  std::vector<int32_t> perm;  // act-order: kernel input i is model input perm[i]; empty otherwise

  // Index in `scales` of the scale of tile row i (< 16) in `group` (its zero point: + 2 when asym).
  size_t scale_index(int tile, int group, int i) const;
  // Logical output row of tile row (tile, i), i < 16; -1 for padding.
  int source_row(int tile, int i) const;
};

// Packs the GptqInt4 `parts` (their rows stacked, e.g. q, k, v) for activations of dtype `act`
// (F16 or BF16). They must share K, group size, symmetry and act-order permutation. Scales are
// rounded to `act` (bf16 loses 3 mantissa bits of an fp16 scale). swiglu needs two parts [gate, up].
// Throws Error (naming `name`) when the kernel cannot run a part: group size not a multiple of
// 16, K not a multiple of 16, act-order groups that are not contiguous runs of group_size inputs.
W4A16Tiles pack_w4a16_tiles(std::span<const Weight* const> parts, DType act, bool swiglu, const std::string& name);

// The weights of logical row `row`, k floats in model input order: (q - zero) * scale with the
// scale rounded to the activation dtype (kernels that scale before the MMA also round the product).
void unpack_w4a16_row(const W4A16Tiles& t, int row, float* out);

}  // namespace specq
