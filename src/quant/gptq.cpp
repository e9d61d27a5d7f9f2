#include "quant/gptq.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

#include "core/dtype.h"
#include "core/error.h"

namespace specq::quant {
namespace {

constexpr int kMaxQ = 15;  // 4-bit codes 0..15

// One quantization grid: value = (code - zero) * scale, scale exactly an fp16 number.
struct Grid {
  float scale = 1.0f;
  int zero = 8;
  int code(float x) const { return std::clamp(int(std::nearbyint(x / scale)) + zero, 0, kMaxQ); }
  float value(int c) const { return float(c - zero) * scale; }
};

// The grid of one row of one group, from its values (AutoGPTQ's min/max rule: the range always
// contains 0; symmetric grids are centred on the fixed zero 8).
Grid find_grid(const float* x, int64_t count, int64_t stride, bool sym) {
  float lo = 0.0f, hi = 0.0f;
  for (int64_t i = 0; i < count; ++i) {
    lo = std::min(lo, x[i * stride]);
    hi = std::max(hi, x[i * stride]);
  }
  Grid g;
  if (sym) {
    const float amax = std::max(-lo, hi);
    g.scale = round_scale_to_half(amax > 0.0f ? 2.0f * amax / kMaxQ : 1.0f);
    g.zero = (kMaxQ + 1) / 2;
  } else {
    if (lo == hi) hi = lo + 1.0f;
    g.scale = round_scale_to_half((hi - lo) / kMaxQ);
    // v1 checkpoints store zero - 1 in a nibble, so zero 0 is not representable: use 1..15.
    g.zero = std::clamp(int(std::nearbyint(-lo / g.scale)), 1, kMaxQ);
  }
  return g;
}

// Effective block size: every group lies inside one block, or starts one (so a group's grid is
// always computed from fully updated columns).
int block_for(int block, int group, int64_t k) {
  if (group >= k || group % block == 0) return block;
  if (block % group == 0) return block;
  return group < block ? group * (block / group) : group;
}

}  // namespace

const char* method_name(Method method) {
  switch (method) {
    case Method::Rtn: return "rtn";
    case Method::Gptq: return "gptq";
    case Method::SmoothQuant: return "smoothquant";
    case Method::Qqq: return "qqq";
    case Method::Qoq: return "qoq";
  }
  return "?";
}

float round_scale_to_half(float s) {
  uint16_t bits = float_to_half(std::min(s, 65504.0f));
  if (half_to_float(bits) < s && bits < 0x7bff) ++bits;
  return std::max(half_to_float(bits), half_to_float(1));
}

void QuantOptions::validate() const {
  SPECQ_CHECK(bits == 4 || bits == 8,
              "--bits {}: only 4-bit (W4A16: rtn, gptq) and 8-bit (W8A8: rtn, smoothquant) quantization is supported",
              bits);
  SPECQ_CHECK(bits == 4 || method != Method::Gptq, "--method gptq writes 4-bit weights (--bits 4)");
  const bool w4a8 = method == Method::Qqq || method == Method::Qoq;
  SPECQ_CHECK(bits == 4 || !w4a8, "--method {} writes 4-bit W4A8 weights (--bits 4)", method_name(method));
  SPECQ_CHECK(!w4a8 || group_size == -1 || group_size % (method == Method::Qqq ? 16 : 32) == 0,
              "--group-size {}: {} groups must be a multiple of {} (128), or -1 for per-channel", group_size,
              method == Method::Qqq ? "QQQ" : "QoQ", method == Method::Qqq ? 16 : 32);
  SPECQ_CHECK(!(w4a8 && act_order), "--act-order is not supported by the W4A8 formats (qqq, qoq)");
  SPECQ_CHECK(bits == 8 || method != Method::SmoothQuant, "--method smoothquant writes 8-bit W8A8 weights (--bits 8)");
  SPECQ_CHECK(bits == 4 || group_size == -1,
              "--group-size {}: W8A8 weights have one scale per output channel; use -1 or leave it out", group_size);
  SPECQ_CHECK(alpha >= 0.0 && alpha <= 1.0, "--alpha {} must be in [0, 1]", alpha);
  SPECQ_CHECK(group_size == -1 || group_size >= 8,
              "--group-size {}: use -1 (per-channel) or a group size of at least 8 (32, 64, 128...)", group_size);
  SPECQ_CHECK(!(act_order && method == Method::Rtn), "--act-order needs --method gptq (RTN has no column order)");
  SPECQ_CHECK(!static_groups || act_order, "--static-groups only applies with --act-order");
  SPECQ_CHECK(damp > 0.0 && damp < 1.0, "dampening {} must be in (0, 1)", damp);
  SPECQ_CHECK(block_size > 0, "block size {} must be positive", block_size);
}

std::string incompatibility(int64_t n, int64_t k, const QuantOptions& options) {
  if (options.bits == 8) {
    if (k > kMaxInt8Inputs)
      return fmt::format("its {} inputs overflow int32 accumulation (at most {})", k, kMaxInt8Inputs);
    return {};
  }
  const int g = options.group_size_for(k);
  if (options.method == Method::Qqq || options.method == Method::Qoq) {
    const bool qqq = options.method == Method::Qqq;
    if (k > kMaxInt8Inputs)
      return fmt::format("its {} inputs overflow int32 accumulation (at most {})", k, kMaxInt8Inputs);
    if (k % (qqq ? 16 : 32) != 0)
      return fmt::format("its {} inputs are not a multiple of {} ({} packing)", k, qqq ? 16 : 32, qqq ? "QQQ" : "QServe");
    if (n % (qqq ? 64 : 32) != 0)
      return fmt::format("its {} outputs are not a multiple of {} ({} packing)", n, qqq ? 64 : 32,
                         qqq ? "QQQ" : "QServe");
    if (k % g != 0) return fmt::format("group size {} does not divide its {} inputs", g, k);
    return {};
  }
  if (k % 8 != 0) return fmt::format("its {} inputs are not a multiple of 8 (4-bit packing along K)", k);
  if (n % 8 != 0) return fmt::format("its {} outputs are not a multiple of 8 (zero-point packing along N)", n);
  if (k % g != 0) return fmt::format("group size {} does not divide its {} inputs", g, k);
  return {};
}

Weight gptq_weight_view(const std::shared_ptr<const GptqMatrix>& m) {
  // The parts point into the matrix, which the QuantizedWeight keeps alive.
  auto q = quantized_parts_owning(m);
  q->bits = 4;
  q->group_size = m->group_size;
  q->sym = m->sym;
  q->zero_offset = 1;
  q->act_order = m->act_order;
  q->qweight = {DType::I32, {m->k / 8, m->n}, m->qweight.data()};
  q->qzeros = {DType::I32, {m->groups(), m->n / 8}, m->qzeros.data()};
  q->scales = {DType::F16, {m->groups(), m->n}, m->scales.data()};
  q->g_idx = {DType::I32, {m->k}, m->g_idx.data()};
  Weight w;
  w.format = WeightFormat::GptqInt4;
  w.quant = q;
  w.dtype = DType::F16;
  w.shape = {m->n, m->k};
  return w;
}

void HessianAccumulator::add(const float* rows, int n) {
  const int64_t k = k_;
#pragma omp parallel for schedule(dynamic, 8) if (k * k * n >= (1 << 16))
  for (int64_t i = 0; i < k; ++i) {
    double* out = sum_.data() + i * k;
    for (int t = 0; t < n; ++t) {
      const float* x = rows + int64_t(t) * k;
      const double xi = x[i];
      if (xi == 0.0) continue;
      for (int64_t j = 0; j <= i; ++j) out[j] += xi * double(x[j]);
    }
  }
  samples_ += n;
}

std::vector<double> HessianAccumulator::hessian() const {
  std::vector<double> h(sum_.size());
  const double f = samples_ > 0 ? 2.0 / double(samples_) : 0.0;
  for (int64_t i = 0; i < k_; ++i)
    for (int64_t j = 0; j <= i; ++j) h[size_t(i * k_ + j)] = h[size_t(j * k_ + i)] = f * sum_[size_t(i * k_ + j)];
  return h;
}

bool inverse_cholesky_upper(std::vector<double>& h, int64_t k) {
  auto at = [&](int64_t i, int64_t j) -> double& { return h[size_t(i * k + j)]; };
  // 1. h = L L^T, L in the lower triangle.
  for (int64_t j = 0; j < k; ++j) {
    double d = at(j, j);
    for (int64_t m = 0; m < j; ++m) d -= at(j, m) * at(j, m);
    if (!(d > 0.0)) return false;
    d = std::sqrt(d);
    at(j, j) = d;
#pragma omp parallel for schedule(static) if (k - j > 256)
    for (int64_t i = j + 1; i < k; ++i) {
      double s = at(i, j);
      for (int64_t m = 0; m < j; ++m) s -= at(i, m) * at(j, m);
      at(i, j) = s / d;
    }
  }
  // 2. L^-1 (lower), column by column.
  std::vector<double> inv(size_t(k * k), 0.0);
#pragma omp parallel for schedule(dynamic, 4) if (k > 128)
  for (int64_t c = 0; c < k; ++c) {
    inv[size_t(c * k + c)] = 1.0 / at(c, c);
    for (int64_t i = c + 1; i < k; ++i) {
      double s = 0.0;
      for (int64_t m = c; m < i; ++m) s -= at(i, m) * inv[size_t(m * k + c)];
      inv[size_t(i * k + c)] = s / at(i, i);
    }
  }
  // 3. h^-1 = L^-T L^-1 (full symmetric).
#pragma omp parallel for schedule(dynamic, 4) if (k > 128)
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j <= i; ++j) {
      double s = 0.0;
      for (int64_t m = i; m < k; ++m) s += inv[size_t(m * k + i)] * inv[size_t(m * k + j)];
      at(i, j) = s;
      at(j, i) = s;
    }
  }
  // 4. h^-1 = U^T U, U upper; rows of U overwrite h, the lower triangle becomes 0.
  for (int64_t i = 0; i < k; ++i) {
    double d = at(i, i);
    for (int64_t m = 0; m < i; ++m) d -= at(m, i) * at(m, i);
    if (!(d > 0.0)) return false;
    d = std::sqrt(d);
    at(i, i) = d;
#pragma omp parallel for schedule(static) if (k - i > 256)
    for (int64_t j = i + 1; j < k; ++j) {
      double s = at(i, j);
      for (int64_t m = 0; m < i; ++m) s -= at(m, i) * at(m, j);
      at(i, j) = s / d;
    }
  }
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < i; ++j) at(i, j) = 0.0;
  return true;
}

