// Hugging Face model directories: config.json (+ generation_config.json) and model.safetensors or a
// sharded model.safetensors.index.json, used in place through memory maps.
#pragma once
#include <string>

#include "model/weights.h"

namespace specq {

// Loads and validates a LlamaForCausalLM / Qwen2ForCausalLM directory. Weights point into the
// mapped files (kept alive by Model::storage); only a tensor stored misaligned for its dtype is copied.
Model load_hf_directory(const std::string& dir);

}  // namespace specq
