#include "io/hf_config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iterator>
#include <limits>
#include <optional>

#include "core/error.h"
#include "io/json_file.h"

namespace specq {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int64_t kMaxDim = int64_t(1) << 20, kMaxVocab = int64_t(1) << 24, kMaxLayers = 4096;

// Typed access to the fields of one JSON object; a null field counts as absent, as in transformers.
class Fields {
 public:
  Fields(const json& object, std::string source) : object_(object), source_(std::move(source)) {}

  const json* get(const char* key) const {
    const auto it = object_.find(key);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }

  std::optional<int> opt_int(const char* key) const {
    const json* v = get(key);
    if (v == nullptr) return std::nullopt;
    SPECQ_CHECK(v->is_number_integer(), "{}: '{}' must be an integer, got {} {}", source_, key, v->type_name(),
                v->dump());
    const int64_t x = v->is_number_unsigned() ? int64_t(std::min<uint64_t>(v->get<uint64_t>(), INT64_MAX))
                                              : v->get<int64_t>();
    SPECQ_CHECK(x >= std::numeric_limits<int>::min() && x <= std::numeric_limits<int>::max(),
                "{}: '{}' = {} is out of range", source_, key, v->dump());
    return int(x);
  }
  int required_int(const char* key) const {
    const std::optional<int> v = opt_int(key);
    SPECQ_CHECK(v.has_value(), "{}: missing required field '{}'", source_, key);
    return *v;
  }

  std::optional<double> opt_number(const char* key) const {
    const json* v = get(key);
    if (v == nullptr) return std::nullopt;
    SPECQ_CHECK(v->is_number(), "{}: '{}' must be a number, got {} {}", source_, key, v->type_name(), v->dump());
    // Every number here ends up a float; converting one beyond float's range would be undefined.
    const double x = v->get<double>();
    SPECQ_CHECK(std::abs(x) <= double(std::numeric_limits<float>::max()), "{}: '{}' = {} is out of range", source_,
                key, v->dump());
    return x;
  }
  double required_number(const char* key, const std::string& context) const {
    const std::optional<double> v = opt_number(key);
    SPECQ_CHECK(v.has_value(), "{}: {} needs the field '{}'", source_, context, key);
    return *v;
  }

  std::optional<bool> opt_bool(const char* key) const {
    const json* v = get(key);
    if (v == nullptr) return std::nullopt;
    SPECQ_CHECK(v->is_boolean(), "{}: '{}' must be true or false, got {} {}", source_, key, v->type_name(),
                v->dump());
    return v->get<bool>();
  }

  std::optional<std::string> opt_string(const char* key) const {
    const json* v = get(key);
    if (v == nullptr) return std::nullopt;
    SPECQ_CHECK(v->is_string(), "{}: '{}' must be a string, got {} {}", source_, key, v->type_name(), v->dump());
    return v->get<std::string>();
  }

  // A token id field: an integer or a list of integers (eos_token_id often is a list).
  std::vector<int> token_ids(const char* key) const {
    const json* v = get(key);
    if (v == nullptr) return {};
    std::vector<int> ids;
    auto add = [&](const json& id) {
      SPECQ_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 &&
                      id.get<int64_t>() <= std::numeric_limits<int>::max(),
                  "{}: '{}' must be a token id or a list of token ids, got {}", source_, key, v->dump());
      ids.push_back(id.get<int>());
    };
    if (v->is_array()) {
      for (const json& id : *v) add(id);
    } else {
      add(*v);
    }
    return ids;
  }

  const std::string& source() const { return source_; }

 private:
  const json& object_;
  std::string source_;
};

DType parse_torch_dtype(const std::string& name, const std::string& source) {
  if (name == "float32") return DType::F32;
  if (name == "float16") return DType::F16;
  if (name == "bfloat16") return DType::BF16;
  fail("{}: dtype '{}' is not supported (supported: float32, float16, bfloat16)", source, name);
}