namespace {

// The column loop shared by every 4-bit format: RTN, or GPTQ when `u` (the upper Cholesky factor of
// H^-1 in `perm` order) is given. make_grid(row, group, values, count, stride) gives the grid of one
// (group, row): from the original weights, or (act-order by position) from the updated ones.
template <class GridT, class MakeGrid>
void quantize_columns(const float* w, int64_t n, int64_t k, int gs, const std::vector<int64_t>& perm,
                      const std::vector<bool>& dead, const std::vector<double>& u, const std::vector<int32_t>& g_idx,
                      bool groups_by_position, int block, const MakeGrid& make_grid, std::vector<GridT>& grids,
                      std::vector<int32_t>& codes) {
  const int64_t groups = k / gs;
  const bool gptq = !u.empty();
  grids.assign(size_t(groups * n), GridT{});
  codes.assign(size_t(n * k), 0);
#pragma omp parallel
  {
    std::vector<float> row(static_cast<size_t>(k));
    std::vector<double> err(static_cast<size_t>(block));
#pragma omp for schedule(dynamic, 4)
    for (int64_t r = 0; r < n; ++r) {
      const float* src = w + r * k;
      for (int64_t i = 0; i < k; ++i) row[size_t(i)] = dead[size_t(perm[size_t(i)])] ? 0.0f : src[perm[size_t(i)]];
      if (!groups_by_position) {
        // Grids from the original weights, before any error feedback (zeroed dead inputs included).
        std::vector<float> original(static_cast<size_t>(k));
        for (int64_t i = 0; i < k; ++i) original[size_t(perm[size_t(i)])] = row[size_t(i)];
        for (int64_t g = 0; g < groups; ++g) grids[size_t(g * n + r)] = make_grid(r, g, original.data() + g * gs, gs);
      }
      for (int64_t i1 = 0; i1 < k; i1 += block) {
        const int64_t i2 = std::min<int64_t>(i1 + block, k);
        for (int64_t i = i1; i < i2; ++i) {
          if (groups_by_position && i % gs == 0)
            grids[size_t((i / gs) * n + r)] = make_grid(r, i / gs, row.data() + i, gs);
          const int64_t col = perm[size_t(i)];
          const GridT& grid = grids[size_t(int64_t(g_idx[size_t(col)]) * n + r)];
          const int c = grid.code(row[size_t(i)]);
          codes[size_t(r * k + col)] = c;
          if (!gptq) continue;
          // Spread this column's error over the rest of the block now, beyond it lazily.
          const double* ui = u.data() + i * k;
          const double e = (double(row[size_t(i)]) - double(grid.value(c))) / ui[i];
          err[size_t(i - i1)] = e;
          for (int64_t j = i + 1; j < i2; ++j) row[size_t(j)] -= float(e * ui[j]);
        }
        if (!gptq || i2 == k) continue;
        for (int64_t i = i1; i < i2; ++i) {
          const double e = err[size_t(i - i1)];
          const double* ui = u.data() + i * k;
          for (int64_t j = i2; j < k; ++j) row[size_t(j)] -= float(e * ui[j]);
        }
      }
    }
  }
}

// Column order (act-order: descending Hessian diagonal), inputs that never fire, and the upper
// Cholesky factor of the dampened H^-1 in that order (empty for RTN).
struct GptqPlan {
  std::vector<int64_t> perm;
  std::vector<bool> dead;
  std::vector<double> u;
};

GptqPlan plan_columns(int64_t n, int64_t k, const std::vector<double>& hessian, const QuantOptions& options) {
  GptqPlan plan;
  plan.perm.resize(size_t(k));
  std::iota(plan.perm.begin(), plan.perm.end(), 0);
  plan.dead.assign(size_t(k), false);
  if (options.method == Method::Rtn || hessian.empty()) return plan;
  SPECQ_CHECK(int64_t(hessian.size()) == k * k, "GPTQ needs a [{0}, {0}] Hessian, got {1} values", k, hessian.size());
  std::vector<double> h = hessian;
  for (int64_t i = 0; i < k; ++i) {
    if (h[size_t(i * k + i)] == 0.0) {  // an input that is always 0: its weights do not matter
      plan.dead[size_t(i)] = true;
      h[size_t(i * k + i)] = 1.0;
    }
  }
  if (options.act_order)
    std::stable_sort(plan.perm.begin(), plan.perm.end(),
                     [&](int64_t a, int64_t b) { return h[size_t(a * k + a)] > h[size_t(b * k + b)]; });
  double mean_diag = 0.0;
  for (int64_t i = 0; i < k; ++i) mean_diag += h[size_t(i * k + i)];
  mean_diag /= double(k);
  // Dampening keeps H positive definite; if rounding still breaks Cholesky, damp harder.
  double damp = options.damp;
  std::vector<double>& u = plan.u;
  const std::vector<int64_t>& perm = plan.perm;
  for (int attempt = 0;; ++attempt) {
    u.assign(size_t(k * k), 0.0);
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < k; ++j) u[size_t(i * k + j)] = h[size_t(perm[size_t(i)] * k + perm[size_t(j)])];
    for (int64_t i = 0; i < k; ++i) u[size_t(i * k + i)] += damp * mean_diag;
    if (inverse_cholesky_upper(u, k)) break;
    SPECQ_CHECK(attempt < 4, "GPTQ: the Hessian of a [{}, {}] matrix is not positive definite even with "
                "dampening {}", n, k, damp);
    damp *= 10.0;
  }
  return plan;
}

}  // namespace

