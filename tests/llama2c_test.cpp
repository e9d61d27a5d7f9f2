// stories260K (real llama2.c weights) reproduces the reference greedy sample.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "gen/generate.h"
#include "io/loader.h"
#include "test_util.h"

namespace specq {
namespace {

std::vector<int32_t> reference_ids() {
  std::ifstream f(test::shared_path("models/stories260K/greedy_from_bos_256.json"));
  return nlohmann::json::parse(f)["ids"].get<std::vector<int32_t>>();
}

TEST(Llama2c, LoadsStories260KShapes) {
  Model m = load_model(test::stories260k());
  EXPECT_EQ(m.config.hidden_size, 64);
  EXPECT_EQ(m.config.intermediate_size, 172);
  EXPECT_EQ(m.config.num_layers, 5);
  EXPECT_EQ(m.config.num_heads, 8);
  EXPECT_EQ(m.config.num_kv_heads, 4);
  EXPECT_EQ(m.config.vocab_size, 512);
  EXPECT_TRUE(m.config.tie_word_embeddings);
  EXPECT_EQ(m.parameter_count(), 264128 - 2 * 512 * 4);  // everything but the freq_cis tables
  EXPECT_NE(m.tokenizer_path.find("tok512.bin"), std::string::npos);
}

TEST(Llama2c, GreedyFromBosMatchesReference) {
  Model m = load_model(test::stories260k());
  auto runner = make_cpu_runner(m, {});
  GenerateOptions options;
  options.max_new_tokens = 60;
  const std::vector<int32_t> bos = {1};
  const GenerateResult r = generate(*runner, bos, options);
  const std::vector<int32_t> expected = reference_ids();
  ASSERT_EQ(r.tokens.size(), 60u);
  EXPECT_EQ(r.tokens, std::vector<int32_t>(expected.begin(), expected.begin() + 60));
}

TEST(Llama2c, CliJsonReproducesReference) {
  const auto r = test::run_specq("generate --model " + test::stories260k() +
                                 " --prompt-ids \"\" --max-new-tokens 60 --temperature 0 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto out = nlohmann::json::parse(r.out);
  const std::vector<int32_t> expected = reference_ids();
  EXPECT_EQ(out["token_ids"].get<std::vector<int32_t>>(), std::vector<int32_t>(expected.begin(), expected.begin() + 60));
  EXPECT_EQ(out["prompt_tokens"], 1);
  EXPECT_EQ(out["new_tokens"], 60);
  for (const char* key : {"text", "prefill_seconds", "decode_seconds", "tokens_per_second"})
    EXPECT_TRUE(out.contains(key)) << key;
}

TEST(Llama2c, TruncatedFileIsAClearError) {
  const std::string path = ::testing::TempDir() + "/truncated.bin";
  {
    std::ifstream in(test::shared_path("models/stories260K/stories260K.bin"), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(path, std::ios::binary).write(bytes.data(), 100000);
  }
  try {
    load_model(path);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace specq
