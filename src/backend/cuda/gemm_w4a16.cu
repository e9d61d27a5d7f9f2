// W4A16 GEMM for 1..256+ tokens on mma.m16n8k16 (design and measurements: docs/cuda-notes.md).
//
// y^T = W x^T with W as the A operand: the tiles (quant/w4a16_tiles.h) give each lane its A
// fragments for a 16 x 64 block in one 16-byte word, which becomes four fp16/bf16 A registers
// per 16 inputs with the exponent trick ((q | 0x6400) is 1024 + q in fp16; 0x4300 is 128 in bf16),
// one subtraction of the zero point (exact) and one multiplication by the group scale. Tokens are
// the B operand; lane tig reads inputs 16 tig .. 16 tig + 15 of its token (the tiles use the same
// input order), so the fragments of four MMAs come from two 16-byte shared-memory loads.
//
// A block of 4 warps owns (4 / warps_k) * warp_rows row tiles and 8 * token_tiles tokens; each
// K step (64 inputs per warp, warps_k of them per step) streams weights and tokens through a
// 4-stage cp.async ring. warps_k > 1 splits a step among warps (reduced through shared memory) so
// that few tokens still keep many loads in flight; splits > 1 splits K across blocks
// (finish_split_k). Weight bytes are read once per token tile, so one token tile of 64 keeps a
// 64-token verification at the cost of streaming the weights once.
#include <algorithm>
#include <string>

#include "backend/cuda/device_types.cuh"
#include "backend/cuda/gemm_w4a16.h"
#include "backend/cuda/mma.cuh"
#include "backend/cuda/split_k.cuh"

namespace specq::cuda {
namespace {

constexpr int kWarps = 4;  // of the direct kernel
constexpr int kXLd = 64 + 8;  // padded token row (elements): the 16-byte fragment loads hit distinct banks
constexpr int kMaxBlocks = 4;    // split-K partials: as many bytes as kMaxBlocks * sm_count blocks of the widest shape
constexpr int kMaxTickets = 32;  // split-K output tiles per multiprocessor

struct W4Params {
  W4A16Weight w;
  const void* x;
  const float* bias;
  void* y;
  float* partial;
  int* tickets;
  int n, chunks_per_split, splits;
  bool y_fp32;
};

// Scale bytes of one row tile for one 64-input chunk: up to 4 groups (group size >= 16) of 16
// rows x {scale, zero} halves.
constexpr int kScaleBytes = 4 * 16 * 2 * 2;

template <int NT, int MW, int WK, int W>
struct Shape {
  static constexpr int kStages = 4;
  static constexpr int kThreads = 32 * W;
  static constexpr int kRowWarps = W / WK;
  static constexpr int kTokens = 8 * NT;
  static constexpr int kWeightBytes = kRowWarps * MW * 512;
  static constexpr int kXBytes = kTokens * kXLd * 2;
  static constexpr int kChunkBytes = kWeightBytes + kXBytes + kRowWarps * MW * kScaleBytes;
  static constexpr int kStageBytes = WK * kChunkBytes;
  static constexpr int kAcc = MW * NT * 4;
  static constexpr size_t kSmem =
      std::max(size_t(kStages) * kStageBytes, size_t(WK - 1) * kRowWarps * kAcc * 32 * 4 + 16);
};

// Four A registers (16 x 16 block j of the lane's word) from 8 nibbles: rows r0 (registers 0, 2)
// and r1 (1, 3) with their zero-plus-bias zb and, when kScale, their scales s (half2 / bfloat162
// of equal halves). Without kScale the registers hold the exact integers q - z.
template <typename T, bool kScale = true>
__device__ __forceinline__ void dequant(uint32_t word, uint32_t s0, uint32_t zb0, uint32_t s1, uint32_t zb1,
                                        uint32_t (&a)[4]) {
  constexpr uint32_t kMagic = std::is_same_v<T, __half> ? 0x64006400u : 0x43004300u;
  using T2 = std::conditional_t<std::is_same_v<T, __half>, __half2, __nv_bfloat162>;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t raw = ((word >> (4 * i)) & 0x000f000fu) | kMagic;
    const uint32_t zb = (i % 2 == 0) ? zb0 : zb1, s = (i % 2 == 0) ? s0 : s1;
    T2 v = __hsub2(*reinterpret_cast<const T2*>(&raw), *reinterpret_cast<const T2*>(&zb));
    if constexpr (kScale) v = __hmul2(v, *reinterpret_cast<const T2*>(&s));
    a[i] = *reinterpret_cast<const uint32_t*>(&v);
  }
}

__device__ __forceinline__ uint32_t splat(uint16_t bits) { return uint32_t(bits) | (uint32_t(bits) << 16); }

// Writes one row tile's accumulators (fragment layout) for tokens t0.. : bias, fp32 or activation
// output, or SwiGLU of the interleaved gate (fragment rows gid) and up (gid + 8) rows.
template <typename T, int NT>
__device__ __forceinline__ void store_tile(const W4Params& p, int tile, int t0, int gid, int tig,
                                           const float (&acc)[NT][4]) {
  const W4A16Weight& w = p.w;
#pragma unroll
  for (int j = 0; j < NT; ++j) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int t = t0 + 8 * j + 2 * tig + e;
      if (t >= p.n) continue;
      if (w.swiglu) {
        const int i = 8 * tile + gid, inter = w.rows / 2;
        if (i >= inter) continue;
        const float gate = acc[j][e], up = acc[j][e + 2];
        static_cast<T*>(p.y)[int64_t(t) * inter + i] = from_f32<T>(gate / (1.0f + __expf(-gate)) * up);
        continue;
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = 16 * tile + gid + 8 * h;
        if (row >= w.rows) continue;
        const float v = acc[j][e + 2 * h] + (p.bias != nullptr ? p.bias[row] : 0.0f);
        if (p.y_fp32) static_cast<float*>(p.y)[int64_t(t) * w.rows + row] = v;
        else static_cast<T*>(p.y)[int64_t(t) * w.rows + row] = from_f32<T>(v);
      }
    }
  }
}

