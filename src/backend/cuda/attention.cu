// Attention of n new queries against the KV cache, with an arbitrary tree mask among the new tokens
// and split-K over the cache (flash-decoding). Two kernels:
//  * decode_kernel, for at most 8 query rows per KV head (decode, small trees): CUDA cores, each
//    half-warp streams one key row at a time with 16-byte loads; memory-bound, so it only has to
//    keep enough loads in flight;
//  * tile_kernel, for everything larger (tree verification, prefill chunks): tensor cores.
//
// tile_kernel: a block owns one KV head, a tile of 64 query rows of that head's group (row = token * group +
// head-in-group, so each K/V tile loaded serves every query head that shares it) and one slice of
// the cache. It walks the slice in 64-row tiles: S = Q K^T and O += P V on tensor cores (WMMA,
// fp32 accumulation), online softmax in fp32 between them. With several slices, partial (m, l, O)
// go to a workspace and a second kernel merges them. cache_len and the mask are read on the
// device, so a captured graph serves every step; the slice size follows cache_len at run time.
#include <mma.h>

#include <algorithm>
#include <cfloat>

#include "backend/cuda/device_types.cuh"
#include "backend/cuda/kernels.h"
#include "model/runner.h"

namespace specq::cuda {
namespace {

constexpr int kTile = 64;  // query rows and key rows per tile
constexpr int kThreads = 128;
constexpr int kMaxHeadDim = 128;
constexpr int kMaxSplits = 32;

struct Layout {  // shared-memory carve-up, leading dimensions padded against bank conflicts
  int head_dim, ld_qkv, ld_o;  // head_dim rounded up to 16 (the MMA depth); pad columns are zero
  static constexpr int ld_s = kTile + 4, ld_p = kTile + 8;
  __host__ __device__ size_t q() const { return 0; }
  __host__ __device__ size_t k() const { return q() + size_t(kTile) * ld_qkv * 2; }
  __host__ __device__ size_t v() const { return k() + size_t(kTile) * ld_qkv * 2; }
  __host__ __device__ size_t s() const { return v() + size_t(kTile) * ld_qkv * 2; }
  __host__ __device__ size_t p() const { return s() + size_t(kTile) * ld_s * 4; }
  __host__ __device__ size_t o() const { return p() + size_t(kTile) * ld_p * 2; }
  __host__ __device__ size_t bytes() const { return o() + size_t(kTile) * ld_o * 4; }
};

__host__ __device__ Layout layout_for(int head_dim) {
  const int padded = (head_dim + 15) / 16 * 16;
  return Layout{padded, padded + 8, padded + 4};
}

struct Params {
  const void* qkv;
  const void* k_cache;
  const void* v_cache;
  void* out;
  float* part_o;   // [splits][kv_heads][q_rows][head_dim]
  float* part_ml;  // [splits][kv_heads][q_rows][2]
  StepInputs step;
  int n, group, kv_heads, head_dim, splits, q_rows;
  float scale;
};

__device__ __forceinline__ bool visible(int key, int token, int cache_len, int n, bool has_mask, const uint64_t* mask,
                                        int words) {
  if (key < cache_len) return true;
  const int j = key - cache_len;
  if (j >= n) return false;
  if (!has_mask) return j <= token;
  return ((mask[int64_t(token) * words + j / 64] >> (j % 64)) & 1u) != 0;
}

// Copies 64 rows x head_dim of a [rows, stride] matrix into shared memory; rows past `valid` are zero.
// Columns from head_dim up to the padded width are written as zeros. All of a thread's 16-byte
// loads of both tiles are issued before any is stored, so their latencies overlap.
constexpr int kVectorsPerThread = kTile * (kMaxHeadDim / 8) / kThreads;

template <typename T>
__device__ __forceinline__ void load_kv_tiles(T* k_dst, T* v_dst, int ld, const T* k_src, const T* v_src,
                                              int64_t stride, int valid, int head_dim, int padded) {
  const int vectors = padded / 8;
  uint4 k[kVectorsPerThread], v[kVectorsPerThread];
#pragma unroll
  for (int j = 0; j < kVectorsPerThread; ++j) {
    const int i = threadIdx.x + j * kThreads;
    const int r = i / vectors, c = (i % vectors) * 8;
    const bool ok = i < kTile * vectors && r < valid && c < head_dim;
    k[j] = ok ? *reinterpret_cast<const uint4*>(k_src + r * stride + c) : make_uint4(0, 0, 0, 0);
    v[j] = ok ? *reinterpret_cast<const uint4*>(v_src + r * stride + c) : make_uint4(0, 0, 0, 0);
  }
#pragma unroll
  for (int j = 0; j < kVectorsPerThread; ++j) {
    const int i = threadIdx.x + j * kThreads;
    if (i >= kTile * vectors) break;
    const int r = i / vectors, c = (i % vectors) * 8;
    *reinterpret_cast<uint4*>(k_dst + r * ld + c) = k[j];
    *reinterpret_cast<uint4*>(v_dst + r * ld + c) = v[j];
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) tile_kernel(Params p) {
  using namespace nvcuda;
  chain_start();
  extern __shared__ __align__(16) unsigned char smem[];
  const Layout lay = layout_for(p.head_dim);
  T* sq = reinterpret_cast<T*>(smem + lay.q());
  T* sk = reinterpret_cast<T*>(smem + lay.k());
  T* sv = reinterpret_cast<T*>(smem + lay.v());
  float* ss = reinterpret_cast<float*>(smem + lay.s());
  T* sp = reinterpret_cast<T*>(smem + lay.p());
  float* so = reinterpret_cast<float*>(smem + lay.o());

  const int q_tile = blockIdx.x, kv_head = blockIdx.y, split = blockIdx.z;
  const int hd = p.head_dim, hd_pad = lay.head_dim, group = p.group, n = p.n;
  const int kv_dim = p.kv_heads * hd;
  const int64_t qkv_stride = int64_t(p.kv_heads) * group * hd + 2 * kv_dim;
  const int cache_len = *p.step.cache_len;
  const bool has_mask = *p.step.has_mask != 0;
  const int words = mask_words(n);
  const int row0 = q_tile * kTile;

  // Keys this tile can see: causal tiles stop after their last token; a tree may see all new rows.
  const int last_token = min(n - 1, (row0 + kTile - 1) / group);
  const int key_end = has_mask ? cache_len + n : cache_len + last_token + 1;
  const int slice = ((key_end + p.splits - 1) / p.splits + kTile - 1) / kTile * kTile;
  const int key_begin = split * slice;
  const int key_stop = min(key_end, key_begin + slice);

  // Q tile: row r is token (row0 + r) / group, head kv_head * group + (row0 + r) % group.
  const T* qkv = static_cast<const T*>(p.qkv);
  {
    uint4 q[kVectorsPerThread];
#pragma unroll
    for (int j = 0; j < kVectorsPerThread; ++j) {
      const int i = threadIdx.x + j * kThreads;
      const int r = i / (hd_pad / 8), c = (i % (hd_pad / 8)) * 8;
      const int row = row0 + r;
      q[j] = make_uint4(0, 0, 0, 0);
      if (i < kTile * (hd_pad / 8) && row < p.q_rows && c < hd) {
        const int token = row / group, head = kv_head * group + row % group;
        q[j] = *reinterpret_cast<const uint4*>(qkv + token * qkv_stride + int64_t(head) * hd + c);
      }
    }
#pragma unroll
    for (int j = 0; j < kVectorsPerThread; ++j) {
      const int i = threadIdx.x + j * kThreads;
      if (i >= kTile * (hd_pad / 8)) break;
      const int r = i / (hd_pad / 8), c = (i % (hd_pad / 8)) * 8;
      *reinterpret_cast<uint4*>(sq + r * lay.ld_qkv + c) = q[j];
    }
  }
  for (int i = threadIdx.x; i < kTile * lay.ld_o; i += kThreads) so[i] = 0.0f;

  // Softmax ownership: threads 2r and 2r+1 own row r (both in warp r / 16, the warp that computes
  // that row's S and O), each half of the columns.
  const int my_row = threadIdx.x / 2, my_half = threadIdx.x % 2;
  const int my_token = min(n - 1, (row0 + my_row) / group);
  float m = -FLT_MAX, l = 0.0f;  // running max (of scaled scores) and sum
  bool any = false;              // has this row seen a visible key yet
  const int warp = threadIdx.x / 32;

  const T* k_cache = static_cast<const T*>(p.k_cache) + int64_t(kv_head) * hd;
  const T* v_cache = static_cast<const T*>(p.v_cache) + int64_t(kv_head) * hd;
  for (int key0 = key_begin; key0 < key_stop; key0 += kTile) {
    __syncthreads();  // previous tile's K/V fully used (and Q/O initialised on the first pass)
    load_kv_tiles(sk, sv, lay.ld_qkv, k_cache + int64_t(key0) * kv_dim, v_cache + int64_t(key0) * kv_dim, kv_dim,
                  key_stop - key0, hd, hd_pad);
    __syncthreads();

    // S[16 rows of this warp][64 keys] = Q K^T
    for (int c = 0; c < kTile / 16; ++c) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
      for (int kk = 0; kk < hd_pad; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b;
        wmma::load_matrix_sync(a, sq + warp * 16 * lay.ld_qkv + kk, lay.ld_qkv);
        wmma::load_matrix_sync(b, sk + c * 16 * lay.ld_qkv + kk, lay.ld_qkv);
        wmma::mma_sync(acc, a, b, acc);
      }
      wmma::store_matrix_sync(ss + warp * 16 * Layout::ld_s + c * 16, acc, Layout::ld_s, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax of this row's half tile.
    float* srow = ss + my_row * Layout::ld_s + my_half * 32;
    float tile_max = -FLT_MAX;
    bool tile_any = false;
    for (int c = 0; c < 32; ++c) {
      const int key = key0 + my_half * 32 + c;
      const bool ok = key < key_stop && visible(key, my_token, cache_len, n, has_mask, p.step.mask, words);
      const float s = ok ? srow[c] * p.scale : -FLT_MAX;
      srow[c] = s;
      tile_any |= ok;
      tile_max = fmaxf(tile_max, s);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    tile_any = (__shfl_xor_sync(0xffffffffu, int(tile_any), 1) != 0) || tile_any;
    const float m_new = fmaxf(m, tile_max);
    const float alpha = any ? expf(m - m_new) : 0.0f;
    float sum = 0.0f;
    T* prow = sp + my_row * Layout::ld_p + my_half * 32;
    for (int c = 0; c < 32; ++c) {
      const float e = (tile_any && srow[c] != -FLT_MAX) ? expf(srow[c] - m_new) : 0.0f;
      sum += e;
      prow[c] = from_f32<T>(e);
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    if (tile_any) {
      l = l * alpha + sum;
      m = m_new;
      float* orow = so + my_row * lay.ld_o;
      for (int c = my_half; c < hd_pad; c += 2) orow[c] *= alpha;
      any = true;
    }
    __syncwarp();

    // O[16 rows of this warp] += P V
    for (int c = 0; c < hd_pad / 16; ++c) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, so + warp * 16 * lay.ld_o + c * 16, lay.ld_o, wmma::mem_row_major);
      for (int kk = 0; kk < kTile; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b;
        wmma::load_matrix_sync(a, sp + warp * 16 * Layout::ld_p + kk, Layout::ld_p);
        wmma::load_matrix_sync(b, sv + kk * lay.ld_qkv + c * 16, lay.ld_qkv);
        wmma::mma_sync(acc, a, b, acc);
      }
      wmma::store_matrix_sync(so + warp * 16 * lay.ld_o + c * 16, acc, lay.ld_o, wmma::mem_row_major);
    }
    __syncwarp();
  }
  __syncthreads();  // O stores visible (also covers slices with no keys)

  const int row = row0 + my_row;
  if (row >= p.q_rows) return;
  const float* orow = so + my_row * lay.ld_o;
  if (p.splits == 1) {
    const int token = row / group, head = kv_head * group + row % group;
    T* out = static_cast<T*>(p.out) + int64_t(token) * p.kv_heads * group * hd + int64_t(head) * hd;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int c = my_half; c < hd; c += 2) out[c] = from_f32<T>(orow[c] * inv);
  } else {
    const int64_t slot = (int64_t(split) * p.kv_heads + kv_head) * p.q_rows + row;
    float* po = p.part_o + slot * hd;
    for (int c = my_half; c < hd; c += 2) po[c] = orow[c];
    if (my_half == 0) {
      p.part_ml[slot * 2] = any ? m : -FLT_MAX;
      p.part_ml[slot * 2 + 1] = l;
    }
  }
}

// ---- decode_kernel: few query rows, CUDA cores ----
constexpr int kDecodeMaxRows = 8;
constexpr int kDecodeWarps = 4;
constexpr int kDecodeKeysPerStep = kDecodeWarps * 2;  // each half-warp takes one key row
constexpr int kDecodeUnroll = 4;                        // key rows per half-warp loaded before use
constexpr int kDecodeMaxSplits = 128;
constexpr int kDecodeSliceGrain = kDecodeKeysPerStep * kDecodeUnroll;

// grid (kv_heads, splits). Lane l of a half-warp holds head dims [8 (l % 16), +8); q rows for
// those dims, and the running (max, sum, 8-dim output) of the keys its half-warp has seen.
template <typename T, int ROWS>
__global__ void __launch_bounds__(kDecodeWarps * 32) decode_kernel(Params p) {
  chain_start();
  const int kv_head = blockIdx.x, split = blockIdx.y;
  const int hd = p.head_dim, group = p.group, n = p.n;
  const int kv_dim = p.kv_heads * hd;
  const int64_t qkv_stride = int64_t(p.kv_heads) * group * hd + 2 * kv_dim;
  const int cache_len = *p.step.cache_len;
  const bool has_mask = *p.step.has_mask != 0;
  const int words = mask_words(n);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int half = lane / 16, dim0 = (lane % 16) * 8;
  const bool dims_valid = dim0 < hd;

  const int key_end = cache_len + n;
  const int slice = ((key_end + p.splits - 1) / p.splits + kDecodeSliceGrain - 1) / kDecodeSliceGrain *
                    kDecodeSliceGrain;
  const int key_begin = split * slice;
  const int key_stop = min(key_end, key_begin + slice);

  const T* qkv = static_cast<const T*>(p.qkv);
  float q[ROWS][8];
  int token[ROWS];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    const int row = min(r, p.q_rows - 1);
    token[r] = row / group;
    const int head = kv_head * group + row % group;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (dims_valid) v = *reinterpret_cast<const uint4*>(qkv + token[r] * qkv_stride + int64_t(head) * hd + dim0);
    unpack8<T>(v, q[r]);
#pragma unroll
    for (int i = 0; i < 8; ++i) q[r][i] *= p.scale;
  }
  float m[ROWS], l[ROWS], acc[ROWS][8];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    m[r] = -FLT_MAX;
    l[r] = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[r][i] = 0.0f;
  }

