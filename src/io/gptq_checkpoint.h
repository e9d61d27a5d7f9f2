// GPTQ checkpoints as AutoGPTQ, GPTQModel and transformers write them, used in place: the
// quantization config (config.json's "quantization_config", or quantize_config.json) and, per
// quantized linear PREFIX, the tensors PREFIX.qweight / .qzeros / .scales / .g_idx.
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "model/weights.h"

namespace specq {

struct GptqConfig {
  int bits = 4;
  int group_size = -1;         // -1: per-channel
  bool sym = true;
  bool desc_act = false;
  bool static_groups = false;
  bool v2 = false;             // checkpoint_format "gptq_v2": zero points stored as is
  bool lm_head = false;        // GPTQModel may quantize lm_head too
  std::string source;          // where the config came from, for messages
};

// Parses a quantization config object; unknown methods, formats and unsupported settings are
// Errors naming `source`.
GptqConfig parse_gptq_config(const nlohmann::json& config, const std::string& source);

// config.json's "quantization_config" object of a Hugging Face directory (nullopt when config.json
// or the entry is absent); `source` is set to "PATH quantization_config" for messages.
std::optional<nlohmann::json> read_quantization_config(const std::string& dir, std::string& source);

// Whether a quantization config names `method` as its quant_method.
bool has_quant_method(const nlohmann::json& config, const char* method);

// The group size of a 4-bit W4A8 config (qqq, qoq): config[bits_key] must be 4 and group_size -1
// or a positive multiple of `multiple`; Errors name `source`.
int parse_w4a8_group_size(const nlohmann::json& config, const std::string& source, const char* method,
                          const char* bits_key, int multiple);

// The quantization config of a Hugging Face directory: config.json's "quantization_config",
// else quantize_config.json; nullopt when the model is not quantized.
std::optional<GptqConfig> read_gptq_config(const std::string& dir);

// The quantization config a checkpoint written with these settings carries (for config.json).
nlohmann::json gptq_config_json(const GptqConfig& config);

// Looks a tensor up by name; nullopt when absent.
using TensorLookup = std::function<std::optional<StoredTensor>(const std::string& name)>;

// Whether the checkpoint stores linear PREFIX quantized (it has PREFIX.qweight).
bool has_gptq_linear(const TensorLookup& lookup, const std::string& prefix);

// quantized_weight(format, q, dtype, n, k) checked by validate_quantized; an Error names `where`.
Weight checked_linear(WeightFormat format, std::shared_ptr<const QuantizedWeight> q, DType dtype, int64_t n,
                      int64_t k, const std::string& prefix, const std::string& where);

// The quantized Weight of linear PREFIX with logical shape [n, k]; shapes, dtypes, zero points and
// g_idx are checked (Error naming the tensor). The parts point at the looked-up bytes.
Weight load_gptq_linear(const TensorLookup& lookup, const std::string& prefix, int64_t n, int64_t k,
                        const GptqConfig& config);

}  // namespace specq
