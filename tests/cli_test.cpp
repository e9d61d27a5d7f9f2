// The CLI's contract on bad input: one clear "error:" line on stderr, a non-zero exit, no crash.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace specq {
namespace {

void expect_clean_failure(const std::string& args, const std::string& message_part) {
  const auto r = test::run_specq(args);
  EXPECT_EQ(r.signal, 0) << "killed by a signal: " << args;
  EXPECT_NE(r.exit_code, 0) << args;
  EXPECT_NE(r.exit_code, -1) << args;
  EXPECT_NE(r.err.find(message_part), std::string::npos) << "stderr of `" << args << "`: " << r.err;
}

const std::string kModel = "--model " + test::stories260k();

TEST(Cli, MissingModelDirectory) { expect_clean_failure("generate --model /nonexistent/model --prompt-ids 1", "does not exist"); }
TEST(Cli, UnknownSyntheticModel) { expect_clean_failure("info --model synthetic:nope", "unknown synthetic model"); }
TEST(Cli, NegativeTemperature) { expect_clean_failure("generate " + kModel + " --prompt-ids 1 --temperature -1", "--temperature"); }
TEST(Cli, TopPOutOfRange) { expect_clean_failure("generate " + kModel + " --prompt-ids 1 --top-p 1.5", "--top-p"); }
TEST(Cli, NegativeTopK) { expect_clean_failure("generate " + kModel + " --prompt-ids 1 --top-k -3", "--top-k"); }
TEST(Cli, NegativeMaxNewTokens) { expect_clean_failure("generate " + kModel + " --prompt-ids 1 --max-new-tokens -5", "--max-new-tokens"); }
TEST(Cli, NonNumericFlag) { expect_clean_failure("generate " + kModel + " --prompt-ids 1 --max-new-tokens ten", "--max-new-tokens"); }
TEST(Cli, UnknownFlag) { expect_clean_failure("generate " + kModel + " --prompt-ids 1 --bogus", "bogus"); }
TEST(Cli, UnknownDevice) { expect_clean_failure("generate " + kModel + " --prompt-ids 1 --device tpu", "unknown device"); }
TEST(Cli, BadPromptIds) { expect_clean_failure("generate " + kModel + " --prompt-ids 1,x,3", "--prompt-ids"); }
TEST(Cli, PromptIdOutsideVocabulary) { expect_clean_failure("generate " + kModel + " --prompt-ids 1,9999", "outside the vocabulary"); }
TEST(Cli, BothPromptKinds) { expect_clean_failure("generate " + kModel + " --prompt-ids 1 --prompt hi", "exactly one"); }

TEST(Cli, PromptLongerThanContext) {
  std::string ids = "1";
  for (int i = 0; i < 600; ++i) ids += ",5";  // stories260K's context is 512
  expect_clean_failure("generate " + kModel + " --prompt-ids " + ids, "context");
}

TEST(Cli, NotAModelFile) {
  expect_clean_failure("info --model " + test::shared_path("models/stories260K/greedy_from_bos_256.json"), "not a model");
}

TEST(Cli, InfoDescribesStories260K) {
  const auto r = test::run_specq("info --json " + kModel);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["hidden_size"], 64);
  EXPECT_EQ(j["num_kv_heads"], 4);
  EXPECT_EQ(j["parameters"], 260032);
  EXPECT_EQ(j["weight_bytes"], 260032 * 4);
}

TEST(Cli, SampledGenerationIsSeededAndStopsAtMaxTokens) {
  const std::string args = "generate " + kModel + " --prompt-ids \"\" --temperature 0.8 --top-p 0.9 --top-k 40 --seed 7 --max-new-tokens 20 --json";
  const auto a = test::run_specq(args), b = test::run_specq(args);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  const auto ja = nlohmann::json::parse(a.out), jb = nlohmann::json::parse(b.out);
  EXPECT_EQ(ja["token_ids"], jb["token_ids"]);
  EXPECT_LE(ja["new_tokens"].get<int>(), 20);
}

TEST(Cli, BenchRunsOnTheCpu) {
  const auto r = test::run_specq("bench --model synthetic:tiny --prompt-tokens 16 --new-tokens 8 --tokens-per-forward 1,4 --repeats 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["tokens_per_second"].get<double>(), 0.0);
  EXPECT_GT(j["gb_per_second"].get<double>(), 0.0);
  EXPECT_GT(j["floor_fraction"].get<double>(), 0.0);
  EXPECT_TRUE(j["forward_ms_by_tokens"].contains("4"));
}

}  // namespace
}  // namespace specq

namespace specq {
namespace {

TEST(CliTokenize, MatchesTheLibraryForTextAndChat) {
  const std::string input = ::testing::TempDir() + "/tokenize_input.jsonl";
  {
    std::ofstream f(input);
    f << R"({"text": "Hello world, it's 2026!"})" << "\n"
      << R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]})" << "\n";
  }
  const auto r = test::run_specq("tokenize --model " + test::shared_path("tokenizers/llama3") + " --input " + input);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string first, second;
  std::getline(lines, first);
  std::getline(lines, second);
  const auto tokenizer = Tokenizer::load(test::shared_path("tokenizers/llama3"));
  EXPECT_EQ(nlohmann::json::parse(first)["ids"].get<std::vector<int32_t>>(),
            tokenizer->encode("Hello world, it's 2026!", false));
  const auto chat = nlohmann::json::parse(second);
  EXPECT_EQ(chat["ids"].get<std::vector<int32_t>>(), tokenizer->encode(chat["text"].get<std::string>(), false));
  EXPECT_EQ(chat["ids"][0], 128000);  // <|begin_of_text|> from the template
}

TEST(CliChat, UsesTheTemplateOverrideAndRejectsModelsWithoutOne) {
  const std::string base = "generate --model " + test::stories260k() + " --prompt \"Tell a story\" --chat --max-new-tokens 3 --json";
  const auto with_override = test::run_specq(base + " --chat-template llama2 --system \"Be kind\"");
  ASSERT_EQ(with_override.exit_code, 0) << with_override.err;
  const auto plain = test::run_specq("generate --model " + test::stories260k() + " --prompt \"Tell a story\" --max-new-tokens 3 --json");
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  // The template adds [INST] <<SYS>> ... around the text: many more prompt tokens.
  EXPECT_GT(nlohmann::json::parse(with_override.out)["prompt_tokens"].get<int>(),
            nlohmann::json::parse(plain.out)["prompt_tokens"].get<int>() + 5);
  expect_clean_failure(base, "template");
  expect_clean_failure("generate --model " + test::stories260k() + " --prompt hi --system x", "--system needs --chat");
}

}  // namespace
}  // namespace specq