  const T* k_cache = static_cast<const T*>(p.k_cache) + int64_t(kv_head) * hd + dim0;
  const T* v_cache = static_cast<const T*>(p.v_cache) + int64_t(kv_head) * hd + dim0;
  for (int base = key_begin; base < key_stop; base += kDecodeSliceGrain) {
    uint4 kv[kDecodeUnroll], vv[kDecodeUnroll];
    int keys[kDecodeUnroll];
#pragma unroll
    for (int u = 0; u < kDecodeUnroll; ++u) {
      keys[u] = base + u * kDecodeKeysPerStep + warp * 2 + half;
      const bool ok = keys[u] < key_stop && dims_valid;
      kv[u] = ok ? *reinterpret_cast<const uint4*>(k_cache + int64_t(keys[u]) * kv_dim) : make_uint4(0, 0, 0, 0);
      vv[u] = ok ? *reinterpret_cast<const uint4*>(v_cache + int64_t(keys[u]) * kv_dim) : make_uint4(0, 0, 0, 0);
    }
    // All scores of this batch first (independent dot products and shuffles, so they overlap),
    // then one running-max update per row for the whole batch instead of one per key.
    float s[kDecodeUnroll][ROWS];
#pragma unroll
    for (int u = 0; u < kDecodeUnroll; ++u) {
      float kf[8];
      unpack8<T>(kv[u], kf);
#pragma unroll
      for (int r = 0; r < ROWS; ++r) {
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; ++i) dot = fmaf(q[r][i], kf[i], dot);
        s[u][r] = dot;
      }
    }
#pragma unroll
    for (int o = 8; o > 0; o >>= 1)  // sum over the 16 lanes of the half-warp
#pragma unroll
      for (int u = 0; u < kDecodeUnroll; ++u)
#pragma unroll
        for (int r = 0; r < ROWS; ++r) s[u][r] += __shfl_xor_sync(0xffffffffu, s[u][r], o);
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      float batch_max = -FLT_MAX;
#pragma unroll
      for (int u = 0; u < kDecodeUnroll; ++u) {
        const bool ok = keys[u] < key_stop && r < p.q_rows &&
                        visible(keys[u], token[r], cache_len, n, has_mask, p.step.mask, words);
        s[u][r] = ok ? s[u][r] : -FLT_MAX;
        batch_max = fmaxf(batch_max, s[u][r]);
      }
      if (batch_max == -FLT_MAX) continue;  // no key of this batch is visible to this row
      const float m_new = fmaxf(m[r], batch_max);
      const float alpha = expf(m[r] - m_new);  // m = -FLT_MAX at first: alpha = 0
      l[r] *= alpha;
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[r][i] *= alpha;
#pragma unroll
      for (int u = 0; u < kDecodeUnroll; ++u) {
        const float e = s[u][r] == -FLT_MAX ? 0.0f : expf(s[u][r] - m_new);
        float vf[8];
        unpack8<T>(vv[u], vf);
        l[r] += e;
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[r][i] = fmaf(e, vf[i], acc[r][i]);
      }
      m[r] = m_new;
    }
  }

  // Merge the 8 half-warps' states, then write the output (one slice) or the slice's partial.
  __shared__ float s_m[kDecodeWarps * 2][ROWS], s_l[kDecodeWarps * 2][ROWS];
  __shared__ float s_acc[kDecodeWarps * 2][ROWS][kMaxHeadDim];
  const int hw = warp * 2 + half;
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    if (lane % 16 == 0) {
      s_m[hw][r] = m[r];
      s_l[hw][r] = l[r];
    }
    if (dims_valid)
