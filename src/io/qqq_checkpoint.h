// W4A8-QQQ checkpoints as HandH1998/QQQ exports them (seed-spec 2.5), used in place as
// WeightFormat::QqqInt4: config.json's quantization_config {"quant_method": "qqq", "wbits": 4,
// "group_size": 128 or -1} and, per quantized linear PREFIX, PREFIX.B i32 [K/16, 2N],
// PREFIX.s_channel f32 [1, N] and (grouped) PREFIX.s_group f16 [K/g, N]. docs/FORMATS.md has the
// exact definitions.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "io/gptq_checkpoint.h"
#include "model/weights.h"

namespace specq {

struct QqqConfig {
  int group_size = -1;  // -1: per-channel
  std::string source;   // where the config came from, for messages
};

// Whether a quantization_config object is QQQ's (quant_method "qqq").
bool is_qqq_config(const nlohmann::json& config);

// Parses QQQ's quantization_config; other bit widths or group sizes are Errors naming `source`.
QqqConfig parse_qqq_config(const nlohmann::json& config, const std::string& source);

// config.json's QQQ quantization_config of a Hugging Face directory; nullopt when it has none.
std::optional<QqqConfig> read_qqq_config(const std::string& dir);

// The quantization_config `specq quantize --method qqq` writes (QQQ's own three fields).
nlohmann::json qqq_config_json(int group_size);

// Whether linear PREFIX is stored as QQQ (it has PREFIX.B).
bool has_qqq_linear(const TensorLookup& lookup, const std::string& prefix);

// The QqqInt4 Weight of linear PREFIX with logical shape [n, k]. `config` is the directory's QQQ
// config (null if none: an Error, the group size comes from it); `where` names the checkpoint.
Weight load_qqq_linear(const TensorLookup& lookup, const std::string& prefix, int64_t n, int64_t k,
                       const QqqConfig* config, const std::string& where);

}  // namespace specq