__device__ __forceinline__ uint4 load_streaming(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// A lane's scale pair (rows gid and gid + 8 of its tile) for one group: {scale r0, scale r1} and,
// asymmetric, {zero+bias r0, zero+bias r1} (W4A16Tiles stores them side by side for one load).
__device__ __forceinline__ uint32_t lo_splat(uint32_t pair) { return __byte_perm(pair, 0, 0x1010); }
__device__ __forceinline__ uint32_t hi_splat(uint32_t pair) { return __byte_perm(pair, 0, 0x3232); }

// Few tokens (8 * NT <= 16): no shared-memory staging and no barrier in the loop. The 4 warps of a
// block share one row tile, each streaming a contiguous run of its chunks: a warp issues the
// 16-byte weight words and scale pairs of kUnroll chunks (kUnroll * 512 bytes in flight), then
// dequantizes and multiplies them; tokens (a few KB, L1-resident) are loaded just before use.
// kPostScale (group size a multiple of 64, so a chunk lies in one group): the MMAs run on the
// exact integers q - z and the group's partial sums are scaled once per group in fp32, which
// takes the half2 multiply out of every weight pair. Warps reduce through shared memory at the
// end; blocks splitting K through finish_split_k.
template <typename T, int NT, int kUnroll, bool kPostScale>
__global__ void __launch_bounds__(32 * kWarps) w4a16_direct_kernel(W4Params p) {
  __shared__ float red[kWarps - 1][NT * 4][32];
  chain_start();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
  const int t0 = blockIdx.x * 8 * NT, tile = blockIdx.y, split = blockIdx.z;
  const W4A16Weight& w = p.w;
  const int s_begin = split * p.chunks_per_split, s_end = min(w.chunks, s_begin + p.chunks_per_split);
  const int per_warp = (s_end - s_begin + kWarps - 1) / kWarps;
  const int c_begin = min(s_end, s_begin + warp * per_warp), c_end = min(s_end, c_begin + per_warp);
  const uint4* tile_words = static_cast<const uint4*>(w.tiles) + int64_t(tile) * w.chunks * 32 + lane;
  const T* x = static_cast<const T*>(p.x);
  const int sw = w.sym ? 1 : 2;
  const uint16_t* scales = static_cast<const uint16_t*>(w.scales) + int64_t(tile) * w.groups * 16 * sw + gid * 2 * sw;
  const uint32_t sym_zb = splat(std::is_same_v<T, __half> ? 0x6408u : 0x4308u);
  const int chunks_per_group = w.group_size / 64;  // kPostScale only

  float acc[NT][4], part[NT][4];
#pragma unroll
  for (int j = 0; j < NT; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[j][e] = part[j][e] = 0.0f;
  // kPostScale: chunks left in the current group, and that group's scale pair.
  int left = c_begin < c_end ? chunks_per_group - c_begin % max(chunks_per_group, 1) : 0;
  uint32_t group_scales = 0;
  auto flush = [&](uint32_t pair) {
    const float s0 = __half2float(__ushort_as_half(uint16_t(pair & 0xffffu)));
    const float s1 = __half2float(__ushort_as_half(uint16_t(pair >> 16)));
    const float b0 = std::is_same_v<T, __half> ? s0 : __uint_as_float((pair & 0xffffu) << 16);
    const float b1 = std::is_same_v<T, __half> ? s1 : __uint_as_float(pair & 0xffff0000u);
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      acc[j][0] += part[j][0] * b0, acc[j][1] += part[j][1] * b0;
      acc[j][2] += part[j][2] * b1, acc[j][3] += part[j][3] * b1;
      part[j][0] = part[j][1] = part[j][2] = part[j][3] = 0.0f;
    }
  };

  for (int c0 = c_begin; c0 < c_end; c0 += kUnroll) {
    uint4 wq[kUnroll];
    uint32_t sp[kUnroll], zp[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + u;
      const bool valid = c < c_end;
      wq[u] = valid ? load_streaming(tile_words + int64_t(c) * 32) : make_uint4(0, 0, 0, 0);
      const int group = kPostScale ? c / max(chunks_per_group, 1) : min((64 * c + 16 * tig) / w.group_size, w.groups - 1);
      const uint16_t* sg = scales + int64_t(valid ? group : 0) * 16 * sw;
      sp[u] = __ldg(reinterpret_cast<const uint32_t*>(sg));
      zp[u] = w.sym ? 0u : __ldg(reinterpret_cast<const uint32_t*>(sg) + 1);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + u, col = 64 * c + 16 * tig;
      if (c >= c_end) break;
      uint4 xv[NT][2];
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const int t = t0 + 8 * j + gid;
        const bool ok = t < p.n && col < w.k;
        const uint4* src = reinterpret_cast<const uint4*>(x + int64_t(t) * w.k + col);
        xv[j][0] = ok ? __ldg(src) : make_uint4(0, 0, 0, 0);
        xv[j][1] = ok ? __ldg(src + 1) : make_uint4(0, 0, 0, 0);
      }
      const uint32_t zb0 = w.sym ? sym_zb : lo_splat(zp[u]), zb1 = w.sym ? sym_zb : hi_splat(zp[u]);
      if constexpr (kPostScale) {
        if (left == 0) {
          flush(group_scales);
          left = chunks_per_group;
        }
        --left;
        group_scales = sp[u];
      }
      const uint32_t s0 = lo_splat(sp[u]), s1 = hi_splat(sp[u]);
      const uint32_t words[4] = {wq[u].x, wq[u].y, wq[u].z, wq[u].w};
#pragma unroll
      for (int b = 0; b < 4; ++b) {
        uint32_t a[4];
        dequant<T, !kPostScale>(words[b], s0, zb0, s1, zb1, a);
#pragma unroll
        for (int j = 0; j < NT; ++j) {
          const uint32_t* xf = reinterpret_cast<const uint32_t*>(&xv[j][0]);
          mma_16816<T>(kPostScale ? part[j] : acc[j], a, xf[2 * b], xf[2 * b + 1]);
        }
      }
    }
  }
  if constexpr (kPostScale) flush(group_scales);

  float(&flat)[NT * 4] = reinterpret_cast<float(&)[NT * 4]>(acc);
  if (warp > 0) {
#pragma unroll
    for (int e = 0; e < NT * 4; ++e) red[warp - 1][e][lane] = flat[e];
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int q = 0; q < kWarps - 1; ++q)
#pragma unroll
      for (int e = 0; e < NT * 4; ++e) flat[e] += red[q][e][lane];
  }
  const int out_tile = blockIdx.y * gridDim.x + blockIdx.x;
  if (p.splits > 1 &&
      !finish_split_k(p.partial, p.tickets, out_tile, split, p.splits, warp == 0, lane, 32, flat))
    return;
  if (warp == 0) store_tile<T, NT>(p, tile, t0, gid, tig, acc);
}

