#include "io/gptq_checkpoint.h"

#include <filesystem>

#include "core/error.h"
#include "io/json_file.h"

namespace specq {
namespace fs = std::filesystem;

GptqConfig parse_gptq_config(const nlohmann::json& config, const std::string& source) {
  SPECQ_CHECK(config.is_object(), "{}: the quantization config is not a JSON object", source);
  GptqConfig c;
  c.source = source;
  const std::string method = json_field<std::string>(config, "quant_method", "gptq", source);
  SPECQ_CHECK(method == "gptq",
              "{}: quantization method '{}' is not supported (specq loads gptq, compressed-tensors int8 W8A8, qqq "
              "and qoq checkpoints)",
              source, method);
  // GPTQModel names the format "format" (older: "checkpoint_format"); transformers "checkpoint_format".
  std::string format = json_field<std::string>(config, "checkpoint_format", "gptq", source);
  format = json_field<std::string>(config, "format", format, source);
  SPECQ_CHECK(format == "gptq" || format == "gptq_v2",
              "{}: checkpoint format '{}' is not supported (expected gptq or gptq_v2)", source, format);
  SPECQ_CHECK(!json_field<bool>(config, "is_marlin_format", false, source),
              "{}: Marlin-format GPTQ checkpoints are not supported; load the original gptq checkpoint", source);
  c.v2 = format == "gptq_v2";
  c.bits = json_field<int>(config, "bits", 0, source);
  SPECQ_CHECK(c.bits == 4, "{}: {}-bit GPTQ is not supported (bits must be 4)", source, c.bits);
  c.group_size = json_field<int>(config, "group_size", -1, source);
  SPECQ_CHECK(c.group_size == -1 || c.group_size > 0, "{}: group_size {} is invalid (expected -1 or > 0)", source,
              c.group_size);
  c.sym = json_field<bool>(config, "sym", true, source);
  c.desc_act = json_field<bool>(config, "desc_act", false, source);
  c.static_groups = json_field<bool>(config, "static_groups", false, source);
  c.lm_head = json_field<bool>(config, "lm_head", false, source);
  if (config.contains("dynamic") && !config["dynamic"].is_null())
    SPECQ_CHECK(config["dynamic"].empty(), "{}: per-module 'dynamic' quantization overrides are not supported",
                source);
  return c;
}

std::optional<nlohmann::json> read_quantization_config(const std::string& dir, std::string& source) {
  std::error_code ec;
  const fs::path config_path = fs::path(dir) / "config.json";
  if (!fs::is_regular_file(config_path, ec)) return std::nullopt;
  nlohmann::json config = read_json_file(config_path.string());
  if (!config.contains("quantization_config")) return std::nullopt;
  source = config_path.string() + " quantization_config";
  return std::move(config["quantization_config"]);
}

bool has_quant_method(const nlohmann::json& config, const char* method) {
  return config.is_object() && config.contains("quant_method") && config["quant_method"] == method;
}

int parse_w4a8_group_size(const nlohmann::json& config, const std::string& source, const char* method,
                          const char* bits_key, int multiple) {
  SPECQ_CHECK(has_quant_method(config, method), "{}: not a {} quantization config", source, method);
  const int bits = json_field<int>(config, bits_key, 0, source);
  SPECQ_CHECK(bits == 4, "{}: {} is {}; {} checkpoints are 4-bit", source, bits_key, bits, method);
  SPECQ_CHECK(config.contains("group_size"), "{}: group_size is missing (128 or -1 for {})", source, method);
  const int group_size = json_field<int>(config, "group_size", -1, source);
  SPECQ_CHECK(group_size == -1 || (group_size > 0 && group_size % multiple == 0),
              "{}: group_size {} is not supported ({}: -1 per-channel, or a multiple of {} such as 128)", source,
              group_size, method, multiple);
  return group_size;
}

Weight checked_linear(WeightFormat format, std::shared_ptr<const QuantizedWeight> q, DType dtype, int64_t n,
                      int64_t k, const std::string& prefix, const std::string& where) {
  Weight w = quantized_weight(format, std::move(q), dtype, n, k);
  try {
    validate_quantized(prefix, w, n, k);
  } catch (const Error& e) {
    fail("'{}': {}", where, e.what());
  }
  return w;
}

std::optional<GptqConfig> read_gptq_config(const std::string& dir) {
  std::error_code ec;
  const fs::path config_path = fs::path(dir) / "config.json";
  if (fs::is_regular_file(config_path, ec)) {
    const nlohmann::json config = read_json_file(config_path.string());
    if (config.contains("quantization_config"))
      return parse_gptq_config(config["quantization_config"], config_path.string() + " quantization_config");
  }
  const fs::path separate = fs::path(dir) / "quantize_config.json";
  if (fs::is_regular_file(separate, ec)) return parse_gptq_config(read_json_file(separate.string()), separate.string());
  return std::nullopt;
}

nlohmann::json gptq_config_json(const GptqConfig& c) {
  return {{"quant_method", "gptq"},
          {"bits", c.bits},
          {"group_size", c.group_size},
          {"sym", c.sym},
          {"desc_act", c.desc_act},
          {"static_groups", c.static_groups},
          {"checkpoint_format", c.v2 ? "gptq_v2" : "gptq"},
          {"true_sequential", false},
          {"damp_percent", 0.01}};
}

bool has_gptq_linear(const TensorLookup& lookup, const std::string& prefix) {
  return lookup(prefix + ".qweight").has_value();
}

Weight load_gptq_linear(const TensorLookup& lookup, const std::string& prefix, int64_t n, int64_t k,
                        const GptqConfig& config) {
  auto q = std::make_shared<QuantizedWeight>();
  q->bits = config.bits;
  q->group_size = config.group_size < 0 ? int(k) : config.group_size;
  q->sym = config.sym;
  q->zero_offset = config.v2 ? 0 : 1;
  auto part = [&](const char* suffix, bool required) {
    std::optional<StoredTensor> t = lookup(prefix + suffix);
    SPECQ_CHECK(t.has_value() || !required, "{}: quantized linear '{}' has no {} tensor", config.source, prefix,
                prefix + suffix);
    return t.value_or(StoredTensor{});
  };
  q->qweight = part(".qweight", true);
  q->qzeros = part(".qzeros", true);
  q->scales = part(".scales", true);
  q->g_idx = part(".g_idx", false);
  SPECQ_CHECK(q->g_idx.present() || !config.desc_act || config.static_groups,
              "{}: '{}' is act-order (desc_act without static_groups) but has no g_idx", config.source, prefix);
  // The config's group size must match the stored scales (a mismatch means a wrong config).
  if (q->scales.shape.size() == 2 && q->group_size > 0 && k % q->group_size == 0)
    SPECQ_CHECK(q->scales.shape[0] == k / q->group_size,
                "{}: '{}.scales' has {} groups, but group_size {} over {} inputs needs {}", config.source, prefix,
                q->scales.shape[0], config.group_size, k, k / q->group_size);
  // g_idx decides; act_order marks a g_idx that is not the plain k / group_size.
  if (q->g_idx.present() && q->g_idx.dtype == DType::I32 && q->g_idx.shape == std::vector<int64_t>{k}) {
    const auto* g = static_cast<const int32_t*>(q->g_idx.data);
    for (int64_t i = 0; i < k && !q->act_order; ++i) q->act_order = g[i] != i / q->group_size;
  }
  Weight w;
  w.format = WeightFormat::GptqInt4;
  w.dtype = q->scales.dtype;
  w.shape = {n, k};
  w.quant = q;
  validate_quantized(prefix, w, n, k);
  return w;
}

}  // namespace specq
