// The prompts specq eval builds equal the ones the seed's harness builds (seed-spec 5.1, 5.3, 5.4), as text
// and as token ids with the real Llama 3 tokenizer. The expected strings are written out here from the
// seed's protocol and the Llama 3 chat template (tokenizer_config.json: BOS, then per message
// "<|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>", then the assistant header).
#include <gtest/gtest.h>

#include <algorithm>

#include "eval/dataset.h"
#include "eval/gsm8k.h"
#include "eval/harness.h"
#include "eval/prompts.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace specq::eval {
namespace {

constexpr int32_t kBos = 128000, kStartHeader = 128006, kEndHeader = 128007, kEot = 128009;

const std::string kSystem =
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe.  "
    "Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. "
    "Please ensure that your responses are socially unbiased and positive in nature.\n\nIf a question does not make "
    "any sense, or is not factually coherent, explain why instead of answering something not correct. If you don't "
    "know the answer to a question, please don't share false information.";

class Llama3Prompts : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { tokenizer_ = Tokenizer::load(test::shared_path("tokenizers/llama3")).release(); }
  static void TearDownTestSuite() { delete tokenizer_; }

  // A harness that never generates: only its prompt building is used.
  EvalHarness harness(Bench bench, const PromptFormat& format, const HumanEvalExecutor* executor = nullptr) {
    EvalConfig config;
    config.bench = bench;
    return EvalHarness(config, *tokenizer_, format, Generator(), {128001, kEot}, executor);
  }
  std::vector<int32_t> encode(const std::string& text) const { return tokenizer_->encode(text, false); }
  // Ids of one rendered message: header, role, "\n\n" + content, end of turn.
  std::vector<int32_t> message_ids(const std::string& role, const std::string& content) const {
    std::vector<int32_t> ids = {kStartHeader};
    for (int32_t id : encode(role)) ids.push_back(id);
    ids.push_back(kEndHeader);
    for (int32_t id : encode("\n\n" + content)) ids.push_back(id);
    ids.push_back(kEot);
    return ids;
  }
  static size_t count(const std::vector<int32_t>& ids, int32_t id) { return size_t(std::count(ids.begin(), ids.end(), id)); }

  static Tokenizer* tokenizer_;
};
Tokenizer* Llama3Prompts::tokenizer_ = nullptr;

TEST_F(Llama3Prompts, MtBenchFirstQuestionBothTurns) {
  const auto format = prompt_format_for(*tokenizer_, "");
  ASSERT_EQ(format->name(), "llama3");
  EXPECT_FALSE(format->is_fallback());
  EvalHarness h = harness(Bench::MtBench, *format);
  const Question q = load_questions(Bench::MtBench, test::shared_path("data/mt_bench/question.jsonl"))[0];
  ASSERT_EQ(q.id, 81);
  const std::string q1 =
      "Compose an engaging travel blog post about a recent trip to Hawaii, highlighting cultural experiences and "
      "must-see attractions.";
  const std::string q2 = "Rewrite your previous response. Start every sentence with the letter A.";
  const std::string turn1 = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + kSystem +
                            "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n" + q1 +
                            "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
  EXPECT_EQ(h.prompt_text(q, {}, 0), turn1);

  // The model's first answer as the seed keeps it: cut at the first terminator, BOS/EOS strings removed,
  // stripped; the tokens after the terminator are dropped.
  std::vector<int32_t> generated = encode("  Aloha from Hawaii! <|begin_of_text|>The islands were lovely.\n");
  generated.push_back(kEot);
  for (int32_t id : encode(" junk after the end")) generated.push_back(id);
  const std::string answer = h.turn_answer_text(generated);
  EXPECT_EQ(answer, "Aloha from Hawaii! The islands were lovely.");

  const std::string turn2 = turn1 + answer + "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n" + q2 +
                            "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
  EXPECT_EQ(h.prompt_text(q, {answer}, 1), turn2);

  // As ids: one BOS, special tokens as their ids (add_special_tokens=False over text that carries them).
  std::vector<int32_t> expected = {kBos};
  for (const auto& [role, content] : std::vector<std::pair<std::string, std::string>>{
           {"system", kSystem}, {"user", q1}, {"assistant", answer}, {"user", q2}})
    for (int32_t id : message_ids(role, content)) expected.push_back(id);
  for (int32_t id : std::vector<int32_t>{kStartHeader}) expected.push_back(id);
  for (int32_t id : encode("assistant")) expected.push_back(id);
  expected.push_back(kEndHeader);
  for (int32_t id : encode("\n\n")) expected.push_back(id);
  const std::vector<int32_t> ids = h.prompt_ids(q, {answer}, 1);
  EXPECT_EQ(ids, expected);
  EXPECT_EQ(ids, encode(turn2));
  EXPECT_EQ(count(ids, kBos), 1u);
  EXPECT_EQ(count(ids, kEot), 4u);
}

