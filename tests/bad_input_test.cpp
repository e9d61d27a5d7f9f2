// Broken Hugging Face checkpoints, made from the good fixtures in a temp dir: each must fail with one
// clear message, both through load_model and through `specq info` (non-zero exit, no signal, exactly
// one "error:" line on stderr).
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <string>

#include "io/loader.h"
#include "test_files.h"
#include "test_util.h"

namespace specq {
namespace {

using nlohmann::json;
using testing::TempDir;

class BadInput : public ::testing::Test {
 protected:
  // A copy of a good fixture to break.
  std::filesystem::path copy(const std::string& fixture = "llama3_gqa_f32") {
    return testing::copy_fixture(fixture, tmp_.path());
  }

  static void edit_json(const std::filesystem::path& path, const std::function<void(json&)>& edit) {
    json j = json::parse(testing::read_file(path));
    edit(j);
    testing::write_file(path, j.dump());
  }

  static void edit_safetensors(const std::filesystem::path& path, const std::function<void(json&)>& edit) {
    testing::SafetensorsParts parts = testing::split_safetensors(testing::read_file(path));
    edit(parts.header);
    testing::write_file(path, testing::safetensors_bytes(parts));
  }

  // Loading `path` fails with a message containing `expected`, in the library and in the CLI.
  static void expect_rejected(const std::string& path, const std::string& expected) {
    const std::string message = testing::error_of([&] { load_model(path); });
    EXPECT_NE(message.find(expected), std::string::npos) << "load_model message: '" << message << "'";

    const test::ProcessResult r = test::run_specq("info --model '" + path + "'");
    EXPECT_EQ(r.signal, 0) << "specq was killed by signal " << r.signal;
    EXPECT_GT(r.exit_code, 0);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "stderr: " << r.err;
    EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << "stderr: " << r.err;
    EXPECT_NE(r.err.find(expected), std::string::npos) << "stderr: " << r.err;
    EXPECT_TRUE(r.out.empty()) << "stdout: " << r.out;
  }

