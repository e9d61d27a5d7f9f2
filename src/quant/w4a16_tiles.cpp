#include "quant/w4a16_tiles.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"

namespace specq {
namespace {

// One part's GptqInt4 tensors, read in place.
struct Part {
  const QuantizedWeight* q;
  int rows;
  int row0;  // first stacked row
  int nibble(int64_t k, int row) const {
    const auto* words = static_cast<const uint32_t*>(q->qweight.data);
    return int((words[(k / 8) * rows + row] >> (4 * (k % 8))) & 15u);
  }
  int zero(int g, int row) const {
    const auto* words = static_cast<const uint32_t*>(q->qzeros.data);
    return int((words[int64_t(g) * (rows / 8) + row / 8] >> (4 * (row % 8))) & 15u) + q->zero_offset;
  }
  float scale(int g, int row) const { return load_as_float(q->scales.data, q->scales.dtype, size_t(g) * rows + row); }
};

uint16_t to_act_bits(float v, DType act) { return act == DType::F16 ? float_to_half(v) : float_to_bf16(v); }
float from_act_bits(uint16_t v, DType act) { return act == DType::F16 ? half_to_float(v) : bf16_to_float(v); }
int zero_bias(DType act) { return act == DType::F16 ? 1024 : 128; }

}  // namespace

size_t W4A16Tiles::scale_index(int tile, int group, int i) const {
  const size_t words = sym ? 1 : 2;
  return (size_t(tile) * size_t(groups) + size_t(group)) * 16 * words + size_t(i % 8) * 2 * words + size_t(i / 8);
}

int W4A16Tiles::source_row(int tile, int i) const {
  const int row = swiglu ? (i < 8 ? 8 * tile + i : rows / 2 + 8 * tile + i - 8) : 16 * tile + i;
  if (swiglu) return 8 * tile + (i % 8) < rows / 2 ? row : -1;
  return row < rows ? row : -1;
}

W4A16Tiles pack_w4a16_tiles(std::span<const Weight* const> parts, DType act, bool swiglu, const std::string& name) {
  SPECQ_CHECK(!parts.empty(), "W4A16 tiles for '{}': no parts", name);
  SPECQ_CHECK(act == DType::F16 || act == DType::BF16, "W4A16 tiles for '{}': activations must be f16 or bf16", name);
  SPECQ_CHECK(!swiglu || parts.size() == 2, "W4A16 tiles for '{}': SwiGLU packing needs [gate, up]", name);
  W4A16Tiles t;
  t.act = act;
  t.swiglu = swiglu;
  std::vector<Part> ps;
  for (const Weight* w : parts) {
    SPECQ_CHECK(w->format == WeightFormat::GptqInt4 && w->quant != nullptr && w->quant->qweight.present(),
                "W4A16 tiles for '{}': every part must be a loaded GptqInt4 matrix", name);
    const QuantizedWeight& q = *w->quant;
    const Part& first = ps.empty() ? Part{&q, 0, 0} : ps.front();
    SPECQ_CHECK(ps.empty() || (w->cols() == t.k && q.group_size == first.q->group_size && q.sym == first.q->sym),
                "W4A16 tiles for '{}': fused parts differ in inputs, group size or symmetry", name);
    t.k = int(w->cols());
    ps.push_back({&q, int(w->rows()), t.rows});
    t.rows += int(w->rows());
  }
  const QuantizedWeight& q0 = *ps.front().q;
  t.group_size = q0.group_size;
  t.groups = int(t.k / t.group_size);
  t.sym = q0.sym;
  SPECQ_CHECK(t.k % 16 == 0 && t.group_size % 16 == 0,
              "'{}': the CUDA W4A16 kernel needs inputs and group size in multiples of 16 (K = {}, group size {})",
              name, t.k, t.group_size);
  SPECQ_CHECK(!swiglu || ps[0].rows == ps[1].rows, "W4A16 tiles for '{}': gate and up differ in rows", name);

  // Act-order: inputs sorted by group (stable), so that each group is a contiguous run again.
  std::vector<int32_t> order(size_t(t.k));
  std::iota(order.begin(), order.end(), 0);
  if (q0.act_order) {
    const auto* g_idx = static_cast<const int32_t*>(q0.g_idx.data);
    for (const Part& p : ps)
      SPECQ_CHECK(p.q->act_order && std::equal(g_idx, g_idx + t.k, static_cast<const int32_t*>(p.q->g_idx.data)),
                  "'{}': fused parts have different act-order permutations (g_idx); the CUDA kernel needs one", name);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return g_idx[a] < g_idx[b]; });
    for (int i = 0; i < t.k; ++i)
      SPECQ_CHECK(g_idx[order[size_t(i)]] == i / t.group_size,
                  "'{}': act-order groups are not runs of {} inputs; the CUDA W4A16 kernel cannot run it", name,
                  t.group_size);
    t.perm = order;
  } else {
    for (const Part& p : ps) SPECQ_CHECK(!p.q->act_order, "'{}': fused parts mix act-order and plain groups", name);
  }

  t.row_tiles = (swiglu ? (t.rows / 2 + 7) / 8 : (t.rows + 15) / 16);
  t.chunks = (t.k + 63) / 64;
  t.tiles.assign(size_t(t.row_tiles) * t.chunks * 128, 0u);
  const int words_per_scale = t.sym ? 1 : 2;
  t.scales.assign(size_t(t.row_tiles) * t.groups * 16 * words_per_scale, 0);
  auto part_of = [&](int row) -> std::pair<const Part*, int> {
    for (const Part& p : ps)
      if (row < p.row0 + p.rows) return {&p, row - p.row0};
    return {nullptr, 0};
  };
  const int bias = zero_bias(act);