// `params` is 4.x's rope_scaling or 5.x's rope_parameters; `what` is its name for messages.
RopeScaling parse_rope(const json& params, const std::string& what, const std::string& source) {
  SPECQ_CHECK(params.is_object(), "{}: '{}' must be an object, got {}", source, what, params.type_name());
  const Fields f(params, source);
  // transformers 4.x wrote "type" before it settled on "rope_type".
  std::optional<std::string> type = f.opt_string("rope_type");
  if (!type) type = f.opt_string("type");
  SPECQ_CHECK(type.has_value() || f.get("factor") == nullptr, "{}: '{}' has a factor but no rope_type", source,
              what);
  RopeScaling s;
  const std::string context = fmt::format("rope type '{}'", type.value_or("default"));
  if (!type || *type == "default") return s;
  if (*type == "linear") {
    s.type = RopeScaling::Type::Linear;
    s.factor = float(f.required_number("factor", context));
  } else if (*type == "llama3") {
    s.type = RopeScaling::Type::Llama3;
    s.factor = float(f.required_number("factor", context));
    s.low_freq_factor = float(f.required_number("low_freq_factor", context));
    s.high_freq_factor = float(f.required_number("high_freq_factor", context));
    const std::optional<int> original = f.opt_int("original_max_position_embeddings");
    SPECQ_CHECK(original.has_value(), "{}: {} needs the field 'original_max_position_embeddings'", source, context);
    s.original_max_position = *original;
    SPECQ_CHECK(s.original_max_position > 0 && s.low_freq_factor > 0.0f && s.high_freq_factor > s.low_freq_factor,
                "{}: llama3 rope scaling needs original_max_position_embeddings > 0 and "
                "0 < low_freq_factor < high_freq_factor",
                source);
  } else {
    fail("{}: rope type '{}' is not supported (supported: default, linear, llama3)", source, *type);
  }
  SPECQ_CHECK(s.factor > 0.0f, "{}: rope scaling factor must be positive", source);
  return s;
}

std::string architecture_of(const json& config, const std::string& source) {
  const auto arch = config.find("architectures");
  if (arch == config.end() || arch->is_null()) {
    // Some exports carry only model_type; it names the same two families.
    const std::optional<std::string> type = Fields(config, source).opt_string("model_type");
    SPECQ_CHECK(type.has_value(), "{}: missing required field 'architectures'", source);
    if (*type == "llama") return "LlamaForCausalLM";
    if (*type == "qwen2") return "Qwen2ForCausalLM";
    return *type;
  }
  SPECQ_CHECK(arch->is_array() && !arch->empty() && (*arch)[0].is_string(),
              "{}: 'architectures' must be a non-empty list of names, got {}", source, arch->dump());
  return (*arch)[0].get<std::string>();
}

void add_unique(std::vector<int>& ids, const std::vector<int>& more) {
  for (int id : more)
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
}

}  // namespace