template <typename T, int NT, int MW, int WK, int W>
__global__ void __launch_bounds__(32 * W) w4a16_kernel(W4Params p) {
  using S = Shape<NT, MW, WK, W>;
  chain_start();
  extern __shared__ __align__(16) unsigned char smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
  const int wk = warp / S::kRowWarps, wr = warp % S::kRowWarps;
  const int t0 = blockIdx.x * S::kTokens;
  const int tile0 = blockIdx.y * S::kRowWarps * MW;  // first row tile of the block
  const int split = blockIdx.z;
  const W4A16Weight& w = p.w;
  const int c_begin = split * p.chunks_per_split, c_end = min(w.chunks, c_begin + p.chunks_per_split);
  const int steps = (c_end - c_begin + WK - 1) / WK;
  const uint4* tiles = static_cast<const uint4*>(w.tiles);
  const T* x = static_cast<const T*>(p.x);

  const uint16_t* scales = static_cast<const uint16_t*>(w.scales);
  const int scale_words = w.sym ? 1 : 2;
  // Groups that chunk c touches: first_group(c) .. + chunk_groups(c) - 1 (contiguous per tile).
  auto first_group = [&](int c) { return (64 * c) / w.group_size; };
  auto chunk_groups = [&](int c) { return min(w.groups - 1, (64 * c + 63) / w.group_size) - first_group(c) + 1; };

  auto load_step = [&](int step, int stage) {
    unsigned char* base = smem + stage * S::kStageBytes;
#pragma unroll
    for (int q = 0; q < WK; ++q) {
      const int c = c_begin + step * WK + q;
      const bool chunk_ok = c < c_end;
      unsigned char* chunk = base + q * S::kChunkBytes;
#pragma unroll
      for (int i = threadIdx.x; i < S::kRowWarps * MW * 32; i += S::kThreads) {
        const int tile = tile0 + i / 32;
        const bool ok = chunk_ok && tile < w.row_tiles;
        cp_async16(chunk + i * 16, ok ? tiles + (int64_t(tile) * w.chunks + c) * 32 + i % 32 : tiles, ok);
      }
      T* xs = reinterpret_cast<T*>(chunk + S::kWeightBytes);
#pragma unroll
      for (int i = threadIdx.x; i < S::kTokens * 8; i += S::kThreads) {
        const int t = i / 8, col = 64 * c + 8 * (i % 8);
        const bool ok = chunk_ok && t0 + t < p.n && col < w.k;
        cp_async16(xs + t * kXLd + 8 * (i % 8), ok ? x + int64_t(t0 + t) * w.k + col : x, ok);
      }
      // The chunk's scales ride in the ring too: no dependent global load between a step's wait and its MMAs.
      unsigned char* ss = chunk + S::kWeightBytes + S::kXBytes;
      const int pieces = chunk_ok ? chunk_groups(c) * 2 * scale_words : 0;  // 16-byte pieces per tile
#pragma unroll
      for (int i = threadIdx.x; i < S::kRowWarps * MW * 16; i += S::kThreads) {
        const int tile = tile0 + i / 16, piece = i % 16;
        const bool ok = piece < pieces && tile < w.row_tiles;
        const uint16_t* src = scales + (int64_t(tile) * w.groups + (chunk_ok ? first_group(c) : 0)) * 16 * scale_words;
        if (ok) cp_async16(ss + (i / 16) * kScaleBytes + piece * 16, src + piece * 8, true);
      }
    }
  };

  float acc[MW][NT][4];
#pragma unroll
  for (int m = 0; m < MW; ++m)
#pragma unroll
    for (int j = 0; j < NT; ++j) acc[m][j][0] = acc[m][j][1] = acc[m][j][2] = acc[m][j][3] = 0.0f;

  const uint32_t sym_zb = splat(std::is_same_v<T, __half> ? 0x6408u : 0x4308u);  // 1024 + 8 / 128 + 8

  constexpr int kStages = S::kStages;
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < steps) load_step(s, s);
    cp_async_commit();
  }
  for (int step = 0; step < steps; ++step) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // step landed for every thread; the slot of step - 1 is free to refill
    if (step + kStages - 1 < steps) load_step(step + kStages - 1, (step + kStages - 1) % kStages);
    cp_async_commit();
    const int c = c_begin + step * WK + wk;
    if (c >= c_end) continue;
    const unsigned char* chunk = smem + (step % kStages) * S::kStageBytes + wk * S::kChunkBytes;
    const uint16_t* ss = reinterpret_cast<const uint16_t*>(chunk + S::kWeightBytes + S::kXBytes);
    const T* xs = reinterpret_cast<const T*>(chunk + S::kWeightBytes);
    uint32_t xf[NT][8];
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      const uint4* row = reinterpret_cast<const uint4*>(xs + (8 * j + gid) * kXLd + 16 * tig);
      const uint4 lo = row[0], hi = row[1];
      xf[j][0] = lo.x, xf[j][1] = lo.y, xf[j][2] = lo.z, xf[j][3] = lo.w;
      xf[j][4] = hi.x, xf[j][5] = hi.y, xf[j][6] = hi.z, xf[j][7] = hi.w;
    }
    // Inputs past k (the last chunk's padding) hold zero weights and zero activations: any finite scale.
    const int group = min((64 * c + 16 * tig) / w.group_size, w.groups - 1) - first_group(c);
