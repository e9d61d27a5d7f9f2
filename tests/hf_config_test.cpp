// config.json / generation_config.json parsing: both transformers forms, defaults, RoPE scaling
// (checked against numbers from transformers' own rope init), dtypes, token ids and clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "io/hf_config.h"
#include "test_files.h"

namespace specq {
namespace {

using nlohmann::json;
using testing::error_of;

// A Llama 3.2-like tiny model in the form transformers 5.x writes.
json llama3_5x() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "vocab_size": 256, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-05,
    "max_position_embeddings": 512, "tie_word_embeddings": true, "dtype": "bfloat16",
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
    "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                        "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                        "original_max_position_embeddings": 64}
  })");
}

// The same model as transformers 4.x wrote it.
json llama3_4x(const char* type_key) {
  json j = llama3_5x();
  j.erase("rope_parameters");
  j.erase("dtype");
  j["torch_dtype"] = "bfloat16";
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = {{type_key, "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 64}};
  return j;
}

ModelConfig parse(const json& j) { return parse_hf_config(j, "config.json"); }

std::string parse_error(const json& j) {
  return error_of([&] { parse(j); });
}

// rope_inv_freq against (index, value) pairs printed by transformers 5.24's
// ROPE_INIT_FUNCTIONS[type](config, "cpu") (computed in float32 there, in double here).
void expect_inv_freq(const ModelConfig& c, const std::vector<std::pair<int, float>>& expected) {
  const std::vector<float> got = rope_inv_freq(c);
  ASSERT_EQ(int(got.size()), c.head_dim / 2);
  for (const auto& [i, want] : expected) {
    EXPECT_NEAR(got[size_t(i)], want, 2e-6 * want) << "inv_freq[" << i << "]";
  }
}

TEST(HfConfig, ParsesTransformers5Form) {
  const ModelConfig c = parse(llama3_5x());
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_EQ(c.arch_name, "LlamaForCausalLM");
  EXPECT_EQ(c.vocab_size, 256);
  EXPECT_EQ(c.hidden_size, 32);
  EXPECT_EQ(c.intermediate_size, 64);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 16);  // given, not hidden / heads (= 8)
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);
  EXPECT_EQ(c.max_position_embeddings, 512);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.dtype, DType::BF16);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Llama3);
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 8.0f);
  EXPECT_FLOAT_EQ(c.rope_scaling.low_freq_factor, 1.0f);
  EXPECT_FLOAT_EQ(c.rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(c.rope_scaling.original_max_position, 64);
}

TEST(HfConfig, Transformers4FormGivesTheSameConfig) {
  const ModelConfig a = parse(llama3_5x());
  for (const char* key : {"rope_type", "type"}) {
    const ModelConfig b = parse(llama3_4x(key));
    EXPECT_EQ(b.dtype, a.dtype) << key;
    EXPECT_EQ(b.rope_theta, a.rope_theta) << key;
    EXPECT_EQ(b.rope_scaling.type, a.rope_scaling.type) << key;
    EXPECT_EQ(b.rope_scaling.factor, a.rope_scaling.factor) << key;
    EXPECT_EQ(b.rope_scaling.original_max_position, a.rope_scaling.original_max_position) << key;
    EXPECT_EQ(rope_inv_freq(b), rope_inv_freq(a)) << key;
  }
}

TEST(HfConfig, Llama3RopeMatchesTransformers) {
  // Tiny: wavelengths 6.3 (kept), 32 (between 16 and 64: interpolated), the rest divided by 8.
  expect_inv_freq(parse(llama3_5x()), {{0, 1.0f},
                                       {1, 0.079403013f},
                                       {2, 0.00470075384f},
                                       {3, 0.000911583134f},
                                       {4, 0.000176776681f},
                                       {5, 3.42810235e-05f},
                                       {6, 6.64786967e-06f},
                                       {7, 1.28917316e-06f}});
  // Llama 3.1 8B: head_dim 128, original context 8192; indices 26..35 span the interpolated band.
  json j = llama3_5x();
  j["hidden_size"] = 4096;
  j["num_attention_heads"] = 32;
  j["num_key_value_heads"] = 8;
  j.erase("head_dim");
  j["rope_parameters"]["original_max_position_embeddings"] = 8192;
  const ModelConfig c = parse(j);
  EXPECT_EQ(c.head_dim, 128);
  expect_inv_freq(c, {{0, 1.0f},
                      {10, 0.128687382f},
                      {20, 0.0165604409f},
                      {26, 0.00483942125f},
                      {27, 0.00394227589f},
                      {28, 0.00321144611f},
                      {29, 0.00216657063f},
                      {30, 0.00137189368f},
                      {31, 0.00085675146f},
                      {32, 0.000524846022f},
                      {33, 0.00031269365f},
                      {34, 0.000178507791f},
                      {35, 9.55621217e-05f},
                      {40, 3.42810235e-05f},
                      {63, 3.06892588e-07f}});
}

