#include "io/w8a8_checkpoint.h"

#include <fmt/ranges.h>

#include <filesystem>

#include "core/error.h"
#include "io/json_file.h"

namespace specq {
namespace fs = std::filesystem;

namespace {

bool is_int_quantized_format(const std::string& format) {
  return format == "int-quantized" || format == "naive-quantized";
}

// One QuantizationArgs object (weights or input_activations) of config group `group`; `what`
// names it in messages ("config_groups.group_0.weights").
void check_args(const nlohmann::json& args, const std::string& what, bool activations, const std::string& source) {
  SPECQ_CHECK(args.is_object(), "{}: {} is not an object", source, what);
  const std::string where = source + " " + what;
  const int bits = json_field<int>(args, "num_bits", 8, where);
  SPECQ_CHECK(bits == 8, "{}: {}.num_bits is {}; specq runs 8-bit integer W8A8 only", source, what, bits);
  const std::string type = json_field<std::string>(args, "type", "int", where);
  SPECQ_CHECK(type == "int", "{}: {}.type is '{}'; specq runs integer (\"int\") W8A8 only", source, what, type);
  SPECQ_CHECK(json_field<bool>(args, "symmetric", true, where),
              "{}: {}.symmetric is false; asymmetric int8 is not supported", source, what);
  const std::string strategy = json_field<std::string>(args, "strategy", "", where);
  const std::string expected = activations ? "token" : "channel";
  SPECQ_CHECK(strategy == expected, "{}: {}.strategy is '{}', expected '{}' ({})", source, what, strategy, expected,
              activations ? "dynamic per-token activation scales" : "one scale per output channel");
  // compressed-tensors' "dynamic" is a bool or "local"; only true means scales made per forward.
  const bool dynamic = args.contains("dynamic") && args["dynamic"].is_boolean() && args["dynamic"].get<bool>();
  if (activations) {
    SPECQ_CHECK(dynamic, "{}: {}.dynamic is {}; static activation scales are not supported (dynamic per-token only)",
                source, what, args.contains("dynamic") ? args["dynamic"].dump() : "missing");
  } else {
    SPECQ_CHECK(!dynamic, "{}: {}.dynamic is true; weights need stored scales", source, what);
  }
  SPECQ_CHECK(!args.contains("group_size") || args["group_size"].is_null(),
              "{}: {}.group_size is {}; only per-channel int8 (no groups) is supported", source, what,
              args.contains("group_size") ? args["group_size"].dump() : "");
  SPECQ_CHECK(!args.contains("actorder") || args["actorder"].is_null() || args["actorder"] == false,
              "{}: {}.actorder is {}; act-order is not supported for int8 W8A8", source, what, args["actorder"].dump());
}

}  // namespace

bool is_compressed_tensors_config(const nlohmann::json& config) {
  return config.is_object() && config.contains("quant_method") && config["quant_method"] == "compressed-tensors";
}

W8A8Config parse_compressed_tensors_config(const nlohmann::json& config, const std::string& source) {
  SPECQ_CHECK(is_compressed_tensors_config(config), "{}: not a compressed-tensors quantization config", source);
  W8A8Config c;
  c.source = source;
  const std::string format = json_field<std::string>(config, "format", "", source);
  SPECQ_CHECK(is_int_quantized_format(format),
              "{}: format '{}' is not supported (compressed-tensors int8 W8A8 is \"int-quantized\" or "
              "\"naive-quantized\")", source, format);
  SPECQ_CHECK(!config.contains("kv_cache_scheme") || config["kv_cache_scheme"].is_null(),
              "{}: kv_cache_scheme is set; quantized KV caches are not supported", source);
  if (config.contains("sparsity_config") && config["sparsity_config"].is_object()) {
    const std::string sparsity = json_field<std::string>(config["sparsity_config"], "format", "dense", source);
    SPECQ_CHECK(sparsity == "dense", "{}: sparsity_config.format is '{}'; sparse checkpoints are not supported",
                source, sparsity);
  }
  SPECQ_CHECK(!config.contains("transform_config") || config["transform_config"].is_null(),
              "{}: transform_config is set; rotated (transformed) checkpoints are not supported", source);
  SPECQ_CHECK(config.contains("config_groups") && config["config_groups"].is_object() &&
                  !config["config_groups"].empty(),
              "{}: config_groups is missing or empty", source);
  for (const auto& [name, group] : config["config_groups"].items()) {
    const std::string what = "config_groups." + name;
    SPECQ_CHECK(group.is_object(), "{}: {} is not an object", source, what);
    const std::string group_format = json_field<std::string>(group, "format", format, source + " " + what);
    SPECQ_CHECK(is_int_quantized_format(group_format), "{}: {}.format is '{}' (expected int-quantized)", source, what,
                group_format);
    SPECQ_CHECK(group.contains("weights") && !group["weights"].is_null(), "{}: {}.weights is missing", source, what);
    check_args(group["weights"], what + ".weights", false, source);
    SPECQ_CHECK(group.contains("input_activations") && !group["input_activations"].is_null(),
                "{}: {}.input_activations is missing: weight-only int8 (W8A16) is not supported", source, what);
    check_args(group["input_activations"], what + ".input_activations", true, source);
    SPECQ_CHECK(!group.contains("output_activations") || group["output_activations"].is_null(),
                "{}: {}.output_activations is set; output quantization is not supported", source, what);
  }
  if (config.contains("ignore") && !config["ignore"].is_null()) {
    SPECQ_CHECK(config["ignore"].is_array(), "{}: ignore is not a list", source);
    for (const auto& entry : config["ignore"]) {
      SPECQ_CHECK(entry.is_string(), "{}: ignore holds {}, not a module name", source, entry.dump());
      c.ignore.push_back(entry.get<std::string>());
    }
  }
  return c;
}

std::optional<W8A8Config> read_w8a8_config(const std::string& dir) {
  std::error_code ec;
  const fs::path path = fs::path(dir) / "config.json";
  if (!fs::is_regular_file(path, ec)) return std::nullopt;
  const nlohmann::json config = read_json_file(path.string());
  if (!config.contains("quantization_config") || !is_compressed_tensors_config(config["quantization_config"]))
    return std::nullopt;
  return parse_compressed_tensors_config(config["quantization_config"], path.string() + " quantization_config");
}

nlohmann::json w8a8_config_json(const std::vector<std::string>& ignore) {
  auto args = [](const char* strategy, bool dynamic) {
    return nlohmann::json{{"num_bits", 8},
                          {"type", "int"},
                          {"symmetric", true},
                          {"strategy", strategy},
                          {"dynamic", dynamic},
                          {"group_size", nullptr},
                          {"actorder", nullptr},
                          {"block_structure", nullptr},
                          {"observer", dynamic ? nlohmann::json(nullptr) : nlohmann::json("minmax")},
                          {"observer_kwargs", nlohmann::json::object()}};
  };
  return {{"quant_method", "compressed-tensors"},
          {"format", "int-quantized"},
          {"quantization_status", "compressed"},
          {"config_groups",
           {{"group_0",
             {{"targets", {"Linear"}},
              {"weights", args("channel", false)},
              {"input_activations", args("token", true)},
              {"output_activations", nullptr}}}}},
          {"ignore", ignore},
          {"kv_cache_scheme", nullptr}};
}

bool has_int8_linear(const TensorLookup& lookup, const std::string& prefix) {
  if (lookup(prefix + ".dequant_scale") || lookup(prefix + ".weight_scale")) return true;
  const std::optional<StoredTensor> weight = lookup(prefix + ".weight");
  return weight && weight->dtype == DType::I8;
}

Weight load_int8_linear(const TensorLookup& lookup, const std::string& prefix, int64_t n, int64_t k,
                        const W8A8Config* config, const std::string& where) {
  auto q = std::make_shared<QuantizedWeight>();
  q->bits = 8;
  q->group_size = int(k);
  q->sym = true;
  const std::optional<StoredTensor> weight = lookup(prefix + ".weight");
  SPECQ_CHECK(weight.has_value(), "'{}': int8 linear '{}' has no tensor {}.weight", where, prefix, prefix);
  q->qweight = *weight;
  const std::optional<StoredTensor> qserve = lookup(prefix + ".dequant_scale");
  const std::optional<StoredTensor> ct = lookup(prefix + ".weight_scale");
  SPECQ_CHECK(!(qserve && ct), "'{}': {} has both .dequant_scale (QServe) and .weight_scale (compressed-tensors)",
              where, prefix);
  SPECQ_CHECK(qserve || ct,
              "'{}': tensor {}.weight is int8 but has no {}.weight_scale (compressed-tensors) or {}.dequant_scale "
              "(QServe) beside it",
              where, prefix, prefix, prefix);
  if (qserve) {
    SPECQ_CHECK(config == nullptr,
                "'{}': {}.dequant_scale is a QServe W8A8 tensor, but {} describes a compressed-tensors checkpoint",
                where, prefix, config ? config->source : "");
    SPECQ_CHECK(qserve->dtype == DType::F16 && qserve->shape == std::vector<int64_t>{n},
                "'{}': tensor {}.dequant_scale is {} [{}], expected f16 [{}] (one scale per output channel)", where,
                prefix, dtype_name(qserve->dtype), fmt::join(qserve->shape, ", "), n);
    q->scales = *qserve;
  } else {
    SPECQ_CHECK(config != nullptr,
                "'{}': tensor {}.weight_scale is a compressed-tensors tensor, but config.json has no "
                "quantization_config with quant_method \"compressed-tensors\"",
                where, prefix);
    SPECQ_CHECK(ct->shape == (std::vector<int64_t>{n, 1}),
                "'{}': tensor {}.weight_scale has shape [{}], expected [{}, 1] (strategy \"channel\")", where, prefix,
                fmt::join(ct->shape, ", "), n);
    q->scales = *ct;
    // Symmetric checkpoints may still store zero points; they must all be 0.
    if (const std::optional<StoredTensor> zp = lookup(prefix + ".weight_zero_point")) {
      SPECQ_CHECK((zp->dtype == DType::I8 || zp->dtype == DType::I32) && zp->numel() == n,
                  "'{}': tensor {}.weight_zero_point is {} [{}], expected i8 [{}, 1]", where, prefix,
                  dtype_name(zp->dtype), fmt::join(zp->shape, ", "), n);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t z = zp->dtype == DType::I8 ? static_cast<const int8_t*>(zp->data)[i]
                                                 : static_cast<const int32_t*>(zp->data)[i];
        SPECQ_CHECK(z == 0, "'{}': tensor {}.weight_zero_point[{}] is {}; asymmetric int8 weights are not supported",
                    where, prefix, i, z);
      }
    }
    for (const char* suffix : {".input_scale", ".input_zero_point"})
      SPECQ_CHECK(!lookup(prefix + suffix),
                  "'{}': tensor {}{} holds a static activation scale; only dynamic per-token activations are supported",
                  where, prefix, suffix);
    SPECQ_CHECK(!lookup(prefix + ".weight_g_idx"), "'{}': tensor {}.weight_g_idx: grouped int8 is not supported",
                where, prefix);
  }
  return checked_linear(WeightFormat::Int8PerChannel, q, q->scales.dtype, n, k, prefix, where);
}

}  // namespace specq
