// Linear layers for 9..128 tokens (tree verification, short prefill chunks) on tensor cores.
// At these token counts a layer is still bound by its weight bytes (Llama-3-8B gate|up at 64
// tokens: 235 MB against 15 GFLOP), so the kernel is built like the GEMV: every weight byte is read
// once, with deep cp.async pipelining, and the tokens ride along as the narrow side of the MMA.
//
// The product is computed transposed, y^T = W x^T: a block owns 128 weight rows (8 warps x 16, the
// A operand straight from W's row-major layout) and every token (the B operand; x rows are k-major,
// which is what mma's "col" B wants), walking K in 64-wide steps through a 3-4 stage ring. When the
// row tiles alone cannot fill the GPU, K is split across blocks; each writes fp32 partials in
// fragment order and the last block of a tile (an atomic ticket) sums them, so no second launch.
// The epilogue stages the tile through shared memory for coalesced stores, adds the bias, and for
// gate|up applies SwiGLU (a block then owns 64 gate rows and the matching 64 up rows).
//
// Measured on an H100 (docs/cuda-notes.md): it does not yet beat cuBLAS at 5-128 tokens, so the
// runner's per-count table picks it only where it wins. A variant that streamed weight rows from
// global memory straight into MMA fragments (no shared memory for W; tokens from L1) lost by more
// (gate_up at 64 tokens 176 us vs 114 staged, 102 cuBLAS) and was removed.
#include <algorithm>

#include "backend/cuda/device_types.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/mma.cuh"
#include "backend/cuda/split_k.cuh"