#pragma omp parallel for schedule(dynamic, 4) if (t.row_tiles > 64)
  for (int tile = 0; tile < t.row_tiles; ++tile) {
    for (int i = 0; i < 16; ++i) {
      const int row = t.source_row(tile, i);
      if (row < 0) continue;
      const auto [p, r] = part_of(row);
      for (int g = 0; g < t.groups; ++g) {
        const size_t at = t.scale_index(tile, g, i);
        t.scales[at] = to_act_bits(p->scale(g, r), act);
        if (!t.sym) t.scales[at + 2] = to_act_bits(float(bias + p->zero(g, r)), act);
      }
    }
    for (int c = 0; c < t.chunks; ++c) {
      uint32_t* block = t.tiles.data() + (size_t(tile) * t.chunks + c) * 128;
      for (int lane = 0; lane < 32; ++lane) {
        const int gid = lane / 4, tig = lane % 4;
        const int row0 = t.source_row(tile, gid), row1 = t.source_row(tile, gid + 8);
        const auto [p0, r0] = part_of(std::max(row0, 0));
        const auto [p1, r1] = part_of(std::max(row1, 0));
        for (int j = 0; j < 4; ++j) {
          uint32_t word = 0;
          for (int e = 0; e < 4; ++e) {
            const int i = 64 * c + 16 * tig + 4 * j + e;
            if (i >= t.k) continue;
            const int64_t k = order[size_t(i)];
            const uint32_t q0v = row0 >= 0 ? uint32_t(p0->nibble(k, r0)) : 0u;
            const uint32_t q1v = row1 >= 0 ? uint32_t(p1->nibble(k, r1)) : 0u;
            const int shift = (e % 2) * 16 + (e / 2) * 8;  // e = 0, 1: bits 0 / 16; e = 2, 3: bits 8 / 24
            word |= q0v << shift;
            word |= q1v << (shift + 4);
          }
          block[lane * 4 + j] = word;
        }
      }
    }
  }
  return t;
}

void unpack_w4a16_row(const W4A16Tiles& t, int row, float* out) {
  int tile = -1, pos = -1;
  for (int tt = 0; tt < t.row_tiles && tile < 0; ++tt)
    for (int i = 0; i < 16; ++i)
      if (t.source_row(tt, i) == row) {
        tile = tt;
        pos = i;
        break;
      }
  SPECQ_CHECK(tile >= 0, "unpack_w4a16_row: row {} is not in the tiles", row);
  const int gid = pos % 8, half = pos / 8;
  const int bias = zero_bias(t.act);
  for (int i = 0; i < t.k; ++i) {
    const int c = i / 64, tig = (i % 64) / 16, j = (i % 16) / 4, e = i % 4;
    const uint32_t word = t.tiles[(size_t(tile) * t.chunks + c) * 128 + size_t(gid * 4 + tig) * 4 + j];
    const int shift = (e % 2) * 16 + (e / 2) * 8 + 4 * half;
    const int q = int((word >> shift) & 15u);
    const int g = i / t.group_size;
    const size_t at = t.scale_index(tile, g, pos);
    const float s = from_act_bits(t.scales[at], t.act);
    const float zero = t.sym ? 8.0f : from_act_bits(t.scales[at + 2], t.act) - float(bias);
    const int k = t.perm.empty() ? i : t.perm[size_t(i)];
    out[k] = (float(q) - zero) * s;
  }
}

}  // namespace specq
