// W8A8 checkpoints (int8 weights, one scale per output channel, activations quantized per token at
// run time), used in place as WeightFormat::Int8PerChannel. Two layouts per linear PREFIX:
//  - llm-compressor / compressed-tensors ("int-quantized" or "naive-quantized"): PREFIX.weight i8
//    [N, K] and PREFIX.weight_scale [N, 1] (f16, bf16 or f32), described by config.json's
//    quantization_config with quant_method "compressed-tensors";
//  - the seed's / QServe layout (DeepCompressor SmoothQuant export): PREFIX.weight i8 [N, K] and
//    PREFIX.dequant_scale f16 [N]; nothing in config.json marks it, the tensors do.
// docs/FORMATS.md has the exact definitions.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "io/gptq_checkpoint.h"
#include "model/weights.h"

namespace specq {

// A compressed-tensors quantization config that specq can run: every config group is int8
// symmetric per-channel weights with dynamic per-token symmetric int8 input activations.
struct W8A8Config {
  std::vector<std::string> ignore;  // modules the config leaves unquantized (informational)
  std::string source;               // where the config came from, for messages
};

// Whether a quantization_config object is a compressed-tensors one.
bool is_compressed_tensors_config(const nlohmann::json& config);

// Parses a compressed-tensors quantization_config; anything but int8 W8A8 with dynamic per-token
// activations (other bit widths or types, asymmetric or group weights, static activations,
// packed/float/sparse formats, KV-cache schemes) is an Error naming the field and `source`.
W8A8Config parse_compressed_tensors_config(const nlohmann::json& config, const std::string& source);

// config.json's compressed-tensors quantization_config of a Hugging Face directory; nullopt when it
// has none (or another method, which read_gptq_config judges).
std::optional<W8A8Config> read_w8a8_config(const std::string& dir);

// The quantization_config of a checkpoint written as compressed-tensors int8 W8A8; `ignore` lists
// the linears left dense (e.g. "lm_head").
nlohmann::json w8a8_config_json(const std::vector<std::string>& ignore);

// Whether linear PREFIX is stored as int8 (an i8 PREFIX.weight, or a .weight_scale / .dequant_scale).
bool has_int8_linear(const TensorLookup& lookup, const std::string& prefix);

// The Int8PerChannel Weight of linear PREFIX with logical shape [n, k], from either layout. `config`
// is the directory's compressed-tensors config (null if none); `where` names the checkpoint in
// messages. Shapes, dtypes, zero points and scales are checked (Error naming the tensor).
Weight load_int8_linear(const TensorLookup& lookup, const std::string& prefix, int64_t n, int64_t k,
                        const W8A8Config* config, const std::string& where);

}  // namespace specq