TEST(HfConfig, LinearRopeMatchesTransformers) {
  json j = llama3_5x();
  j["hidden_size"] = 64;
  j.erase("head_dim");
  j["rope_parameters"] = {{"rope_type", "linear"}, {"rope_theta", 10000.0}, {"factor", 2.0}};
  const ModelConfig c = parse(j);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Linear);
  expect_inv_freq(c, {{0, 0.5f},
                      {1, 0.158113882f},
                      {2, 0.0500000007f},
                      {3, 0.0158113893f},
                      {4, 0.00499999989f},
                      {5, 0.00158113893f},
                      {6, 0.000500000024f},
                      {7, 0.000158113893f}});
}

TEST(HfConfig, DefaultRopeAndNullScaling) {
  json j = llama3_4x("type");
  j["rope_scaling"] = nullptr;
  EXPECT_EQ(parse(j).rope_scaling.type, RopeScaling::Type::None);
  j.erase("rope_scaling");
  j.erase("rope_theta");
  EXPECT_FLOAT_EQ(parse(j).rope_theta, 10000.0f);
  j = llama3_5x();
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e6}};
  const ModelConfig c = parse(j);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::None);
  EXPECT_FLOAT_EQ(c.rope_theta, 1e6f);
}

TEST(HfConfig, Defaults) {
  json j = llama3_5x();
  for (const char* key : {"num_key_value_heads", "head_dim", "rms_norm_eps", "max_position_embeddings",
                          "tie_word_embeddings", "dtype", "bos_token_id", "eos_token_id", "rope_parameters"})
    j.erase(key);
  j["num_key_value_heads"] = nullptr;  // null counts as absent, as in transformers
  const ModelConfig c = parse(j);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-6f);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.dtype, DType::F32);
  EXPECT_EQ(c.bos_token_id, -1);
  EXPECT_TRUE(c.eos_token_ids.empty());
}

TEST(HfConfig, AttentionBias) {
  json j = llama3_5x();
  EXPECT_FALSE(parse(j).attention_bias);
  j["attention_bias"] = true;
  EXPECT_TRUE(parse(j).attention_bias);
  // Qwen2 always has q/k/v biases, whatever the file says.
  j = llama3_5x();
  j["architectures"] = {"Qwen2ForCausalLM"};
  j.erase("max_position_embeddings");
  const ModelConfig q = parse(j);
  EXPECT_EQ(q.arch, Arch::Qwen2);
  EXPECT_TRUE(q.attention_bias);
  EXPECT_EQ(q.max_position_embeddings, 32768);
}

TEST(HfConfig, Dtypes) {
  json j = llama3_5x();
  const std::pair<const char*, DType> names[] = {
      {"float32", DType::F32}, {"float16", DType::F16}, {"bfloat16", DType::BF16}};
  for (const auto& [name, dtype] : names) {
    j["dtype"] = name;
    EXPECT_EQ(parse(j).dtype, dtype) << name;
    json old = llama3_4x("type");
    old["torch_dtype"] = name;
    EXPECT_EQ(parse(old).dtype, dtype) << name;
  }
  j["dtype"] = "float16";
  j["torch_dtype"] = "float32";  // files that carry both: 5.x's name wins
  EXPECT_EQ(parse(j).dtype, DType::F16);
  j["dtype"] = "float64";
  EXPECT_EQ(parse_error(j), "config.json: dtype 'float64' is not supported (supported: float32, float16, bfloat16)");
}

