// Hugging Face config.json / generation_config.json -> ModelConfig, for LlamaForCausalLM and
// Qwen2ForCausalLM, in both the transformers 4.x form (rope_theta + rope_scaling, torch_dtype) and
// the 5.x form (rope_parameters holding rope_theta, dtype).
#pragma once
#include <nlohmann/json.hpp>

#include <string>

#include "model/config.h"

namespace specq {

// Parses a config.json object; `source` names it in messages. The result is validated.
ModelConfig parse_hf_config(const nlohmann::json& config, const std::string& source);

// Adds generation_config.json's stop and start tokens: its eos_token_id (int or list) joins the
// config's eos_token_ids, its bos_token_id replaces the config's.
void apply_generation_config(const nlohmann::json& generation, const std::string& source, ModelConfig& config);

// Reads DIR/config.json and, when present, DIR/generation_config.json.
ModelConfig read_hf_config(const std::string& dir);

}  // namespace specq