GroupLayout group_layout(int64_t n, int64_t k, const QuantOptions& options, const char* format) {
  const std::string why = incompatibility(n, k, options);
  SPECQ_CHECK(why.empty(), "cannot quantize a [{}, {}] matrix to {}: {}", n, k, format, why);
  const int gs = options.group_size_for(k);
  return {gs, k / gs, gs < k};
}

int CodeGrid::code(float x) const {
  int best = lo;
  float best_err = std::fabs(x - values[size_t(lo)]);
  for (int c = lo + 1; c <= hi; ++c) {
    const float e = std::fabs(x - values[size_t(c)]);
    if (e < best_err) {
      best_err = e;
      best = c;
    }
  }
  return best;
}

std::vector<int32_t> quantize_codes(const float* w, int64_t n, int64_t k, const std::vector<double>& hessian,
                                    const QuantOptions& options, const GridMaker& make_grid) {
  const int gs = options.group_size_for(k);
  SPECQ_CHECK(!options.act_order, "act-order is not supported for this format");
  SPECQ_CHECK(k % gs == 0, "group size {} does not divide {} inputs", gs, k);
  const GptqPlan plan = plan_columns(n, k, hessian, options);
  std::vector<int32_t> g_idx(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) g_idx[size_t(i)] = int32_t(i / gs);
  std::vector<CodeGrid> grids;
  std::vector<int32_t> codes;
  quantize_columns(w, n, k, gs, plan.perm, plan.dead, plan.u, g_idx, false, block_for(options.block_size, gs, k),
                   [&](int64_t r, int64_t g, const float* x, int64_t count) { return make_grid(r, g, x, count); },
                   grids, codes);
  return codes;
}