#pragma unroll
    for (int m = 0; m < MW; ++m) {
      const int tile = tile0 + wr * MW + m;
      if (tile >= w.row_tiles) continue;
      const uint4 wq = reinterpret_cast<const uint4*>(chunk)[(wr * MW + m) * 32 + lane];
      const uint32_t* sg = reinterpret_cast<const uint32_t*>(ss + (wr * MW + m) * (kScaleBytes / 2) +
                                                             (group * 16 + gid * 2) * scale_words);
      const uint32_t s0 = lo_splat(sg[0]), s1 = hi_splat(sg[0]);
      const uint32_t zb0 = w.sym ? sym_zb : lo_splat(sg[1]), zb1 = w.sym ? sym_zb : hi_splat(sg[1]);
      const uint32_t words[4] = {wq.x, wq.y, wq.z, wq.w};
#pragma unroll
      for (int b = 0; b < 4; ++b) {
        uint32_t a[4];
        dequant<T>(words[b], s0, zb0, s1, zb1, a);
#pragma unroll
        for (int j = 0; j < NT; ++j) mma_16816<T>(acc[m][j], a, xf[j][2 * b], xf[j][2 * b + 1]);
      }
    }
  }
  cp_async_wait<0>();

  float(&flat)[S::kAcc] = reinterpret_cast<float(&)[S::kAcc]>(acc);
  if constexpr (WK > 1) {  // warps wk > 0 hand their partial sums to warp wk == 0 of their rows
    __syncthreads();
    float* red = reinterpret_cast<float*>(smem);
    const int slot = wr * 32 + lane, slots = S::kRowWarps * 32;
    if (wk > 0) {
#pragma unroll
      for (int e = 0; e < S::kAcc; ++e) red[((wk - 1) * S::kAcc + e) * slots + slot] = flat[e];
    }
    __syncthreads();
    if (wk == 0) {
      for (int q = 0; q < WK - 1; ++q)
#pragma unroll
        for (int e = 0; e < S::kAcc; ++e) flat[e] += red[(q * S::kAcc + e) * slots + slot];
    }
  }
  const int out_tile = blockIdx.y * gridDim.x + blockIdx.x;
  if (p.splits > 1 && !finish_split_k(p.partial, p.tickets, out_tile, split, p.splits, wk == 0,
                                      wr * 32 + lane, S::kRowWarps * 32, flat))
    return;
  if (wk != 0) return;
