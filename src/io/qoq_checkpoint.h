// W4A8-QoQ checkpoints in QServe's layout (DeepCompressor export, seed-spec 2.6), used in place as
// WeightFormat::QoqInt4. Per quantized linear PREFIX: PREFIX.qweight i8 [N, K/2] (QServe packing),
// PREFIX.s1_scales f16 [N], and either PREFIX.s1_szeros f16 [N] (per-channel) or PREFIX.s2_scales
// and PREFIX.s2_zeros i8 [K/g, N] (progressive group quantization). QServe writes no
// quantization_config (the tensors decide, like its W8A8 layout); `specq quantize --method qoq`
// writes {"quant_method": "qoq", "bits": 4, "group_size": g or -1}, which is then checked against
// the tensors. docs/FORMATS.md has the exact definitions.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "io/gptq_checkpoint.h"
#include "model/weights.h"

namespace specq {

struct QoqConfig {
  int group_size = -1;  // -1: per-channel
  std::string source;
};

bool is_qoq_config(const nlohmann::json& config);
QoqConfig parse_qoq_config(const nlohmann::json& config, const std::string& source);
std::optional<QoqConfig> read_qoq_config(const std::string& dir);
nlohmann::json qoq_config_json(int group_size);

// Whether linear PREFIX is stored as QoQ (it has PREFIX.s1_scales).
bool has_qoq_linear(const TensorLookup& lookup, const std::string& prefix);

// The QoqInt4 Weight of linear PREFIX with logical shape [n, k]; `config` may be null (QServe's
// own checkpoints): the tensors decide the variant and group size.
Weight load_qoq_linear(const TensorLookup& lookup, const std::string& prefix, int64_t n, int64_t k,
                       const QoqConfig* config, const std::string& where);

}  // namespace specq
