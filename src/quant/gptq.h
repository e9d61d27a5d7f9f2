// Post-training 4-bit weight quantization into the AutoGPTQ layout: round-to-nearest (RTN) and
// GPTQ (Frantar et al., 2022: quantize one input column at a time and spread each column's error
// over the columns not yet quantized, weighted by the inverse Hessian of the layer's inputs).
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/weights.h"

namespace specq::quant {

// Rtn and Gptq at 4 bits write GptqInt4 (W4A16); Rtn and SmoothQuant at 8 bits write
// Int8PerChannel (W8A8, quant/smoothquant.h); Qqq and Qoq write the W4A8 formats QqqInt4 and
// QoqInt4 (smoothing + GPTQ onto the format's own grids, quant/w4a8_quant.h).
enum class Method { Rtn, Gptq, SmoothQuant, Qqq, Qoq };
const char* method_name(Method method);  // "rtn", "gptq", "smoothquant", "qqq", "qoq"

struct QuantOptions {
  Method method = Method::Gptq;
  int bits = 4;                // 4: GptqInt4 (or W4A8 for Qqq/Qoq); 8: Int8PerChannel (W8A8, per-channel)
  int group_size = 128;        // inputs per group; -1 = one group per output row (per-channel)
  bool sym = true;             // symmetric grid around the fixed zero 8
  bool act_order = false;      // GPTQ: quantize columns by descending Hessian diagonal (desc_act)
  bool static_groups = false;  // with act_order: groups are fixed runs of original columns
  double damp = 0.01;          // GPTQ: added to the Hessian diagonal, as a fraction of its mean
  int block_size = 128;        // GPTQ: columns per lazy update block
  double alpha = 0.5;          // SmoothQuant, QQQ, QoQ: migration strength (0: none to the weights, 1: all)
  void validate() const;       // Error on unsupported combinations
  int group_size_for(int64_t k) const { return group_size < 0 ? int(k) : group_size; }
};

// Why a [n, k] matrix cannot be stored in the format with these options ("" when it can).
std::string incompatibility(int64_t n, int64_t k, const QuantOptions& options);

// A matrix quantized into AutoGPTQ's checkpoint_format "gptq" (v1: zero points stored minus one).
struct GptqMatrix {
  int64_t n = 0, k = 0;
  int group_size = 0;
  bool sym = true;
  bool act_order = false;
  std::vector<int32_t> qweight;  // [k / 8, n]
  std::vector<int32_t> qzeros;   // [k / group_size, n / 8]
  std::vector<uint16_t> scales;  // fp16 [k / group_size, n]
  std::vector<int32_t> g_idx;    // [k]
  int64_t groups() const { return k / group_size; }
};

// A Weight that reads `m` in place (GptqInt4, zero offset 1); `m` must outlive it.
Weight gptq_weight_view(const std::shared_ptr<const GptqMatrix>& m);

// Sums 2 x x^T over the input rows x of a linear layer (divided by the row count on read-out).
class HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t k) : k_(k), sum_(size_t(k * k), 0.0) {}
  void add(const float* rows, int n);
  int64_t samples() const { return samples_; }
  int64_t dim() const { return k_; }
  std::vector<double> hessian() const;  // [k, k], 2/samples * X^T X

 private:
  int64_t k_;
  int64_t samples_ = 0;
  std::vector<double> sum_;
};

// w: fp32 [n, k] row-major. hessian: [k, k] (GPTQ only; ignored by RTN).
GptqMatrix quantize_matrix(const float* w, int64_t n, int64_t k, const std::vector<double>& hessian,
                           const QuantOptions& options);

// The smallest fp16 number >= s (so a grid still spans its range), at least the smallest positive
// fp16 (tiny weights) and at most the largest finite one.
float round_scale_to_half(float s);

// The values of the 4-bit codes lo..hi of one (group, row) of a matrix; a weight takes the code
// of the nearest value (the first of equals).
struct CodeGrid {
  std::array<float, 16> values{};
  int lo = 0, hi = 15;
  int code(float x) const;
  float value(int c) const { return values[size_t(c)]; }
};
// The grid of (row, group) of a matrix, from that group's `count` original weights.
using GridMaker = std::function<CodeGrid(int64_t row, int64_t group, const float* values, int64_t count)>;

// GPTQ (a [k, k] `hessian`, options.method not Rtn) or RTN (empty hessian) of w [n, k] onto the
// grids `make_grid` gives, groups of options.group_size_for(k) consecutive inputs, no act-order:
// the same column loop as quantize_matrix. Returns the codes, [n][k].
std::vector<int32_t> quantize_codes(const float* w, int64_t n, int64_t k, const std::vector<double>& hessian,
                                    const QuantOptions& options, const GridMaker& make_grid);

// How a quantizer of `format` (for messages) groups an [n, k] matrix: inputs per group, groups,
// and whether there is more than one; an Error when the format cannot hold the matrix.
struct GroupLayout {
  int group_size;
  int64_t groups;
  bool grouped;
};
GroupLayout group_layout(int64_t n, int64_t k, const QuantOptions& options, const char* format);

// Inverse of the symmetric positive definite h ([k, k]), then its upper Cholesky factor U
// (inverse = U^T U). Returns false when h is not positive definite.
bool inverse_cholesky_upper(std::vector<double>& h, int64_t k);

}  // namespace specq::quant
