// Quantizes a loaded model's block linears in place, to GPTQ 4-bit (W4A16) or int8 W8A8 (RTN or
// SmoothQuant, quant/smoothquant.h), and measures perplexity.
// GPTQ is sequential over layers: the Hessians of layer l come from running the calibration
// tokens through the model whose layers 0..l-1 are already quantized, so each layer corrects the
// error its predecessors made. SmoothQuant needs one calibration pass of the unquantized model.
#pragma once
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "io/hf_writer.h"
#include "model/runner.h"
#include "model/weights.h"
#include "quant/gptq.h"

namespace specq::quant {

// One linear of a transformer block, by its Hugging Face name (without ".weight").
struct BlockLinear {
  std::string name;  // model.layers.L.self_attn.q_proj ...
  Weight* weight;
  LinearSlot slot;
};
std::vector<BlockLinear> block_linears(Model& model, int layer);

struct QuantizeSummary {
  std::vector<std::string> quantized;                         // HF names
  std::vector<std::pair<std::string, std::string>> kept_dense;  // name, why
  int64_t calibration_tokens = 0;
  double seconds = 0.0;
};

// done/total linears, and the one being worked on.
using ProgressFn = std::function<void(int done, int total, const std::string& what)>;

// Replaces every compatible block linear of `model` with its quantized form (the model keeps
// ownership); incompatible ones (4-bit: dimensions not multiples of 8, groups not dividing K) stay
// dense and are listed. GPTQ and SmoothQuant need calibration sequences (token ids, each starting a
// new context); SmoothQuant also rewrites the norms, v_proj and up_proj it folds its factors into.
QuantizeSummary quantize_model(Model& model, const QuantOptions& options,
                               const std::vector<std::vector<int32_t>>& calibration, int threads,
                               const ProgressFn& progress);

// How write_hf_model describes a model quantized with `options`: its quantization_config (v1
// "gptq", or compressed-tensors int8 W8A8) naming the block linears that stayed dense.
HfWriteOptions checkpoint_write_options(const QuantOptions& options, const QuantizeSummary& summary);

// exp(mean negative log-likelihood) of ids[1..] given the preceding ids, one context from
// position 0; ids must fit the runner's context.
double perplexity(Runner& runner, std::span<const int32_t> ids);

}  // namespace specq::quant