#pragma unroll
  for (int m = 0; m < MW; ++m)
    if (tile0 + wr * MW + m < w.row_tiles) store_tile<T, NT>(p, tile0 + wr * MW + m, t0, gid, tig, acc[m]);
}

// x_perm[t, i] = x[t, perm[i]] (act-order: the tiles hold inputs sorted by group).
template <typename T>
__global__ void permute_columns_kernel(const T* __restrict__ x, const int32_t* __restrict__ perm, int k, T* out) {
  chain_start();
  const int t = blockIdx.y;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < k; i += gridDim.x * blockDim.x)
    out[int64_t(t) * k + i] = x[int64_t(t) * k + perm[i]];
}

int tickets_bytes(int sm_count) { return (kMaxTickets * sm_count * 4 + 255) / 256 * 256; }
size_t partial_bytes(int sm_count) {
  // Per block at most 4 row warps x (2 x 8 x 4) accumulators x 32 lanes.
  return size_t(kMaxBlocks) * sm_count * 32768;
}

struct Grid {
  int token_blocks, row_blocks;
};
// Split-K partial bytes one block of this shape writes.
size_t partial_bytes_per_block(const W4A16Config& c) {
  const int slots = c.direct ? 32 : (c.warps / c.warps_k) * 32;
  return size_t(c.direct ? 1 : c.warp_rows) * c.token_tiles * 4 * slots * 4;
}
bool split_fits(const W4A16Config& c, int blocks, int splits, int sm_count) {
  return splits == 1 || (blocks <= kMaxTickets * sm_count &&
                         size_t(blocks) * splits * partial_bytes_per_block(c) <= partial_bytes(sm_count));
}
Grid grid_of(const W4A16Config& c, const W4A16Weight& w, int n) {
  const int rows_per_block = c.direct ? 1 : (c.warps / c.warps_k) * c.warp_rows;
  return {ceil_div(n, 8 * c.token_tiles), ceil_div(w.row_tiles, rows_per_block)};
}