#pragma unroll
      for (int i = 0; i < 8; ++i) s_acc[hw][r][dim0 + i] = acc[r][i];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < p.q_rows * hd; i += blockDim.x) {
    const int r = i / hd, d = i % hd;
    float m_max = -FLT_MAX;
    for (int h = 0; h < kDecodeWarps * 2; ++h)
      if (s_l[h][r] > 0.0f) m_max = fmaxf(m_max, s_m[h][r]);
    float total = 0.0f, out = 0.0f;
    for (int h = 0; h < kDecodeWarps * 2; ++h) {
      if (s_l[h][r] <= 0.0f) continue;
      const float w = expf(s_m[h][r] - m_max);
      total += w * s_l[h][r];
      out += w * s_acc[h][r][d];
    }
    if (p.splits == 1) {
      const int t = r / group, head = kv_head * group + r % group;
      T* dst = static_cast<T*>(p.out) + int64_t(t) * p.kv_heads * group * hd + int64_t(head) * hd;
      dst[d] = from_f32<T>(total > 0.0f ? out / total : 0.0f);
    } else {
      const int64_t slot = (int64_t(split) * p.kv_heads + kv_head) * p.q_rows + r;
      p.part_o[slot * hd + d] = out;
      if (d == 0) {
        p.part_ml[slot * 2] = m_max;
        p.part_ml[slot * 2 + 1] = total;
      }
    }
  }
}