ModelConfig parse_hf_config(const json& config, const std::string& source) {
  SPECQ_CHECK(config.is_object(), "{}: expected a JSON object, got {}", source, config.type_name());
  const Fields f(config, source);
  ModelConfig c;
  c.arch_name = architecture_of(config, source);
  if (c.arch_name == "LlamaForCausalLM") {
    c.arch = Arch::Llama;
  } else if (c.arch_name == "Qwen2ForCausalLM") {
    c.arch = Arch::Qwen2;
  } else {
    fail("{}: unsupported architecture '{}' (supported: LlamaForCausalLM, Qwen2ForCausalLM)", source, c.arch_name);
  }
  const bool qwen2 = c.arch == Arch::Qwen2;

  c.vocab_size = f.required_int("vocab_size");
  c.hidden_size = f.required_int("hidden_size");
  c.intermediate_size = f.required_int("intermediate_size");
  c.num_layers = f.required_int("num_hidden_layers");
  c.num_heads = f.required_int("num_attention_heads");
  c.num_kv_heads = f.opt_int("num_key_value_heads").value_or(c.num_heads);
  SPECQ_CHECK(c.num_heads > 0, "{}: num_attention_heads must be positive (got {})", source, c.num_heads);
  if (const std::optional<int> head_dim = f.opt_int("head_dim")) {
    c.head_dim = *head_dim;
  } else {
    SPECQ_CHECK(c.hidden_size % c.num_heads == 0,
                "{}: hidden_size {} is not a multiple of num_attention_heads {} and head_dim is not given", source,
                c.hidden_size, c.num_heads);
    c.head_dim = c.hidden_size / c.num_heads;
  }
  c.rms_norm_eps = float(f.opt_number("rms_norm_eps").value_or(1e-6));
  c.max_position_embeddings = f.opt_int("max_position_embeddings").value_or(qwen2 ? 32768 : 2048);
  c.tie_word_embeddings = f.opt_bool("tie_word_embeddings").value_or(false);
  // Qwen2's q/k/v projections always carry a bias; Llama's only with attention_bias.
  c.attention_bias = qwen2 || f.opt_bool("attention_bias").value_or(false);

  // Variants the forward does not implement are refused rather than run wrong.
  const std::string act = f.opt_string("hidden_act").value_or("silu");
  SPECQ_CHECK(act == "silu", "{}: hidden_act '{}' is not supported (supported: silu)", source, act);
  SPECQ_CHECK(!f.opt_bool("mlp_bias").value_or(false), "{}: mlp_bias is not supported", source);
  SPECQ_CHECK(!f.opt_bool("use_sliding_window").value_or(false), "{}: sliding-window attention is not supported",
              source);
  if (const json* layer_types = f.get("layer_types")) {  // 5.x: per-layer attention kind
    SPECQ_CHECK(layer_types->is_array(), "{}: 'layer_types' must be a list", source);
    for (const json& kind : *layer_types) {
      SPECQ_CHECK(kind == "full_attention", "{}: layer type {} is not supported (supported: full_attention)", source,
                  kind.dump());
    }
  }

  // 5.x keeps rope_theta inside rope_parameters; 4.x has it at the top level next to rope_scaling.
  double theta = f.opt_number("rope_theta").value_or(10000.0);
  if (const json* params = f.get("rope_parameters")) {
    c.rope_scaling = parse_rope(*params, "rope_parameters", source);
    theta = Fields(*params, source).opt_number("rope_theta").value_or(theta);
  } else if (const json* scaling = f.get("rope_scaling")) {
    c.rope_scaling = parse_rope(*scaling, "rope_scaling", source);
  }
  c.rope_theta = float(theta);

  std::optional<std::string> dtype = f.opt_string("dtype");  // 5.x name
  if (!dtype) dtype = f.opt_string("torch_dtype");            // 4.x name
  if (dtype) c.dtype = parse_torch_dtype(*dtype, source);

  const std::vector<int> bos = f.token_ids("bos_token_id");
  if (!bos.empty()) c.bos_token_id = bos[0];
  add_unique(c.eos_token_ids, f.token_ids("eos_token_id"));

  // Sizes far beyond any real model would only overflow the shape arithmetic downstream.
  const int64_t limits[][2] = {{c.vocab_size, kMaxVocab},
                               {c.hidden_size, kMaxDim},
                               {c.intermediate_size, kMaxDim},
                               {c.num_layers, kMaxLayers},
                               {int64_t(c.num_heads) * c.head_dim, kMaxDim},
                               {int64_t(c.num_kv_heads) * c.head_dim, kMaxDim}};
  const char* names[] = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                         "num_attention_heads * head_dim", "num_key_value_heads * head_dim"};
  for (size_t i = 0; i < std::size(limits); ++i) {
    SPECQ_CHECK(limits[i][0] <= limits[i][1], "{}: {} = {} exceeds the supported maximum of {}", source, names[i],
                limits[i][0], limits[i][1]);
  }
  try {
    c.validate();
  } catch (const Error& e) {
    fail("{}: {}", source, e.what());
  }
  return c;
}

void apply_generation_config(const json& generation, const std::string& source, ModelConfig& config) {
  SPECQ_CHECK(generation.is_object(), "{}: expected a JSON object, got {}", source, generation.type_name());
  const Fields f(generation, source);
  const std::vector<int> bos = f.token_ids("bos_token_id");
  if (!bos.empty()) config.bos_token_id = bos[0];
  add_unique(config.eos_token_ids, f.token_ids("eos_token_id"));
}

ModelConfig read_hf_config(const std::string& dir) {
  const fs::path config_path = fs::path(dir) / "config.json";
  std::error_code ec;
  SPECQ_CHECK(fs::is_regular_file(config_path, ec), "'{}' has no config.json", dir);
  const std::string source = fmt::format("'{}'", config_path.string());
  ModelConfig config = parse_hf_config(read_json_file(config_path.string()), source);
  const fs::path generation_path = fs::path(dir) / "generation_config.json";
  if (fs::is_regular_file(generation_path, ec)) {
    const std::string path = generation_path.string();
    apply_generation_config(read_json_file(path), fmt::format("'{}'", path), config);
  }
  return config;
}

}  // namespace specq