template <typename T, int NT, int MW, int WK, int W>
void launch(const W4Params& p, const Grid& g, cudaStream_t stream) {
  auto kernel = w4a16_kernel<T, NT, MW, WK, W>;
  const size_t smem = Shape<NT, MW, WK, W>::kSmem;
  static const bool attribute_set = [&] {  // once per instantiation, not on every (captured) launch
    SPECQ_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    return true;
  }();
  (void)attribute_set;
  launch_chained(kernel, dim3(unsigned(g.token_blocks), unsigned(g.row_blocks), unsigned(p.splits)), dim3(32 * W),
                 smem, stream, p);
}

// The compiled shapes: {token_tiles, warp_rows, warps_k, warps}.
#define SPECQ_W4A16_SHAPES(X) \
  X(4, 1, 2, 4) X(4, 2, 1, 4) X(8, 1, 1, 4) X(8, 2, 1, 4) X(4, 2, 1, 8) X(8, 1, 1, 8) X(8, 2, 1, 8)

template <typename T, int NT, int kUnroll>
void launch_direct(const W4Params& p, const Grid& g, cudaStream_t stream) {
  if (p.w.group_size % 64 == 0) {
    launch_chained(w4a16_direct_kernel<T, NT, kUnroll, true>,
                   dim3(unsigned(g.token_blocks), unsigned(g.row_blocks), unsigned(p.splits)), dim3(32 * kWarps), 0,
                   stream, p);
    return;
  }
  launch_chained(w4a16_direct_kernel<T, NT, kUnroll, false>, dim3(unsigned(g.token_blocks), unsigned(g.row_blocks), unsigned(p.splits)),
                 dim3(32 * kWarps), 0, stream, p);
}

