// W8A8 quantization: int8 per-channel round-to-nearest weights (Int8PerChannel), optionally after
// SmoothQuant (Xiao et al., 2022). SmoothQuant divides each input channel j of a linear's input by
//   s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)
// and multiplies column j of the weights by s_j: the product is unchanged, but activation
// outliers move into the weights, which per-channel int8 absorbs better than per-token int8 does.
// Every division is folded into an earlier tensor, exactly, so nothing runs at inference time:
//   q/k/v inputs      -> input_layernorm weight        (shared s over q, k, v)
//   gate/up inputs    -> post_attention_layernorm weight (shared s over gate, up)
//   o_proj inputs     -> v_proj output rows (+ bias)   (attention is linear in v; with GQA the heads
//                                                       sharing a KV head share s, so it stays exact)
//   down_proj inputs  -> up_proj output rows           (silu(gate) * up is linear in up)
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "model/runner.h"
#include "model/weights.h"

namespace specq::quant {

// max |x_j| per input channel of the four block linears of one layer, indexed by LinearSlot.
using LayerRanges = std::array<std::vector<float>, 4>;

// Folds an observed batch of input rows into the ranges of its layer and slot.
void observe_ranges(std::vector<LayerRanges>& ranges, const LinearInput& in);

// SmoothQuant factors: s_j as above; 1 where a channel's activation or weight maximum is 0 (the
// channel cannot matter), and at least 1e-5 so no weight column is wiped out.
std::vector<float> smoothing_factors(const std::vector<float>& act_max, const std::vector<float>& weight_max,
                                     double alpha);

// Applies SmoothQuant to every layer of a dense model in place (the weights it changes become f32
// copies owned by the model); `ranges` are of the unchanged model's calibration forwards. The
// model computes the same function afterwards, up to fp32 rounding.
void smooth_model(Model& model, const std::vector<LayerRanges>& ranges, double alpha);

// A matrix quantized to int8 per output channel: W[n, k] ~= q[n, k] * scales[n], with the
// activation rule of cpu::quantize_row_int8 (scale = max|row| / 127, codes in [-127, 127]).
struct Int8Matrix {
  int64_t n = 0, k = 0;
  std::vector<int8_t> q;      // [n, k]
  std::vector<float> scales;  // [n] (written as [n, 1])
};
Int8Matrix quantize_int8(const float* w, int64_t n, int64_t k);

// A Weight (Int8PerChannel, f32 scales of shape [n, 1]) that reads `m` in place and keeps it alive.
Weight int8_weight_view(const std::shared_ptr<const Int8Matrix>& m);

}  // namespace specq::quant