TEST_F(Llama3Prompts, Gsm8kIsPlainTextWithOneBos) {
  const auto format = prompt_format_for(*tokenizer_, "");
  EvalHarness h = harness(Bench::Gsm8k, *format);
  const Question q = load_questions(Bench::Gsm8k, test::shared_path("data/gsm8k/test.jsonl"))[0];
  const std::string question =
      "Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
      "friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. "
      "How much in dollars does she make every day at the farmers' market?";
  ASSERT_EQ(q.turns[0], question);
  const std::string expected = gsm8k_exemplars() + "Q: " + question + "\nA:";  // exemplars: see eval_test
  EXPECT_EQ(h.prompt_text(q, {}, 0), expected);
  EXPECT_TRUE(expected.starts_with("Q: There are 15 trees in the grove."));
  std::vector<int32_t> ids = {kBos};  // tokenizer.encode adds BOS
  for (int32_t id : encode(expected)) ids.push_back(id);
  EXPECT_EQ(h.prompt_ids(q, {}, 0), ids);
  EXPECT_TRUE(h.bench_stop_ids().empty());  // the seed passes no terminators (bug 9, kept; documented)
}

TEST_F(Llama3Prompts, HumanEvalEvalPlusPromptWithoutADuplicatedBos) {
  const auto format = prompt_format_for(*tokenizer_, "");
  const HumanEvalExecutor executor;
  EvalHarness h = harness(Bench::HumanEval, *format, &executor);
  const Question task = load_questions(Bench::HumanEval, test::shared_path("data/humaneval/HumanEval.jsonl.gz"))[0];
  std::string code = task.turns[0];
  while (!code.empty() && (code.back() == '\n' || code.back() == ' ')) code.pop_back();  // task_prompt.strip()
  ASSERT_TRUE(code.starts_with("from typing import List"));
  const std::string expected =
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
      "Please provide a self-contained Python script that solves the following problem in a markdown code block:\n"
      "```\n" + code + "\n```<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
      "Below is a Python script with a self-contained function that solves the problem and passes corresponding "
      "tests:\n```python\n";
  EXPECT_EQ(h.prompt_text(task, {}, 0), expected);
  const std::vector<int32_t> ids = h.prompt_ids(task, {}, 0);
  EXPECT_EQ(ids, encode(expected));
  EXPECT_EQ(ids[0], kBos);
  EXPECT_EQ(count(ids, kBos), 1u);  // the seed's tokenizer.encode would add a second one (bug 10, fixed)
  EXPECT_EQ(h.bench_stop_ids(), (std::vector<int>{128001, kEot}));
}

TEST(PlainPrompts, ModelsWithoutAChatTemplateGetTheUserAssistantLayout) {
  const auto tokenizer = Tokenizer::load(test::shared_path("models/stories260K/tok512.bin"));
  ASSERT_FALSE(tokenizer->chat_template().has_value());
  const auto format = prompt_format_for(*tokenizer, "");
  EXPECT_TRUE(format->is_fallback());
  EvalConfig config;
  EvalHarness h(config, *tokenizer, *format, Generator(), {2}, nullptr);
  Question q;
  q.turns = {" Tell me a story. ", "Another one."};
  EXPECT_EQ(h.prompt_text(q, {"Once upon a time."}, 1),
            "System: " + kSystem + "\n\nUser: Tell me a story.\n\nAssistant: Once upon a time.\n\nUser: Another "
            "one.\n\nAssistant:");
  const auto ids = h.prompt_ids(q, {}, 0);
  EXPECT_EQ(ids[0], 1);  // the tokenizer's BOS, added once
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 1), 1);
}

}  // namespace
}  // namespace specq::eval
