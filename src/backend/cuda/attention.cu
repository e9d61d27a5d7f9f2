// Attention of n new queries against the KV cache, with an arbitrary tree mask among the new tokens
// and split-K over the cache (flash-decoding), on tensor cores (mma.sync m16n8k16), flash-attention
// 2 style, for every shape: decode, tree verification and prefill chunks. (A CUDA-core decode
// kernel measured slower even at one query row: 177.3 vs 179.9 tok/s at a 512-token cache and
// 149.9 vs 166.2 at 8k on an H100, docs/PERF.md.)
//
// mma_kernel: a block owns one KV head, a tile of query rows of that head's group (row = token *
// group + head-in-group, so each K/V tile loaded serves every query head that shares it) and one
// slice of the cache. It walks the slice in 64-key tiles, double-buffered with cp.async. Each warp
// keeps its 16 query rows (A fragments), scores S, probabilities P and output O in registers:
// S = Q K^T, online softmax in fp32 (exp2, quad shuffles), P re-packed in place as the A operand of
// O += P V. kRowWarps warps split the query rows, 4 / kRowWarps split each key tile (decode: one
// row tile, four key quarters, merged through shared memory at the end). With several slices,
// partial (m, l, O) go to a workspace and combine_kernel merges them. cache_len and the mask are
// read on the device, so a captured graph serves every step; the slice size follows cache_len.
#include <algorithm>
#include <cfloat>

#include "backend/cuda/device_types.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/mma.cuh"