TEST(HfConfig, TokenIds) {
  json j = llama3_5x();
  j["eos_token_id"] = 7;
  j["bos_token_id"] = nullptr;
  ModelConfig c = parse(j);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{7});
  EXPECT_EQ(c.bos_token_id, -1);
  // generation_config.json: eos ids join (no duplicates), bos replaces.
  apply_generation_config(json::parse(R"({"bos_token_id": 3, "eos_token_id": [9, 7, 8]})"), "gen", c);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{7, 9, 8}));
  EXPECT_EQ(c.bos_token_id, 3);
  apply_generation_config(json::parse(R"({"eos_token_id": 10})"), "gen", c);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{7, 9, 8, 10}));
  EXPECT_EQ(c.bos_token_id, 3);
  EXPECT_NE(error_of([&] { apply_generation_config(json::parse(R"({"eos_token_id": "x"})"), "gen", c); }), "");
  j["eos_token_id"] = json::array({1, -2});
  EXPECT_EQ(parse_error(j), "config.json: 'eos_token_id' must be a token id or a list of token ids, got [1,-2]");
}

TEST(HfConfig, ModelTypeStandsInForArchitectures) {
  json j = llama3_5x();
  j.erase("architectures");
  j["model_type"] = "qwen2";
  EXPECT_EQ(parse(j).arch, Arch::Qwen2);
  j.erase("model_type");
  EXPECT_EQ(parse_error(j), "config.json: missing required field 'architectures'");
}

TEST(HfConfig, Errors) {
  auto with = [](const char* key, json value) {
    json j = llama3_5x();
    j[key] = std::move(value);
    return parse_error(j);
  };
  EXPECT_EQ(with("architectures", {"GPT2LMHeadModel"}),
            "config.json: unsupported architecture 'GPT2LMHeadModel' (supported: LlamaForCausalLM, Qwen2ForCausalLM)");
  EXPECT_EQ(with("architectures", json::array()),
            "config.json: 'architectures' must be a non-empty list of names, got []");
  EXPECT_EQ(with("hidden_size", "32"), "config.json: 'hidden_size' must be an integer, got string \"32\"");
  EXPECT_EQ(with("hidden_size", 32.5), "config.json: 'hidden_size' must be an integer, got number 32.5");
  EXPECT_EQ(with("num_hidden_layers", 1e10),
            "config.json: 'num_hidden_layers' must be an integer, got number 10000000000.0");
  EXPECT_EQ(with("vocab_size", 4294967296), "config.json: 'vocab_size' = 4294967296 is out of range");
  EXPECT_EQ(with("tie_word_embeddings", 1), "config.json: 'tie_word_embeddings' must be true or false, got number 1");
  EXPECT_EQ(with("rms_norm_eps", "small"), "config.json: 'rms_norm_eps' must be a number, got string \"small\"");
  EXPECT_EQ(with("rope_theta", 1e300), "config.json: 'rope_theta' = 1e+300 is out of range");
  EXPECT_EQ(with("hidden_act", "gelu"), "config.json: hidden_act 'gelu' is not supported (supported: silu)");
  EXPECT_EQ(with("mlp_bias", true), "config.json: mlp_bias is not supported");
  EXPECT_EQ(with("use_sliding_window", true), "config.json: sliding-window attention is not supported");
  EXPECT_EQ(with("layer_types", {"full_attention", "sliding_attention"}),
            "config.json: layer type \"sliding_attention\" is not supported (supported: full_attention)");
  EXPECT_EQ(with("num_key_value_heads", 3),
            "config.json: config: num_key_value_heads (3) must divide num_attention_heads (4)");
  EXPECT_EQ(with("num_key_value_heads", 0),
            "config.json: config: num_key_value_heads (0) must divide num_attention_heads (4)");
  EXPECT_EQ(with("hidden_size", -32), "config.json: config: hidden_size must be positive (got -32)");
  // Products that would overflow int downstream are refused up front.
  EXPECT_EQ(with("head_dim", 1 << 30),
            "config.json: num_attention_heads * head_dim = 4294967296 exceeds the supported maximum of 1048576");
  EXPECT_EQ(with("vocab_size", 1 << 30),
            "config.json: vocab_size = 1073741824 exceeds the supported maximum of 16777216");
  EXPECT_EQ(with("rope_parameters", "llama3"), "config.json: 'rope_parameters' must be an object, got string");

  json j = llama3_5x();
  j.erase("vocab_size");
  EXPECT_EQ(parse_error(j), "config.json: missing required field 'vocab_size'");
  j = llama3_5x();
  j.erase("head_dim");
  j["num_attention_heads"] = 5;
  j["num_key_value_heads"] = 5;
  EXPECT_EQ(parse_error(j),
            "config.json: hidden_size 32 is not a multiple of num_attention_heads 5 and head_dim is not given");
  EXPECT_EQ(parse_error(json::array()), "config.json: expected a JSON object, got array");
}