// Merges the slices of one (kv head, query row): the first warp turns the slices' (max, sum) into
// weights (loads in parallel, not one slice after another), then each thread sums one output dim
// over the slices with independent, unrolled loads.
constexpr int kMaxAnySplits = kDecodeMaxSplits > kMaxSplits ? kDecodeMaxSplits : kMaxSplits;

template <typename T>
__global__ void combine_kernel(Params p) {
  chain_start();
  const int row = blockIdx.x, kv_head = blockIdx.y;
  const int hd = p.head_dim;
  const int64_t slot_stride = int64_t(p.kv_heads) * p.q_rows;
  const int64_t slot0 = int64_t(kv_head) * p.q_rows + row;
  __shared__ float weight[kMaxAnySplits];
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

bool use_decode(const AttentionShape& s) { return s.n * (s.heads / s.kv_heads) <= kDecodeMaxRows; }

// Slices: enough blocks to fill the GPU (decode: 4 per SM, each streaming its keys), no more than
// the cache has slice grains.
int splits_for(const AttentionShape& s, int sm_count) {
  if (use_decode(s)) {
    const int wanted = ceil_div(4 * sm_count, s.kv_heads);
    return std::max(1, std::min(std::min(wanted, kDecodeMaxSplits), ceil_div(s.max_rows, kDecodeSliceGrain)));
  }
  // Tiles: no more slices than one wave holds (2 blocks per SM, the shared-memory limit); a
  // prefill chunk that fills the wave by itself gets one slice and no merge pass.
  const int q_tiles = ceil_div(int64_t(s.n) * (s.heads / s.kv_heads), kTile);
  const int blocks = q_tiles * s.kv_heads;
  const int wanted = std::max(1, 2 * sm_count / blocks);
  return std::max(1, std::min(std::min(wanted, kMaxSplits), ceil_div(s.max_rows, kTile)));
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
  dispatch_act(act, [&](auto t) {
    using T = decltype(t);
    if (use_decode(s)) {
      const dim3 grid(unsigned(s.kv_heads), unsigned(p.splits)), block(kDecodeWarps * 32);
      if (p.q_rows <= 1) launch_chained(decode_kernel<T, 1>, grid, block, 0, stream, p);
      else if (p.q_rows <= 2) launch_chained(decode_kernel<T, 2>, grid, block, 0, stream, p);
      else if (p.q_rows <= 4) launch_chained(decode_kernel<T, 4>, grid, block, 0, stream, p);
      else launch_chained(decode_kernel<T, 8>, grid, block, 0, stream, p);
    } else {
      const size_t smem = layout_for(s.head_dim).bytes();
      const dim3 grid(unsigned(ceil_div(p.q_rows, kTile)), unsigned(s.kv_heads), unsigned(p.splits));
      SPECQ_CUDA(cudaFuncSetAttribute(tile_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
      launch_chained(tile_kernel<T>, grid, dim3(kThreads), smem, stream, p);
    }
    if (p.splits > 1)
      launch_chained(combine_kernel<T>, dim3(unsigned(p.q_rows), unsigned(s.kv_heads)), dim3(128), 0, stream, p);
  });
}

}  // namespace specq::cuda
