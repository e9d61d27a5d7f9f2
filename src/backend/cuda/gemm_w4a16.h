// W4A16 linear on the device: GptqInt4 weights repacked at upload into W4A16Tiles
// (quant/w4a16_tiles.h), dequantized in registers straight into mma.m16n8k16 A fragments;
// fp16/bf16 activations, fp32 accumulation, optional SwiGLU epilogue, act-order by permuting the
// activations' columns. One kernel family for 1..256+ tokens; W4A16Config picks its tile shape.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace specq::cuda {

// Device pointers to one W4A16Tiles matrix.
struct W4A16Weight {
  const void* tiles = nullptr;   // [row_tiles][chunks][32][4] u32
  const void* scales = nullptr;  // [row_tiles][groups][16] (x2 when !sym) of the activation dtype
  const int32_t* perm = nullptr; // [k] or null
  int rows = 0, row_tiles = 0, k = 0, chunks = 0, group_size = 0, groups = 0;
  bool sym = true, swiglu = false;
};

// Kernel shape: tokens per block (8 * token_tiles), 16-row tiles per warp, warps splitting each
// K step inside the block (the other warps of the 4 split rows), and blocks splitting K.
struct W4A16Config {
  int token_tiles = 1;  // 1, 2, 4, 8
  int warp_rows = 1;    // 1, 2
  int warps_k = 1;      // 1, 2, 4
  int splits = 1;       // >= 1
  bool direct = false;  // <= 16 tokens: weights and tokens straight from global memory (no staging ring)
  int warps = 4;        // block size of the staged kernel: 4 or 8 warps
  int unroll = 0;       // direct kernel: chunks (512 bytes each) a warp has in flight: 4, 8, 16
  std::string name() const;
};
// The shapes compiled in, for the runner's measurement (all splits are allowed).
const std::vector<W4A16Config>& w4a16_shapes();
// Splits worth trying for this shape, matrix and GPU (the block count stays within the workspace).
std::vector<int> w4a16_split_choices(const W4A16Config& shape, const W4A16Weight& w, int n, int sm_count);
// A reasonable config without measuring (tests; the runner measures).
W4A16Config w4a16_default_config(const W4A16Weight& w, int n, int sm_count);

// Workspace for up to max_tokens tokens and max_k inputs: tickets, split-K partials, permuted x.
size_t w4a16_workspace_bytes(int max_tokens, int max_k, int sm_count);
void w4a16_clear_workspace(void* workspace, int sm_count, cudaStream_t stream);

// y[t, o] = sum_k x[t, k] W[o, k] (+ bias[o]) for t < n; x [n, k] of `act` (rows 16-byte
// aligned); y [n, rows], fp32 when y_fp32, else `act`. With w.swiglu (rows = [gate; up], no bias,
// act output) y is [n, rows / 2] = silu(gate) * up.
void gemm_w4a16(const W4A16Weight& w, const void* x, DType act, int n, const float* bias, void* y, bool y_fp32,
                const W4A16Config& config, void* workspace, int sm_count, cudaStream_t stream);

}  // namespace specq::cuda