template <typename T>
void launch_shape(const W4A16Config& c, const W4Params& p, const Grid& g, cudaStream_t stream) {
  if (c.direct) {
    if (c.token_tiles == 1 && c.unroll == 4) return launch_direct<T, 1, 4>(p, g, stream);
    if (c.token_tiles == 1 && c.unroll == 8) return launch_direct<T, 1, 8>(p, g, stream);
    if (c.token_tiles == 1 && c.unroll == 16) return launch_direct<T, 1, 16>(p, g, stream);
    if (c.token_tiles == 2 && c.unroll == 4) return launch_direct<T, 2, 4>(p, g, stream);
    if (c.token_tiles == 2 && c.unroll == 8) return launch_direct<T, 2, 8>(p, g, stream);
  }
#define SPECQ_W4A16_CASE(NT, MW, WK, W)                                                                \
  if (!c.direct && c.token_tiles == NT && c.warp_rows == MW && c.warps_k == WK && c.warps == W) { \
    launch<T, NT, MW, WK, W>(p, g, stream);                                                       \
    return;                                                                                       \
  }
  SPECQ_W4A16_SHAPES(SPECQ_W4A16_CASE)
#undef SPECQ_W4A16_CASE
  fail_message("gemm_w4a16: shape " + c.name() + " is not compiled in");
}

void require(bool ok, const std::string& what) {
  if (!ok) fail_message("gemm_w4a16: " + what);
}

}  // namespace

std::string W4A16Config::name() const {
  if (direct)
    return "direct-t" + std::to_string(8 * token_tiles) + "u" + std::to_string(unroll) + "s" + std::to_string(splits);
  return "t" + std::to_string(8 * token_tiles) + "r" + std::to_string(16 * warp_rows) + "k" + std::to_string(warps_k) +
         "w" + std::to_string(warps) + "s" + std::to_string(splits);
}

const std::vector<W4A16Config>& w4a16_shapes() {
  static const std::vector<W4A16Config> shapes = {
      W4A16Config{1, 1, kWarps, 1, true, kWarps, 4},  W4A16Config{1, 1, kWarps, 1, true, kWarps, 8},
      W4A16Config{1, 1, kWarps, 1, true, kWarps, 16}, W4A16Config{2, 1, kWarps, 1, true, kWarps, 4},
      W4A16Config{2, 1, kWarps, 1, true, kWarps, 8},
#define SPECQ_W4A16_ENTRY(NT, MW, WK, W) W4A16Config{NT, MW, WK, 1, false, W, 0},
      SPECQ_W4A16_SHAPES(SPECQ_W4A16_ENTRY)
#undef SPECQ_W4A16_ENTRY
  };
  return shapes;
}

std::vector<int> w4a16_split_choices(const W4A16Config& shape, const W4A16Weight& w, int n, int sm_count) {
  const Grid g = grid_of(shape, w, n);
  const int blocks = g.token_blocks * g.row_blocks;
  std::vector<int> out = {1};
  for (const int s : {2, 3, 4, 6, 8, 12, 16})
    if (split_fits(shape, blocks, s, sm_count) && w.chunks / s >= 2 * shape.warps_k) out.push_back(s);
  return out;
}

