// The CPU backend against transformers: logits of a prompt within 1e-4 relative L2 error and the same
// 16 greedy tokens, on the tiny checkpoints made by tools/make_hf_fixtures.py.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "io/loader.h"
#include "model/runner.h"
#include "test_files.h"
#include "test_util.h"

namespace specq {
namespace {

using testing::kHfFixtures;

struct Reference {
  std::vector<int32_t> prompt, greedy;
  std::vector<float> logits;  // [prompt][vocab]
  int vocab = 0;
};

Reference read_reference(const std::string& name) {
  const auto dir = kHfFixtures / name;
  const nlohmann::json j = nlohmann::json::parse(testing::read_file(dir / "reference.json"));
  Reference r;
  r.prompt = j.at("prompt").get<std::vector<int32_t>>();
  r.greedy = j.at("greedy").get<std::vector<int32_t>>();
  const auto shape = j.at("logits_shape").get<std::vector<size_t>>();
  r.vocab = int(shape.at(1));
  const std::string bytes = testing::read_file(dir / j.at("logits_file").get<std::string>());
  EXPECT_EQ(bytes.size(), shape[0] * shape[1] * sizeof(float));
  EXPECT_EQ(shape[0], r.prompt.size());
  r.logits.resize(bytes.size() / sizeof(float));
  std::memcpy(r.logits.data(), bytes.data(), r.logits.size() * sizeof(float));
  return r;
}

// One forward of the whole prompt from position 0, with logits for every position.
ForwardResult prefill_all_rows(Runner& runner, const std::vector<int32_t>& prompt) {
  std::vector<int32_t> positions(prompt.size());
  std::iota(positions.begin(), positions.end(), 0);
  ForwardRequest prefill;
  prefill.tokens = prompt;
  prefill.positions = positions;
  prefill.logits_rows = ForwardRequest::Rows::All;
  return runner.forward(prefill);  // the result points into the runner, not into `positions`
}

class HfFidelity : public ::testing::TestWithParam<std::string> {};

TEST_P(HfFidelity, LogitsAndGreedyMatchTransformers) {
  const Reference ref = read_reference(GetParam());
  Model model = load_model((kHfFixtures / GetParam()).string());
  ASSERT_EQ(model.config.vocab_size, ref.vocab);
  auto runner = make_cpu_runner(model, RunnerOptions{});

  const int n = int(ref.prompt.size());
  const ForwardResult out = prefill_all_rows(*runner, ref.prompt);
  ASSERT_EQ(out.logits.size(), ref.logits.size());
  const double error = test::relative_l2(out.logits, ref.logits);
  std::printf("[ fidelity ] %s: relative L2 error %.3g\n", GetParam().c_str(), error);
  RecordProperty("relative_l2_error", std::to_string(error));
  EXPECT_LT(error, 1e-4);

  // Greedy decode one token per forward on the KV cache; transformers recomputed the whole prefix.
  std::vector<int32_t> greedy{out.argmax[size_t(n - 1)]};
  while (greedy.size() < ref.greedy.size()) {
    const int32_t token = greedy.back(), position = n + int32_t(greedy.size()) - 1;
    ForwardRequest step;
    step.tokens = std::span<const int32_t>(&token, 1);
    step.positions = std::span<const int32_t>(&position, 1);
    step.cache_len = position;
    greedy.push_back(runner->forward(step).argmax[0]);
  }
  EXPECT_EQ(greedy, ref.greedy);
}

// The fixtures must be able to catch a RoPE mistake: dropping the configured scaling has to move the
// logits far past the tolerance (otherwise the scaled fixtures would prove nothing about scaling).
TEST(HfFidelitySensitivity, DroppingRopeScalingBreaksTheMatch) {
  for (const std::string name : {"llama3_gqa_f32", "llama_mqa_f16"}) {
    const Reference ref = read_reference(name);
    Model model = load_model((kHfFixtures / name).string());
    ASSERT_NE(model.config.rope_scaling.type, RopeScaling::Type::None) << name;
    model.config.rope_scaling = RopeScaling{};
    auto runner = make_cpu_runner(model, RunnerOptions{});
    EXPECT_GT(test::relative_l2(prefill_all_rows(*runner, ref.prompt).logits, ref.logits), 1e-3) << name;
  }
}

// Weights are used in place: the only storage is the mapped files themselves (one per shard).
TEST(HfLoading, WeightsAreZeroCopy) {
  EXPECT_EQ(load_model((kHfFixtures / "llama3_gqa_f32").string()).storage.size(), 1u);
  EXPECT_EQ(load_model((kHfFixtures / "qwen2_bias_sharded").string()).storage.size(), 4u);
}

TEST(HfLoading, FindsTokenizerAndAcceptsAFileOfTheDirectory) {
  testing::TempDir tmp;
  const auto dir = testing::copy_fixture("llama_tied_bf16", tmp.path());
  EXPECT_EQ(load_model(dir.string()).tokenizer_path, "");
  testing::write_file(dir / "tokenizer.json", "{}");
  EXPECT_EQ(load_model(dir.string()).tokenizer_path, dir.string());
  // config.json or a .safetensors file stands for its directory.
  for (const char* file : {"config.json", "model.safetensors"}) {
    const Model m = load_model((dir / file).string());
    EXPECT_EQ(m.source, dir.string()) << file;
    EXPECT_TRUE(m.config.tie_word_embeddings) << file;
    EXPECT_EQ(m.weights.lm_head.data, m.weights.embed.data) << file;
    EXPECT_EQ(m.config.dtype, DType::BF16) << file;
  }
}

// safetensors does not align tensors; a float tensor at an odd offset is copied, and still right.
TEST(HfLoading, MisalignedTensorsAreCopied) {
  testing::TempDir tmp;
  const auto dir = testing::copy_fixture("llama3_gqa_f32", tmp.path());
  const auto file = dir / "model.safetensors";
  testing::SafetensorsParts parts = testing::split_safetensors(testing::read_file(file));
  size_t tensors = 0;
  for (auto& [name, entry] : parts.header.items()) {
    if (name == "__metadata__") continue;
    ++tensors;
    for (auto& offset : entry["data_offsets"]) offset = offset.get<uint64_t>() + 1;
  }
  parts.header["a_leading_byte"] = {{"dtype", "U8"}, {"shape", {1}}, {"data_offsets", {0, 1}}};
  parts.data.insert(0, 1, '\x7f');
  testing::write_file(file, testing::safetensors_bytes(parts));

  Model model = load_model(dir.string());
  EXPECT_EQ(model.storage.size(), 1 + tensors);  // the mapping and one aligned copy per float tensor
  const Reference ref = read_reference("llama3_gqa_f32");
  auto runner = make_cpu_runner(model, RunnerOptions{});
  EXPECT_LT(test::relative_l2(prefill_all_rows(*runner, ref.prompt).logits, ref.logits), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HfFidelity,
                         ::testing::Values("llama3_gqa_f32", "llama_tied_bf16", "llama_mqa_f16", "qwen2_bias_sharded"));

}  // namespace
}  // namespace specq
