#include "io/marlin_checkpoint.h"

#include <fmt/ranges.h>

#include <array>
#include <memory>
#include <numeric>

#include "core/error.h"
#include "model/marlin_layout.h"
#include "quant/gptq.h"

namespace specq {

bool has_marlin_linear(const TensorLookup& lookup, const std::string& prefix, std::span<const int64_t> parts,
                       int64_t k) {
  const std::optional<StoredTensor> t = lookup(prefix + ".qweight");
  const int64_t n = std::accumulate(parts.begin(), parts.end(), int64_t(0));
  return t.has_value() && t->shape == std::vector<int64_t>{k / 16, 2 * n} && k % 16 == 0;
}

std::vector<Weight> load_marlin_linear(const TensorLookup& lookup, const std::string& prefix,
                                       std::span<const int64_t> parts, int64_t k, const GptqConfig& config,
                                       const std::string& where) {
  const int64_t n = std::accumulate(parts.begin(), parts.end(), int64_t(0));
  SPECQ_CHECK(config.bits == 4 && config.sym,
              "'{}': {} is a Marlin W4A16 matrix; those are 4-bit symmetric, but {} says bits {} sym {}", where, prefix,
              config.source, config.bits, config.sym);
  // SpecMQuant's converter drops g_idx: only act-order with static groups (g_idx = k / g) survives it.
  SPECQ_CHECK(!config.desc_act || config.static_groups,
              "'{}': {} says desc_act without static_groups, but Marlin checkpoints converted by SpecMQuant have no "
              "g_idx, so their act-order permutation is lost and the weights are wrong; convert the original GPTQ "
              "checkpoint instead (specq loads it directly)",
              where, config.source);
  const int64_t group = config.group_size < 0 ? k : config.group_size;
  SPECQ_CHECK(k % 16 == 0 && n % 64 == 0 && k % group == 0 && group % 8 == 0,
              "'{}': {} [{} outputs, {} inputs] with group size {}: Marlin needs inputs a multiple of 16, outputs of "
              "64 and a group size dividing the inputs",
              where, prefix, n, k, group);
  for (const int64_t part : parts)
    SPECQ_CHECK(part > 0 && part % 8 == 0, "'{}': {} splits into parts of {} outputs (multiples of 8 expected)", where,
                prefix, fmt::join(parts, ", "));
  const std::optional<StoredTensor> qweight = lookup(prefix + ".qweight"), scales = lookup(prefix + ".scales");
  SPECQ_CHECK(qweight && qweight->dtype == DType::I32 && qweight->shape == (std::vector<int64_t>{k / 16, 2 * n}),
              "'{}': {}.qweight must be i32 [{}, {}] (Marlin tiles)", where, prefix, k / 16, 2 * n);
  const int64_t groups = k / group;
  SPECQ_CHECK(scales && scales->dtype == DType::F16 && scales->shape == (std::vector<int64_t>{groups, n}),
              "'{}': {}.scales must be f16 [{}, {}] (group size {})", where, prefix, groups, n, group);
  SPECQ_CHECK(!lookup(prefix + ".qzeros") && !lookup(prefix + ".g_idx"),
              "'{}': {} has qzeros or g_idx, which Marlin checkpoints do not carry", where, prefix);
  const auto* b = static_cast<const uint32_t*>(qweight->data);
  const auto* s = static_cast<const uint16_t*>(scales->data);
  const bool per_channel = groups == 1 && config.group_size < 0;

  std::vector<Weight> out;
  int64_t first = 0;
  for (const int64_t rows : parts) {
    auto m = std::make_shared<quant::GptqMatrix>();
    m->n = rows;
    m->k = k;
    m->group_size = int(group);
    m->sym = true;
    m->qweight.assign(size_t(k / 8 * rows), 0);
    m->qzeros.assign(size_t(groups * rows / 8), int32_t(0x77777777));  // zero 8, stored minus one (v1)
    m->scales.resize(size_t(groups * rows));
    m->g_idx.resize(size_t(k));
    for (int64_t i = 0; i < k; ++i) m->g_idx[size_t(i)] = int32_t(i / group);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t col = first + r;
      // Output col's 16 inputs of a B row sit at the same places in every row of B.
      std::array<marlin::NibblePos, 16> at{};
      for (int64_t i = 0; i < 16; ++i) at[size_t(i)] = marlin::nibble_position(col, i, n, marlin::Layout::Fp16);
      for (int64_t i = 0; i < k; ++i) {
        const marlin::NibblePos& p = at[size_t(i % 16)];
        const uint32_t code = (b[p.word + (i / 16) * 2 * n] >> p.shift) & 15u;
        m->qweight[size_t((i / 8) * rows + r)] |= int32_t(code << (4 * (i % 8)));
      }
      const int64_t scale_col = per_channel ? marlin::channel_scale_index(col) : marlin::group_scale_column(col);
      for (int64_t g = 0; g < groups; ++g) m->scales[size_t(g * rows + r)] = s[g * n + scale_col];
    }
    Weight w = quant::gptq_weight_view(m);
    out.push_back(checked_linear(w.format, w.quant, w.dtype, rows, k, prefix, where));
    first += rows;
  }
  return out;
}

}  // namespace specq