W4A16Config w4a16_default_config(const W4A16Weight& w, int n, int sm_count) {
  W4A16Config c = n <= 8 ? W4A16Config{1, 1, kWarps, 1, true, kWarps, 8}
                : n <= 16 ? W4A16Config{2, 1, kWarps, 1, true, kWarps, 4}
                : n <= 32 ? W4A16Config{4, 2, 1, 1, false, 8, 0} : W4A16Config{8, 2, 1, 1, false, 8, 0};
  const Grid g = grid_of(c, w, n);
  const int blocks = g.token_blocks * g.row_blocks;
  while (c.splits < 8 && blocks * c.splits * 2 <= 2 * sm_count && w.chunks / (c.splits * 2) >= 2 * c.warps_k &&
         split_fits(c, blocks, c.splits * 2, sm_count))
    c.splits *= 2;
  return c;
}

size_t w4a16_workspace_bytes(int max_tokens, int max_k, int sm_count) {
  return size_t(tickets_bytes(sm_count)) + partial_bytes(sm_count) + size_t(max_tokens) * size_t(max_k) * 2 + 256;
}

void w4a16_clear_workspace(void* workspace, int sm_count, cudaStream_t stream) {
  SPECQ_CUDA(cudaMemsetAsync(workspace, 0, size_t(tickets_bytes(sm_count)), stream));
}

void gemm_w4a16(const W4A16Weight& w, const void* x, DType act, int n, const float* bias, void* y, bool y_fp32,
                const W4A16Config& config, void* workspace, int sm_count, cudaStream_t stream) {
  require(n >= 1, "needs at least one token (got " + std::to_string(n) + ")");
  require(w.rows > 0 && w.k > 0 && w.k % 16 == 0 && w.group_size > 0 && w.group_size % 16 == 0 &&
              w.k % w.group_size == 0 && w.groups == w.k / w.group_size && w.chunks == ceil_div(w.k, 64),
          "inconsistent tiles (rows " + std::to_string(w.rows) + ", k " + std::to_string(w.k) + ", group size " +
              std::to_string(w.group_size) + ")");
  require(w.row_tiles == (w.swiglu ? ceil_div(w.rows / 2, 8) : ceil_div(w.rows, 16)), "row tiles do not match rows");
  require(!w.swiglu || (w.rows % 2 == 0 && bias == nullptr && !y_fp32),
          "SwiGLU needs [gate; up] rows, no bias and an activation-typed output");
  require(w.tiles != nullptr && w.scales != nullptr && x != nullptr && y != nullptr && workspace != nullptr,
          "null pointer");
  require(reinterpret_cast<uintptr_t>(x) % 16 == 0, "activations must be 16-byte aligned");
  require(config.splits >= 1, "splits must be >= 1");
  const Grid g = grid_of(config, w, n);
  require(g.token_blocks <= 65535 && g.row_blocks <= 65535, "too many tokens or rows");

  auto* ws = static_cast<unsigned char*>(workspace);
  W4Params p{};
  p.w = w;
  p.x = x;
  p.bias = bias;
  p.y = y;
  p.tickets = reinterpret_cast<int*>(ws);
  p.partial = reinterpret_cast<float*>(ws + tickets_bytes(sm_count));
  p.n = n;
  p.y_fp32 = y_fp32;
  // A config measured at fewer tokens may split more than the workspace allows at this count.
  const int blocks = g.token_blocks * g.row_blocks;
  int splits = config.splits;
  while (splits > 1 && !split_fits(config, blocks, splits, sm_count)) --splits;
  const int cps = ceil_div(w.chunks, splits);
  p.chunks_per_split = ceil_div(cps, config.warps_k) * config.warps_k;
  p.splits = ceil_div(w.chunks, p.chunks_per_split);
  dispatch_act(act, [&](auto tag) {
    using T = decltype(tag);
    if (w.perm != nullptr) {
      T* xp = reinterpret_cast<T*>(ws + tickets_bytes(sm_count) + partial_bytes(sm_count));
      launch_chained(permute_columns_kernel<T>, dim3(unsigned(ceil_div(w.k, 256)), unsigned(n)), dim3(256), 0, stream,
                     static_cast<const T*>(x), w.perm, w.k, xp);
      p.x = xp;
    }
    launch_shape<T>(config, p, g, stream);
  });
}

}  // namespace specq::cuda