namespace specq::cuda {
namespace {

constexpr int kThreads = 256;  // 8 warps
constexpr int kTileRows = 128;
constexpr int kKStep = 64;
constexpr int kLd = kKStep + 8;  // padded row (elements): ldmatrix row addresses hit distinct banks
constexpr int kMaxSplits = 8;

template <int MT>
struct Shape {
  static constexpr int stages = MT >= 128 ? 3 : 4;
  static constexpr int stage_elems = (kTileRows + MT) * kLd;
  static constexpr int ldc = MT + 1;  // epilogue tile [kTileRows][ldc] fp32
  static constexpr size_t smem = std::max(size_t(stages) * stage_elems * 2, size_t(kTileRows) * ldc * 4);
};

struct SkinnyParams {
  const void* w;
  const void* x;
  const float* bias;
  void* y;
  float* partial;  // [tiles][splits][MT * kTileRows] (finish_split_k)
  int* tickets;    // [tiles], zero between launches
  int n, rows, cols, inter, k_per_split, splits;
};

template <typename T, typename OutT, int MT, bool kSwiglu>
__global__ void __launch_bounds__(kThreads) staged_kernel(SkinnyParams p) {
  using S = Shape<MT>;
  chain_start();
  extern __shared__ __align__(16) unsigned char smem[];
  T* ring = reinterpret_cast<T*>(smem);
  const int tile = blockIdx.x, split = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
  const int k_begin = split * p.k_per_split, k_end = min(p.cols, k_begin + p.k_per_split);
  const int ksteps = (k_end - k_begin + kKStep - 1) / kKStep;
  const T* w = static_cast<const T*>(p.w);
  const T* x = static_cast<const T*>(p.x);

  // Local row r of the tile -> weight row (SwiGLU: rows 0-63 gate, 64-127 the matching up rows).
  auto weight_row = [&](int r, bool& valid) {
    if constexpr (kSwiglu) {
      const int i = tile * 64 + (r & 63);
      valid = i < p.inter;
      return (r < 64 ? 0 : p.inter) + i;
    } else {
      const int row = tile * kTileRows + r;
      valid = row < p.rows;
      return row;
    }
  };
  auto load_stage = [&](int ks, int stage) {
    T* sw = ring + stage * S::stage_elems;
    T* sx = sw + kTileRows * kLd;
    const int k0 = k_begin + ks * kKStep;
#pragma unroll
    for (int i = threadIdx.x; i < kTileRows * (kKStep / 8); i += kThreads) {
      const int r = i / (kKStep / 8), c = (i % (kKStep / 8)) * 8;
      bool valid = false;
      const int row = weight_row(r, valid);
      valid = valid && k0 + c < k_end;
      cp_async16(sw + r * kLd + c, valid ? w + int64_t(row) * p.cols + k0 + c : w, valid);
    }
#pragma unroll
    for (int i = threadIdx.x; i < MT * (kKStep / 8); i += kThreads) {
      const int t = i / (kKStep / 8), c = (i % (kKStep / 8)) * 8;
      const bool valid = t < p.n && k0 + c < k_end;
      cp_async16(sx + t * kLd + c, valid ? x + int64_t(t) * p.cols + k0 + c : x, valid);
    }
  };

  float acc[MT / 8][4];
#pragma unroll
  for (int j = 0; j < MT / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;

#pragma unroll
  for (int s = 0; s < S::stages - 1; ++s) {
    if (s < ksteps) load_stage(s, s);
    cp_async_commit();  // empty groups keep the count uniform
  }
  for (int ks = 0; ks < ksteps; ++ks) {
    cp_async_wait<S::stages - 2>();
    __syncthreads();  // step ks landed for every thread; step ks - 1's slot is free to refill
    if (ks + S::stages - 1 < ksteps) load_stage(ks + S::stages - 1, (ks + S::stages - 1) % S::stages);
    cp_async_commit();
    const T* sw = ring + (ks % S::stages) * S::stage_elems;
    const T* sx = sw + kTileRows * kLd;
#pragma unroll
    for (int kk = 0; kk < kKStep / 16; ++kk) {
      uint32_t a[4];
      ldmatrix_x4(a, sw + (warp * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kLd + kk * 16 + (lane / 16) * 8);
#pragma unroll
      for (int j2 = 0; j2 < MT / 16; ++j2) {
        uint32_t b[4];
        ldmatrix_x4(b, sx + (j2 * 16 + (lane / 16) * 8 + lane % 8) * kLd + kk * 16 + ((lane / 8) % 2) * 8);
        mma_16816<T>(acc[2 * j2], a, b[0], b[1]);
        mma_16816<T>(acc[2 * j2 + 1], a, b[2], b[3]);
      }
    }
  }
  cp_async_wait<0>();

  if (p.splits > 1 && !finish_split_k(p.partial, p.tickets, tile, split, p.splits, true, int(threadIdx.x), kThreads,
                                      reinterpret_cast<float(&)[MT / 8 * 4]>(acc)))
    return;

  __syncthreads();  // every warp is done reading the ring: reuse it as the output tile
  float* sc = reinterpret_cast<float*>(smem);
#pragma unroll
  for (int j = 0; j < MT / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      sc[(warp * 16 + gid + (e >= 2 ? 8 : 0)) * S::ldc + j * 8 + tig * 2 + (e & 1)] = acc[j][e];
  __syncthreads();
  OutT* y = static_cast<OutT*>(p.y);
  if constexpr (kSwiglu) {
    for (int i = threadIdx.x; i < MT * 64; i += kThreads) {
      const int t = i / 64, r = i % 64, col = tile * 64 + r;
      if (t >= p.n || col >= p.inter) continue;
      const float gate = sc[r * S::ldc + t], up = sc[(r + 64) * S::ldc + t];
      y[int64_t(t) * p.inter + col] = from_f32<OutT>(gate / (1.0f + expf(-gate)) * up);
    }
  } else {
    for (int i = threadIdx.x; i < MT * kTileRows; i += kThreads) {
      const int t = i / kTileRows, r = i % kTileRows, row = tile * kTileRows + r;
      if (t >= p.n || row >= p.rows) continue;
      const float v = sc[r * S::ldc + t] + (p.bias != nullptr ? p.bias[row] : 0.0f);
      y[int64_t(t) * p.rows + row] = from_f32<OutT>(v);
    }
  }
}

// Split-K runs only while tiles * splits <= 2 * sm_count (tiles < sm_count); a tile has one ticket.
int tickets_bytes(int sm_count) { return (sm_count * 4 + 255) / 256 * 256; }

template <typename T, typename OutT, int MT, bool kSwiglu>
void launch(SkinnyParams p, int tiles, cudaStream_t stream) {
  auto kernel = staged_kernel<T, OutT, MT, kSwiglu>;
  const size_t smem = Shape<MT>::smem;
  SPECQ_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  launch_chained(kernel, dim3(unsigned(tiles), unsigned(p.splits)), dim3(kThreads), smem, stream, p);
}

template <typename T, typename OutT, bool kSwiglu>
void launch_for_tokens(const SkinnyParams& p, int tiles, cudaStream_t stream) {
  if (p.n <= 16) launch<T, OutT, 16, kSwiglu>(p, tiles, stream);
  else if (p.n <= 32) launch<T, OutT, 32, kSwiglu>(p, tiles, stream);
  else if (p.n <= 64) launch<T, OutT, 64, kSwiglu>(p, tiles, stream);
  else launch<T, OutT, 128, kSwiglu>(p, tiles, stream);
}

}  // namespace

size_t skinny_gemm_workspace_bytes(int sm_count) {
  // Partials of at most 2 * sm_count blocks of 128 rows, each with up to kSkinnyMaxTokens columns.
  return size_t(tickets_bytes(sm_count)) + size_t(2) * sm_count * kSkinnyMaxTokens * kTileRows * 4;
}

void skinny_gemm_clear_workspace(void* workspace, int sm_count, cudaStream_t stream) {
  SPECQ_CUDA(cudaMemsetAsync(workspace, 0, size_t(tickets_bytes(sm_count)), stream));
}

void skinny_gemm(const void* w, const void* x, const float* bias, void* y, bool y_fp32, DType act, int n, int rows,
                 int cols, bool swiglu, void* workspace, int sm_count, cudaStream_t stream) {
  if (n < 1 || n > kSkinnyMaxTokens || cols % 8 != 0)
    fail_message("skinny_gemm: needs 1..128 tokens and cols a multiple of 8 (got n=" + std::to_string(n) +
                 ", cols=" + std::to_string(cols) + ")");
  if (swiglu && (rows % 2 != 0 || y_fp32 || bias != nullptr))
    fail_message("skinny_gemm: SwiGLU needs [gate; up] rows, no bias and an activation-typed output");
  SkinnyParams p{};
  p.w = w;
  p.x = x;
  p.bias = bias;
  p.y = y;
  p.n = n;
  p.rows = rows;
  p.cols = cols;
  p.inter = rows / 2;
  const int tiles = swiglu ? ceil_div(p.inter, kTileRows / 2) : ceil_div(rows, kTileRows);
  const int ksteps = ceil_div(cols, kKStep);
  int splits = 1;
  if (tiles < sm_count)  // too few row tiles to fill the GPU: split K, at least 4 steps each
    splits = std::max(1, std::min({kMaxSplits, 2 * sm_count / tiles, ksteps / 4}));
  p.k_per_split = ceil_div(ksteps, splits) * kKStep;
  p.splits = ceil_div(cols, p.k_per_split);
  p.tickets = static_cast<int*>(workspace);
  p.partial = reinterpret_cast<float*>(static_cast<unsigned char*>(workspace) + tickets_bytes(sm_count));
  dispatch_act(act, [&](auto t) {
    using T = decltype(t);
    if (swiglu) launch_for_tokens<T, T, true>(p, tiles, stream);
    else if (y_fp32) launch_for_tokens<T, float, false>(p, tiles, stream);
    else launch_for_tokens<T, T, false>(p, tiles, stream);
  });
}

}  // namespace specq::cuda