namespace specq::cuda {
namespace {

constexpr int kKeyTile = 64;  // key rows per tile
// mask_words() of model/runner.h, which nvcc cannot include (it reaches fmt through model/weights.h).
__host__ __device__ constexpr int mask_row_words(int n) { return (n + 63) / 64; }
constexpr int kThreads = 128;
constexpr int kMaxHeadDim = 128;
constexpr int kMaxSplits = 32;         // row tiles: slices per (tile, head)
constexpr int kDecodeMaxSplits = 128;  // one row tile (decode): long caches need many slices

struct Params {
  const void* qkv;
  const void* k_cache;
  const void* v_cache;
  void* out;
  float* part_o;   // [splits][kv_heads][q_rows][head_dim]
  float* part_ml;  // [splits][kv_heads][q_rows][2]: running max (natural-log units) and sum
  StepInputs step;
  int n, group, kv_heads, head_dim, splits, q_rows;
  float scale;
};

// Query `token` is new row q0 + token; new rows [0, q0 + n) follow the cache_len committed ones.
__device__ __forceinline__ bool visible(int key, int token, int cache_len, int q0, int n, bool has_mask,
                                        const uint64_t* mask, int words) {
  if (key < cache_len) return true;
  const int j = key - cache_len;
  if (j >= q0 + n) return false;
  if (!has_mask) return j <= q0 + token;
  return ((mask[int64_t(token) * words + j / 64] >> (j % 64)) & 1u) != 0;
}

// Shared memory of mma_kernel: Q (up to 64 rows), K double buffer, V double buffer; rows padded by
// 16 bytes so the 8 row addresses of an ldmatrix fall in different banks.
template <int HD>
struct MmaSmem {
  static constexpr int ld = HD + 8;
  static constexpr int tile = kKeyTile * ld;  // elements of one 64-row tile
  static constexpr size_t bytes = size_t(5) * tile * 2;
};

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Writes one finished query row chunk: the output itself (one slice) or the slice's partial.
// o is unnormalised; m is in log2 units of the scaled score; l the sum of exp2(s - m).
template <typename T>
__device__ __forceinline__ void store_row_pair(const Params& p, int kv_head, int split, int row, int dim, float o0,
                                               float o1, float m, float l) {
  if (row >= p.q_rows || dim >= p.head_dim) return;
  const int hd = p.head_dim;
  if (p.splits == 1) {
    const int token = row / p.group, head = kv_head * p.group + row % p.group;
    T* out = static_cast<T*>(p.out) + int64_t(token) * p.kv_heads * p.group * hd + int64_t(head) * hd + dim;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    *reinterpret_cast<uint32_t*>(out) = pack2<T>(o0 * inv, o1 * inv);
  } else {
    const int64_t slot = (int64_t(split) * p.kv_heads + kv_head) * p.q_rows + row;
    *reinterpret_cast<float2*>(p.part_o + slot * hd + dim) = make_float2(o0, o1);
    if (dim == 0) {
      p.part_ml[slot * 2] = l > 0.0f ? m * kLn2 : -FLT_MAX;
      p.part_ml[slot * 2 + 1] = l;
    }
  }
}

template <typename T, int HD, int kRowWarps>
__global__ void __launch_bounds__(kThreads) mma_kernel(Params p) {
  constexpr int kKeyWarps = 4 / kRowWarps;
  constexpr int kRows = 16 * kRowWarps;             // query rows per block
  constexpr int kWarpKeys = kKeyTile / kKeyWarps;   // keys of each tile one warp scores
  constexpr int kSn = kWarpKeys / 8;                // S n-tiles per warp
  constexpr int kLd = MmaSmem<HD>::ld;
  constexpr int kTileElems = MmaSmem<HD>::tile;
  chain_start();
  extern __shared__ __align__(16) unsigned char smem[];
  T* sq = reinterpret_cast<T*>(smem);
  T* sk = sq + kTileElems;      // [2][64][kLd]
  T* sv = sk + 2 * kTileElems;  // [2][64][kLd]

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row_warp = warp % kRowWarps, key_warp = warp / kRowWarps;
  const int gid = lane / 4, tig = lane % 4;
  const int q_tile = blockIdx.x, kv_head = blockIdx.y, split = blockIdx.z;
  const int hd = p.head_dim, group = p.group, n = p.n;
  const int kv_dim = p.kv_heads * hd;
  const int64_t qkv_stride = int64_t(p.kv_heads) * group * hd + 2 * kv_dim;
  const int cache_len = *p.step.cache_len;
  const bool has_mask = *p.step.has_mask != 0;
  const int q0 = p.step.query_offset != nullptr ? *p.step.query_offset : 0;
  const int words = p.step.mask_stride > 0 ? p.step.mask_stride : mask_row_words(n);
  const int row0 = q_tile * kRows;

  // Keys this block can see: causal tiles stop after their last token; a tree may see all new rows.
  const int last_token = min(n - 1, (row0 + kRows - 1) / group);
  const int key_end = has_mask ? cache_len + q0 + n : cache_len + q0 + last_token + 1;
  const int slice = ((key_end + p.splits - 1) / p.splits + kKeyTile - 1) / kKeyTile * kKeyTile;
  const int key_begin = split * slice;
  const int key_stop = min(key_end, key_begin + slice);
  const int tiles = key_stop > key_begin ? (key_stop - key_begin + kKeyTile - 1) / kKeyTile : 0;

  const T* qkv = static_cast<const T*>(p.qkv);
  const T* k_cache = static_cast<const T*>(p.k_cache) + int64_t(kv_head) * hd;
  const T* v_cache = static_cast<const T*>(p.v_cache) + int64_t(kv_head) * hd;

  // Q tile; pad rows and pad columns (head_dim < HD) are zero-filled.
  for (int i = threadIdx.x; i < kRows * (HD / 8); i += kThreads) {
    const int r = i / (HD / 8), c = (i % (HD / 8)) * 8, row = row0 + r;
    const bool valid = row < p.q_rows && c < hd;
    const T* src = qkv;
    if (valid) src = qkv + (row / group) * qkv_stride + int64_t(kv_head * group + row % group) * hd + c;
    cp_async16(sq + r * kLd + c, src, valid);
  }
  auto load_kv = [&](int key0, int buf) {
    const int valid_rows = key_stop - key0;
    for (int i = threadIdx.x; i < kKeyTile * (HD / 8); i += kThreads) {
      const int r = i / (HD / 8), c = (i % (HD / 8)) * 8;
      const bool valid = r < valid_rows && c < hd;  // rows past the slice are zero: P * 0 stays finite
      const int64_t at = valid ? int64_t(key0 + r) * kv_dim + c : 0;
      cp_async16(sk + buf * kTileElems + r * kLd + c, k_cache + at, valid);
      cp_async16(sv + buf * kTileElems + r * kLd + c, v_cache + at, valid);
    }
  };
  if (tiles > 0) load_kv(key_begin, 0);
  cp_async_commit();

  const int row_lo = row0 + row_warp * 16 + gid, row_hi = row_lo + 8;
  const int token_lo = min(n - 1, row_lo / group), token_hi = min(n - 1, row_hi / group);
  const float scale_log2 = p.scale * kLog2e;
  uint32_t qf[HD / 16][4];
  float o[HD / 8][4];
#pragma unroll
  for (int j = 0; j < HD / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  for (int t = 0; t < tiles; ++t) {
    const int key0 = key_begin + t * kKeyTile;
    if (t + 1 < tiles) {
      load_kv(key0 + kKeyTile, (t + 1) & 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (t == 0) {
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk)
        ldmatrix_x4(qf[kk], sq + (row_warp * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kLd + kk * 16 + (lane / 16) * 8);
    }
    const T* kb = sk + (t & 1) * kTileElems + key_warp * kWarpKeys * kLd;
    const T* vb = sv + (t & 1) * kTileElems + key_warp * kWarpKeys * kLd;

    float s[kSn][4];
#pragma unroll
    for (int j = 0; j < kSn; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
#pragma unroll
      for (int j2 = 0; j2 < kSn / 2; ++j2) {
        uint32_t b[4];
        ldmatrix_x4(b, kb + (j2 * 16 + (lane / 16) * 8 + lane % 8) * kLd + kk * 16 + ((lane / 8) % 2) * 8);
        mma_16816<T>(s[2 * j2], qf[kk], b[0], b[1]);
        mma_16816<T>(s[2 * j2 + 1], qf[kk], b[2], b[3]);
      }
    }

    // Mask: a tile of committed cache rows is visible to every query; others are checked per key.
    const bool all_visible = key0 + kKeyTile <= cache_len;
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < kSn; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = key0 + key_warp * kWarpKeys + j * 8 + tig * 2 + (e & 1);
        const bool ok = all_visible || (key < key_stop && visible(key, e < 2 ? token_lo : token_hi, cache_len, q0,
                                                                  n, has_mask, p.step.mask, words));
        s[j][e] = ok ? s[j][e] * scale_log2 : -INFINITY;
        tile_max[e / 2] = fmaxf(tile_max[e / 2], s[j][e]);
      }
    }
    float alpha[2], base[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
      const float m_new = fmaxf(m[r], tile_max[r]);
      base[r] = m_new == -INFINITY ? 0.0f : m_new;  // no visible key yet: every exp2 below is 0
      alpha[r] = exp2f(m[r] - base[r]);
      m[r] = m_new;
      l[r] *= alpha[r];
    }
#pragma unroll
    for (int j = 0; j < HD / 8; ++j) {
      o[j][0] *= alpha[0];
      o[j][1] *= alpha[0];
      o[j][2] *= alpha[1];
      o[j][3] *= alpha[1];
    }
#pragma unroll
    for (int j = 0; j < kSn; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[j][e] = exp2f(s[j][e] - base[e / 2]);
        l[e / 2] += s[j][e];
      }
    }

    // O += P V: the S accumulators of two adjacent key n-tiles form one A fragment.
#pragma unroll
    for (int kt = 0; kt < kSn / 2; ++kt) {
      const uint32_t a[4] = {pack2<T>(s[2 * kt][0], s[2 * kt][1]), pack2<T>(s[2 * kt][2], s[2 * kt][3]),
                             pack2<T>(s[2 * kt + 1][0], s[2 * kt + 1][1]),
                             pack2<T>(s[2 * kt + 1][2], s[2 * kt + 1][3])};
#pragma unroll
      for (int d2 = 0; d2 < HD / 16; ++d2) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, vb + (kt * 16 + ((lane / 8) % 2) * 8 + lane % 8) * kLd + d2 * 16 + (lane / 16) * 8);
        mma_16816<T>(o[2 * d2], a, b[0], b[1]);
        mma_16816<T>(o[2 * d2 + 1], a, b[2], b[3]);
      }
    }
    __syncthreads();  // this buffer is refilled by the next iteration's prefetch
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }

  if constexpr (kKeyWarps == 1) {
#pragma unroll
    for (int j = 0; j < HD / 8; ++j) {
      store_row_pair<T>(p, kv_head, split, row_lo, j * 8 + tig * 2, o[j][0], o[j][1], m[0], l[0]);
      store_row_pair<T>(p, kv_head, split, row_hi, j * 8 + tig * 2, o[j][2], o[j][3], m[1], l[1]);
    }
  } else {
    // The key warps of each row warp merge their (m, l, O) through shared memory (the K/V buffers,
    // free now: the loop ended with a barrier and no copy is pending).
    float* so = reinterpret_cast<float*>(sk);  // [4 warps][16 rows][HD]
    float* sm = so + 4 * 16 * HD;              // [4 warps][16 rows]
    float* sl = sm + 4 * 16;
#pragma unroll
    for (int j = 0; j < HD / 8; ++j) {
      *reinterpret_cast<float2*>(so + (warp * 16 + gid) * HD + j * 8 + tig * 2) = make_float2(o[j][0], o[j][1]);
      *reinterpret_cast<float2*>(so + (warp * 16 + gid + 8) * HD + j * 8 + tig * 2) = make_float2(o[j][2], o[j][3]);
    }
    if (tig == 0) {
      sm[warp * 16 + gid] = m[0];
      sm[warp * 16 + gid + 8] = m[1];
      sl[warp * 16 + gid] = l[0];
      sl[warp * 16 + gid + 8] = l[1];
    }
    __syncthreads();
    for (int i = threadIdx.x; i < kRows * (HD / 2); i += kThreads) {
      const int r = i / (HD / 2), dim = (i % (HD / 2)) * 2;
      const int rw = r / 16, rr = r % 16;
      float m_max = -INFINITY;
#pragma unroll
      for (int kw = 0; kw < kKeyWarps; ++kw) {
        const int w = kw * kRowWarps + rw;
        if (sl[w * 16 + rr] > 0.0f) m_max = fmaxf(m_max, sm[w * 16 + rr]);
      }
      float total = 0.0f, o0 = 0.0f, o1 = 0.0f;
#pragma unroll
      for (int kw = 0; kw < kKeyWarps; ++kw) {
        const int w = kw * kRowWarps + rw;
        const float lw = sl[w * 16 + rr];
        if (lw <= 0.0f) continue;
        const float weight = exp2f(sm[w * 16 + rr] - m_max);
        total += weight * lw;
        o0 += weight * so[(w * 16 + rr) * HD + dim];
        o1 += weight * so[(w * 16 + rr) * HD + dim + 1];
      }
      store_row_pair<T>(p, kv_head, split, row0 + r, dim, o0, o1, m_max, total);
    }
  }
}