  TempDir tmp_;
};

TEST_F(BadInput, GoodFixtureLoads) {
  // The control: the unbroken copy passes through the same paths.
  const auto dir = copy();
  EXPECT_EQ(load_model(dir.string()).config.num_layers, 2);
  const test::ProcessResult r = test::run_specq("info --model '" + dir.string() + "'");
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(BadInput, MissingDirectory) {
  expect_rejected((tmp_ / "no-such-model").string(), "does not exist");
}

TEST_F(BadInput, DirectoryWithoutModel) {
  expect_rejected(tmp_.path().string(), "holds no config.json and no llama2.c .bin checkpoint");
}

TEST_F(BadInput, MissingConfigJson) {
  const auto dir = copy();
  std::filesystem::remove(dir / "config.json");
  expect_rejected(dir.string(), "holds safetensors weights but no config.json");
}

TEST_F(BadInput, ConfigJsonNotJson) {
  const auto dir = copy();
  testing::write_file(dir / "config.json", "architectures: [LlamaForCausalLM]\n");
  expect_rejected(dir.string(), "config.json' is not valid JSON (syntax error at byte 1)");
}

TEST_F(BadInput, ConfigJsonEmpty) {
  const auto dir = copy();
  testing::write_file(dir / "config.json", "");
  expect_rejected(dir.string(), "config.json' is not valid JSON");
}

TEST_F(BadInput, ConfigJsonMissingField) {
  const auto dir = copy();
  edit_json(dir / "config.json", [](json& j) { j.erase("hidden_size"); });
  expect_rejected(dir.string(), "config.json': missing required field 'hidden_size'");
}

TEST_F(BadInput, ConfigJsonWrongType) {
  const auto dir = copy();
  edit_json(dir / "config.json", [](json& j) { j["num_hidden_layers"] = "2"; });
  expect_rejected(dir.string(), "config.json': 'num_hidden_layers' must be an integer, got string \"2\"");
}

TEST_F(BadInput, ConfigJsonNotAnObject) {
  const auto dir = copy();
  testing::write_file(dir / "config.json", "[\"LlamaForCausalLM\"]");
  expect_rejected(dir.string(), "config.json': expected a JSON object, got array");
}

TEST_F(BadInput, UnknownArchitecture) {
  const auto dir = copy();
  edit_json(dir / "config.json", [](json& j) { j["architectures"] = {"GPT2LMHeadModel"}; });
  expect_rejected(dir.string(),
                  "unsupported architecture 'GPT2LMHeadModel' (supported: LlamaForCausalLM, Qwen2ForCausalLM)");
}

TEST_F(BadInput, UnknownRopeType) {
  const auto dir = copy();
  edit_json(dir / "config.json", [](json& j) { j["rope_parameters"]["rope_type"] = "yarn"; });
  expect_rejected(dir.string(), "rope type 'yarn' is not supported (supported: default, linear, llama3)");
}

TEST_F(BadInput, UnknownRopeTypeOldForm) {
  const auto dir = copy("llama_mqa_f16");
  edit_json(dir / "config.json", [](json& j) { j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}}; });
  expect_rejected(dir.string(), "rope type 'dynamic' is not supported");
}

TEST_F(BadInput, CorruptGenerationConfig) {
  const auto dir = copy();
  testing::write_file(dir / "generation_config.json", "{\"eos_token_id\": [1, 2");
  expect_rejected(dir.string(), "generation_config.json' is not valid JSON");
}

TEST_F(BadInput, TruncatedSafetensors) {
  const auto dir = copy();
  const std::string bytes = testing::read_file(dir / "model.safetensors");
  testing::write_file(dir / "model.safetensors", bytes.substr(0, bytes.size() / 2));
  expect_rejected(dir.string(), "data bytes of the file");
}

TEST_F(BadInput, SafetensorsShorterThanItsHeaderLength) {
  const auto dir = copy();
  testing::write_file(dir / "model.safetensors", testing::read_file(dir / "model.safetensors").substr(0, 100));
  expect_rejected(dir.string(), "exceeds the 92 bytes that follow (truncated or not safetensors)");
}

TEST_F(BadInput, SafetensorsTooShortForHeaderLength) {
  const auto dir = copy();
  testing::write_file(dir / "model.safetensors", "abc");
  expect_rejected(dir.string(), "is not a safetensors file: 3 bytes is too short for the header length");
}

TEST_F(BadInput, HeaderLengthLargerThanFile) {
  const auto dir = copy();
  std::string bytes = testing::read_file(dir / "model.safetensors");
  bytes.replace(0, 8, testing::u64_le(uint64_t(1) << 40));
  testing::write_file(dir / "model.safetensors", bytes);
  expect_rejected(dir.string(), "its header length 1099511627776 exceeds");
}

TEST_F(BadInput, HeaderNotJson) {
  const auto dir = copy();
  std::string bytes = testing::read_file(dir / "model.safetensors");
  bytes[8] = '?';  // the header's opening brace
  testing::write_file(dir / "model.safetensors", bytes);
  expect_rejected(dir.string(), "(safetensors header) is not valid JSON");
}

TEST_F(BadInput, TensorWithWrongShape) {
  // Same element count, so only the model-level check can catch it.
  const auto dir = copy();
  edit_safetensors(dir / "model.safetensors",
                   [](json& h) { h["model.layers.0.self_attn.q_proj.weight"]["shape"] = {32, 64}; });
  expect_rejected(dir.string(),
                  "tensor 'model.layers.0.self_attn.q_proj.weight' has shape [32, 64], expected [64, 32]");
}

TEST_F(BadInput, TensorShapeDisagreesWithItsBytes) {
  const auto dir = copy();
  edit_safetensors(dir / "model.safetensors", [](json& h) { h["model.norm.weight"]["shape"] = {33}; });
  expect_rejected(dir.string(),
                  "tensor 'model.norm.weight' has 128 data bytes, but its shape [33] and dtype F32 need 132");
}

TEST_F(BadInput, TensorWithIntegerDtype) {
  const auto dir = copy();
  edit_safetensors(dir / "model.safetensors",
                   [](json& h) { h["model.layers.1.mlp.up_proj.weight"]["dtype"] = "I32"; });
  expect_rejected(dir.string(),
                  "tensor model.layers.1.mlp.up_proj.weight has dtype i32, expected a floating-point dtype");
}

TEST_F(BadInput, TensorWithUnsupportedDtype) {
  const auto dir = copy();
  edit_safetensors(dir / "model.safetensors", [](json& h) {
    h["model.norm.weight"]["dtype"] = "F64";
    h["model.norm.weight"]["shape"] = {16};
  });
  expect_rejected(dir.string(), "tensor 'model.norm.weight' has dtype 'F64', which specq does not support");
}

TEST_F(BadInput, MissingTensor) {
  const auto dir = copy();
  edit_safetensors(dir / "model.safetensors", [](json& h) { h.erase("model.layers.1.mlp.up_proj.weight"); });
  expect_rejected(dir.string(), "missing tensor model.layers.1.mlp.up_proj.weight");
}

TEST_F(BadInput, MissingLmHeadWithoutTying) {
  const auto dir = copy();
  edit_safetensors(dir / "model.safetensors", [](json& h) { h.erase("lm_head.weight"); });
  expect_rejected(dir.string(), "missing tensor lm_head.weight");
}

TEST_F(BadInput, MissingQwen2Bias) {
  const auto dir = copy("qwen2_bias_sharded");
  const json index = json::parse(testing::read_file(dir / "model.safetensors.index.json"));
  const std::string name = "model.layers.1.self_attn.k_proj.bias";
  const std::string shard = index["weight_map"][name];
  edit_safetensors(dir / shard, [&](json& h) { h.erase(name); });
  edit_json(dir / "model.safetensors.index.json", [&](json& j) { j["weight_map"].erase(name); });
  expect_rejected(dir.string(), "missing tensor " + name);
}

TEST_F(BadInput, ConfigDisagreesWithTensors) {
  const auto dir = copy();
  edit_json(dir / "config.json", [](json& j) { j["intermediate_size"] = 48; });
  expect_rejected(dir.string(), "tensor 'model.layers.0.mlp.gate_proj.weight' has shape [64, 32], expected [48, 32]");
}

TEST_F(BadInput, MoreLayersInConfigThanInCheckpoint) {
  const auto dir = copy();
  edit_json(dir / "config.json", [](json& j) { j["num_hidden_layers"] = 3; });
  expect_rejected(dir.string(), "missing tensor model.layers.2.input_layernorm.weight");
}

TEST_F(BadInput, ShardMissing) {
  const auto dir = copy("qwen2_bias_sharded");
  std::filesystem::remove(dir / "model-00002-of-00004.safetensors");
  expect_rejected(dir.string(), "model-00002-of-00004.safetensors': No such file or directory");
}

TEST_F(BadInput, ShardOutsideTheDirectory) {
  const auto dir = copy("qwen2_bias_sharded");
  edit_json(dir / "model.safetensors.index.json",
            [](json& j) { j["weight_map"]["model.norm.weight"] = "../llama3_gqa_f32/model.safetensors"; });
  expect_rejected(dir.string(), "which is not a file inside");
}

}  // namespace
}  // namespace specq