TEST(HfConfig, UnsupportedRopeTypesAreRefused) {
  for (const char* type : {"yarn", "dynamic", "longrope", "su", "proportional"}) {
    json j = llama3_5x();
    j["rope_parameters"]["rope_type"] = type;
    EXPECT_EQ(parse_error(j), fmt::format("config.json: rope type '{}' is not supported (supported: default, linear, "
                                          "llama3)",
                                          type));
    json old = llama3_4x("type");
    old["rope_scaling"]["type"] = type;
    EXPECT_EQ(parse_error(old), parse_error(j));
  }
  json j = llama3_5x();
  j["rope_parameters"].erase("original_max_position_embeddings");
  EXPECT_EQ(parse_error(j), "config.json: rope type 'llama3' needs the field 'original_max_position_embeddings'");
  j = llama3_5x();
  j["rope_parameters"].erase("low_freq_factor");
  EXPECT_EQ(parse_error(j), "config.json: rope type 'llama3' needs the field 'low_freq_factor'");
  j = llama3_4x("type");
  j["rope_scaling"] = {{"factor", 2.0}};
  EXPECT_EQ(parse_error(j), "config.json: 'rope_scaling' has a factor but no rope_type");
  j["rope_scaling"] = {{"type", "linear"}};
  EXPECT_EQ(parse_error(j), "config.json: rope type 'linear' needs the field 'factor'");
  j["rope_scaling"] = {{"type", "linear"}, {"factor", -1.0}};
  EXPECT_EQ(parse_error(j), "config.json: rope scaling factor must be positive");
}

TEST(HfConfig, ReadsFixtureDirectoryWithGenerationConfig) {
  const ModelConfig q = read_hf_config((testing::kHfFixtures / "qwen2_bias_sharded").string());
  EXPECT_EQ(q.arch, Arch::Qwen2);
  EXPECT_FLOAT_EQ(q.rope_theta, 1e6f);  // 4.x form: top-level rope_theta
  EXPECT_EQ(q.dtype, DType::F32);
  EXPECT_EQ(q.bos_token_id, 1);
  EXPECT_EQ(q.eos_token_ids, (std::vector<int>{2, 3}));  // config's 2, generation config's [2, 3]
  const ModelConfig m = read_hf_config((testing::kHfFixtures / "llama_mqa_f16").string());
  EXPECT_EQ(m.num_kv_heads, 1);
  EXPECT_EQ(m.dtype, DType::F16);  // torch_dtype
  EXPECT_EQ(m.rope_scaling.type, RopeScaling::Type::Linear);
  EXPECT_FLOAT_EQ(m.rope_scaling.factor, 2.0f);
  EXPECT_EQ(read_hf_config((testing::kHfFixtures / "llama_tied_bf16").string()).dtype, DType::BF16);  // dtype
}

TEST(HfConfig, MissingOrCorruptFiles) {
  testing::TempDir tmp;
  EXPECT_EQ(error_of([&] { read_hf_config(tmp.path().string()); }),
            fmt::format("'{}' has no config.json", tmp.path().string()));
  testing::write_file(tmp / "config.json", "{\"vocab_size\": 12,");  // 18 bytes: the end of input is byte 19
  EXPECT_EQ(error_of([&] { read_hf_config(tmp.path().string()); }),
            fmt::format("'{}' is not valid JSON (syntax error at byte 19)", (tmp / "config.json").string()));
  testing::write_file(tmp / "config.json", llama3_5x().dump());
  testing::write_file(tmp / "generation_config.json", "[1]");
  EXPECT_EQ(error_of([&] { read_hf_config(tmp.path().string()); }),
            fmt::format("'{}': expected a JSON object, got array", (tmp / "generation_config.json").string()));
}

}  // namespace
}  // namespace specq