// Merges the slices of one (kv head, query row): the first warp turns the slices' (max, sum) into
// weights (loads in parallel, not one slice after another), then each thread sums one output dim
// over the slices with independent, unrolled loads.
template <typename T>
__global__ void combine_kernel(Params p) {
  chain_start();
  const int row = blockIdx.x, kv_head = blockIdx.y;
  const int hd = p.head_dim;
  const int64_t slot_stride = int64_t(p.kv_heads) * p.q_rows;
  const int64_t slot0 = int64_t(kv_head) * p.q_rows + row;
  __shared__ float weight[kDecodeMaxSplits];
  __shared__ float inv_total;
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    float m_max = -FLT_MAX;
    for (int s = lane; s < p.splits; s += 32) {
      const int64_t slot = slot0 + s * slot_stride;
      if (p.part_ml[slot * 2 + 1] > 0.0f) m_max = fmaxf(m_max, p.part_ml[slot * 2]);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) m_max = fmaxf(m_max, __shfl_xor_sync(0xffffffffu, m_max, o));
    float total = 0.0f;
    for (int s = lane; s < p.splits; s += 32) {
      const int64_t slot = slot0 + s * slot_stride;
      const float l = p.part_ml[slot * 2 + 1];
      const float w = l > 0.0f ? expf(p.part_ml[slot * 2] - m_max) : 0.0f;
      weight[s] = w;
      total += w * l;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) total += __shfl_xor_sync(0xffffffffu, total, o);
    if (lane == 0) inv_total = total > 0.0f ? 1.0f / total : 0.0f;
  }
  __syncthreads();
  const int token = row / p.group, head = kv_head * p.group + row % p.group;
  T* out = static_cast<T*>(p.out) + int64_t(token) * p.kv_heads * p.group * hd + int64_t(head) * hd;
  for (int c = threadIdx.x; c < hd; c += blockDim.x) {
    float acc = 0.0f;
#pragma unroll 8
    for (int s = 0; s < p.splits; ++s) acc = fmaf(weight[s], p.part_o[(slot0 + s * slot_stride) * hd + c], acc);
    out[c] = from_f32<T>(acc * inv_total);
  }
}