GptqMatrix quantize_matrix(const float* w, int64_t n, int64_t k, const std::vector<double>& hessian,
                           const QuantOptions& options) {
  options.validate();
  const std::string why = incompatibility(n, k, options);
  SPECQ_CHECK(why.empty(), "cannot quantize a [{}, {}] matrix: {}", n, k, why);
  const int gs = options.group_size_for(k);
  const int64_t groups = k / gs;
  const bool gptq = options.method == Method::Gptq;
  SPECQ_CHECK(!gptq || !hessian.empty(), "GPTQ needs a [{0}, {0}] Hessian, got none", k);

  GptqMatrix out;
  out.n = n;
  out.k = k;
  out.group_size = gs;
  out.sym = options.sym;

  const GptqPlan plan = plan_columns(n, k, gptq ? hessian : std::vector<double>{}, options);
  // Grids: [groups][n]. Static groups (and RTN, and no act-order) use runs of original columns.
  const bool groups_by_position = gptq && options.act_order && !options.static_groups;
  std::vector<int32_t> g_idx(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i)
    g_idx[size_t(plan.perm[size_t(i)])] = int32_t(groups_by_position ? i / gs : plan.perm[size_t(i)] / gs);
  std::vector<Grid> grids;
  std::vector<int32_t> codes;  // [n][original k]
  quantize_columns(w, n, k, gs, plan.perm, plan.dead, plan.u, g_idx, groups_by_position,
                   block_for(options.block_size, gs, k),
                   [&](int64_t, int64_t, const float* x, int64_t count) { return find_grid(x, count, 1, options.sym); },
                   grids, codes);

  // Pack: qweight [k/8, n] along k; qzeros [groups, n/8] along n, stored zero - 1 (v1).
  out.qweight.assign(size_t((k / 8) * n), 0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c)
      out.qweight[size_t((c / 8) * n + r)] |= int32_t(uint32_t(codes[size_t(r * k + c)]) << (4 * (c % 8)));
  out.qzeros.assign(size_t(groups * (n / 8)), 0);
  out.scales.assign(size_t(groups * n), 0);
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t r = 0; r < n; ++r) {
      const Grid& grid = grids[size_t(g * n + r)];
      out.scales[size_t(g * n + r)] = float_to_half(grid.scale);
      out.qzeros[size_t(g * (n / 8) + r / 8)] |= int32_t(uint32_t(grid.zero - 1) << (4 * (r % 8)));
    }
  }
  out.g_idx = std::move(g_idx);
  for (int64_t i = 0; i < k && !out.act_order; ++i) out.act_order = out.g_idx[size_t(i)] != i / gs;
  return out;
}

}  // namespace specq::quant
