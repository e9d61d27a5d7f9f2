// Writes a model as a Hugging Face directory: config.json (+ quantization_config when any linear
// is quantized), generation_config.json, model.safetensors, and the tokenizer files found next to
// the source. Quantized linears are stored as AutoGPTQ tensors (PREFIX.qweight/.qzeros/.scales/
// .g_idx) or compressed-tensors int8 tensors (PREFIX.weight i8, PREFIX.weight_scale [N, 1]), dense
// tensors in their own dtype, so transformers, AutoGPTQ, GPTQModel and vLLM load it too.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/weights.h"

namespace specq {

// config.json of a model (architecture, shapes, RoPE, dtype, special tokens).
nlohmann::json hf_config_json(const ModelConfig& config);

struct HfWriteOptions {
  // config.json's "quantization_config" (gptq_config_json, w8a8_config_json, plus the method's list
  // of dense linears); required (non-null) when the model has quantized linears.
  nlohmann::json quantization_config;
  // Directory or file whose tokenizer files are copied ("" = none); a .gguf model's tokenizer
  // metadata is written as tokenizer.json + tokenizer_config.json.
  std::string tokenizer_from;
};

void write_hf_model(const Model& model, const std::string& out_dir, const HfWriteOptions& options);

}  // namespace specq