// Up to 16 query rows (decode, small trees) make one row tile whose four warps split each key tile.
bool one_row_tile(const AttentionShape& s) { return s.n * (s.heads / s.kv_heads) <= 16; }

// Head dims run on the next instantiated width; the extra columns are zero.
int padded_head_dim(int head_dim) { return head_dim <= 16 ? 16 : head_dim <= 32 ? 32 : head_dim <= 64 ? 64 : 128; }

size_t mma_smem_bytes(int head_dim) {
  switch (padded_head_dim(head_dim)) {
    case 16: return MmaSmem<16>::bytes;
    case 32: return MmaSmem<32>::bytes;
    case 64: return MmaSmem<64>::bytes;
    default: return MmaSmem<128>::bytes;
  }
}

// Slices: as many blocks as shared memory lets the SMs hold at once, no more than the cache has tiles.
int splits_for(const AttentionShape& s, int sm_count) {
  const bool one = one_row_tile(s);
  const int rows_per_block = one ? 16 : 64;
  const int q_tiles = ceil_div(int64_t(s.n) * (s.heads / s.kv_heads), rows_per_block);
  const int blocks = q_tiles * s.kv_heads;
  const int per_sm = std::max(1, int((size_t(227) << 10) / mma_smem_bytes(s.head_dim)));
  const int wanted = std::max(1, per_sm * sm_count / blocks);
  const int cap = one ? kDecodeMaxSplits : kMaxSplits;
  return std::max(1, std::min(std::min(wanted, cap), ceil_div(s.max_rows, kKeyTile)));
}

template <typename T, int HD>
void launch_mma(const Params& p, bool one_row_tile, cudaStream_t stream) {
  const size_t smem = MmaSmem<HD>::bytes;
  const int rows_per_block = one_row_tile ? 16 : 64;
  const dim3 grid(unsigned(ceil_div(p.q_rows, rows_per_block)), unsigned(p.kv_heads), unsigned(p.splits));
  auto kernel = one_row_tile ? mma_kernel<T, HD, 1> : mma_kernel<T, HD, 4>;
  SPECQ_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  launch_chained(kernel, grid, dim3(kThreads), smem, stream, p);
}

}  // namespace

size_t attention_workspace_bytes(const AttentionShape& s, int sm_count) {
  const int splits = splits_for(s, sm_count);
  if (splits == 1) return 0;
  const size_t slots = size_t(splits) * s.heads * s.n;  // kv_heads * q_rows = heads * n
  return slots * (size_t(s.head_dim) + 2) * sizeof(float);
}

void attention(const void* qkv, DType act, const void* k_cache, const void* v_cache, const AttentionShape& s,
               const StepInputs& step, void* out, void* workspace, int sm_count, cudaStream_t stream) {
  if (s.head_dim % 8 != 0 || s.head_dim > kMaxHeadDim)
    fail_message("CUDA attention needs head_dim a multiple of 8 up to 128 (got " + std::to_string(s.head_dim) + ")");
  Params p{};
  p.qkv = qkv;
  p.k_cache = k_cache;
  p.v_cache = v_cache;
  p.out = out;
  p.step = step;
  p.n = s.n;
  p.group = s.heads / s.kv_heads;
  p.kv_heads = s.kv_heads;
  p.head_dim = s.head_dim;
  p.q_rows = s.n * p.group;
  p.splits = splits_for(s, sm_count);
  p.scale = 1.0f / sqrtf(float(s.head_dim));
  if (p.splits > 1) {
    p.part_o = static_cast<float*>(workspace);
    p.part_ml = p.part_o + size_t(p.splits) * s.kv_heads * p.q_rows * s.head_dim;
  }
  const bool one = one_row_tile(s);
  dispatch_act(act, [&](auto t) {
    using T = decltype(t);
    switch (padded_head_dim(s.head_dim)) {
      case 16: launch_mma<T, 16>(p, one, stream); break;
      case 32: launch_mma<T, 32>(p, one, stream); break;
      case 64: launch_mma<T, 64>(p, one, stream); break;
      default: launch_mma<T, 128>(p, one, stream); break;
    }
    if (p.splits > 1)
      launch_chained(combine_kernel<T>, dim3(unsigned(p.q_rows), unsigned(s.kv_heads)), dim3(128), 0, stream, p);
  });
}

}  // namespace specq::cuda
