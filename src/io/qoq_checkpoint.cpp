#include "io/qoq_checkpoint.h"

#include <fmt/ranges.h>

#include "core/error.h"
#include "io/json_file.h"

namespace specq {

bool is_qoq_config(const nlohmann::json& config) { return has_quant_method(config, "qoq"); }

QoqConfig parse_qoq_config(const nlohmann::json& config, const std::string& source) {
  QoqConfig c;
  c.source = source;
  c.group_size = parse_w4a8_group_size(config, source, "qoq", "bits", 32);
  return c;
}

std::optional<QoqConfig> read_qoq_config(const std::string& dir) {
  std::string source;
  const std::optional<nlohmann::json> config = read_quantization_config(dir, source);
  if (!config || !is_qoq_config(*config)) return std::nullopt;
  return parse_qoq_config(*config, source);
}

nlohmann::json qoq_config_json(int group_size) {
  return {{"quant_method", "qoq"}, {"bits", 4}, {"group_size", group_size}};
}

bool has_qoq_linear(const TensorLookup& lookup, const std::string& prefix) {
  return lookup(prefix + ".s1_scales").has_value();
}

Weight load_qoq_linear(const TensorLookup& lookup, const std::string& prefix, int64_t n, int64_t k,
                       const QoqConfig* config, const std::string& where) {
  auto q = std::make_shared<QuantizedWeight>();
  q->bits = 4;
  auto part = [&](const char* suffix) {
    const std::optional<StoredTensor> t = lookup(prefix + suffix);
    SPECQ_CHECK(t.has_value(), "'{}': QoQ linear '{}' has no tensor {}{}", where, prefix, prefix, suffix);
    return *t;
  };
  q->qweight = part(".qweight");
  q->scales = part(".s1_scales");
  const bool chn = lookup(prefix + ".s1_szeros").has_value();
  const bool group = lookup(prefix + ".s2_scales").has_value() || lookup(prefix + ".s2_zeros").has_value();
  SPECQ_CHECK(chn != group,
              "'{}': QoQ linear '{}' needs either {}.s1_szeros (per-channel) or {}.s2_scales and .s2_zeros "
              "(per-group), {}", where, prefix, prefix, prefix, chn ? "not both" : "found neither");
  if (chn) {
    q->qzeros = part(".s1_szeros");
    q->group_size = int(k);
  } else {
    q->group_scales = part(".s2_scales");
    q->qzeros = part(".s2_zeros");
    const int64_t groups = q->group_scales.shape.size() == 2 ? q->group_scales.shape[0] : 0;
    SPECQ_CHECK(groups > 0 && k % groups == 0, "'{}': {}.s2_scales has shape [{}]; its groups must divide the {} inputs",
                where, prefix, fmt::join(q->group_scales.shape, ", "), k);
    q->group_size = int(k / groups);
  }
  if (config != nullptr) {
    const int expected = config->group_size < 0 ? int(k) : config->group_size;
    SPECQ_CHECK(q->group_size == expected, "'{}': {} has group_size {}, but the tensors of '{}' are {}", where,
                config->source, config->group_size, prefix,
                chn ? std::string("per-channel") : fmt::format("group size {}", q->group_size));
  }
  return checked_linear(WeightFormat::QoqInt4, q, DType::F16, n, k, prefix, where);
}

}  // namespace specq
