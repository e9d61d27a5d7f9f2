// Writes a model as a Hugging Face directory: config.json (+ quantization_config when any linear
// is quantized), generation_config.json, model.safetensors, and the tokenizer files found next to
// the source. Quantized linears are stored as AutoGPTQ tensors (PREFIX.qweight/.qzeros/.scales/
// .g_idx), dense tensors in their own dtype, so transformers, AutoGPTQ and GPTQModel load it too.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "io/gptq_checkpoint.h"
#include "model/weights.h"

namespace specq {

// config.json of a model (architecture, shapes, RoPE, dtype, special tokens).
nlohmann::json hf_config_json(const ModelConfig& config);

struct HfWriteOptions {
  std::optional<GptqConfig> quantization;  // required when the model has quantized linears
  // Block linears left dense in a quantized model (names inside a block, e.g. "mlp.down_proj"), so
  // loaders that build the model from the config know not to expect quantized tensors there.
  std::vector<std::string> dense_in_block;
  // Directory or file whose tokenizer files are copied ("" = none); a .gguf model's tokenizer
  // metadata is written as tokenizer.json + tokenizer_config.json.
  std::string tokenizer_from;
};

void write_hf_model(const Model& model, const std::string& out_dir, const HfWriteOptions& options);

}  // namespace specq
