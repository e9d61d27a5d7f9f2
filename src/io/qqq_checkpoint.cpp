#include "io/qqq_checkpoint.h"

#include <fmt/ranges.h>

#include "core/error.h"
#include "io/json_file.h"

namespace specq {

bool is_qqq_config(const nlohmann::json& config) { return has_quant_method(config, "qqq"); }

QqqConfig parse_qqq_config(const nlohmann::json& config, const std::string& source) {
  QqqConfig c;
  c.source = source;
  c.group_size = parse_w4a8_group_size(config, source, "qqq", "wbits", 16);
  return c;
}

std::optional<QqqConfig> read_qqq_config(const std::string& dir) {
  std::string source;
  const std::optional<nlohmann::json> config = read_quantization_config(dir, source);
  if (!config || !is_qqq_config(*config)) return std::nullopt;
  return parse_qqq_config(*config, source);
}

nlohmann::json qqq_config_json(int group_size) {
  return {{"quant_method", "qqq"}, {"wbits", 4}, {"group_size", group_size}};
}

bool has_qqq_linear(const TensorLookup& lookup, const std::string& prefix) {
  return lookup(prefix + ".B").has_value();
}

Weight load_qqq_linear(const TensorLookup& lookup, const std::string& prefix, int64_t n, int64_t k,
                       const QqqConfig* config, const std::string& where) {
  SPECQ_CHECK(config != nullptr,
              "'{}': tensor {}.B is a QQQ weight, but config.json has no quantization_config with quant_method "
              "\"qqq\"", where, prefix);
  auto q = std::make_shared<QuantizedWeight>();
  q->bits = 4;
  q->qweight = *lookup(prefix + ".B");
  const std::optional<StoredTensor> s_channel = lookup(prefix + ".s_channel");
  SPECQ_CHECK(s_channel.has_value(), "'{}': QQQ linear '{}' has no tensor {}.s_channel", where, prefix, prefix);
  q->scales = *s_channel;
  // QQQ keeps an empty s_group buffer for per-channel layers (some exports drop it).
  std::optional<StoredTensor> s_group = lookup(prefix + ".s_group");
  if (s_group && s_group->numel() == 0) s_group.reset();
  // A linear with exactly group_size inputs is per-channel in QQQ's export (one group).
  if (config->group_size == -1 || (config->group_size == k && !s_group)) {
    SPECQ_CHECK(!s_group, "'{}': {} is per-channel (group_size -1), but {}.s_group holds [{}]", where, config->source,
                prefix, fmt::join(s_group->shape, ", "));
    q->group_size = int(k);
  } else {
    SPECQ_CHECK(s_group.has_value(), "'{}': {} has group_size {}, but QQQ linear '{}' has no {}.s_group", where,
                config->source, config->group_size, prefix, prefix);
    SPECQ_CHECK(k % config->group_size == 0, "'{}': group_size {} of {} does not divide the {} inputs of '{}'", where,
                config->group_size, config->source, k, prefix);
    q->group_size = config->group_size;
    q->group_scales = *s_group;
  }
  for (const char* stray : {".qweight", ".weight", ".qzeros", ".scales"})
    SPECQ_CHECK(!lookup(prefix + stray), "'{}': QQQ linear '{}' also has a tensor {}{}", where, prefix, prefix, stray);
  return checked_linear(WeightFormat::QqqInt4, q, DType::F16, n, k, prefix, where);
}

}  // namespace specq
