// The `specq tokenize` logic: JSONL in, ids (and rendered chat text) out, errors naming the line.
#include "tokenizer/tokenize_jsonl.h"

#include <gtest/gtest.h>

#include <sstream>

#include "core/error.h"
#include "tokenizer_test_util.h"

namespace specq {
namespace {

using testing::load_fixture;
using testing::shared_path;

const Tokenizer& llama3() {
  static const auto tokenizer = Tokenizer::load(shared_path("tokenizers/llama3"));
  return *tokenizer;
}

std::vector<nlohmann::json> run_lines(const std::string& input, bool add_special,
                                      const std::optional<std::string>& override_name = std::nullopt) {
  std::istringstream in(input);
  std::ostringstream out;
  EXPECT_EQ(run_tokenize_jsonl(llama3(), in, out, add_special, override_name), 0);
  std::vector<nlohmann::json> lines;
  std::istringstream result(out.str());
  for (std::string line; std::getline(result, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

TEST(TokenizeJsonl, TextAndMessagesLines) {
  const nlohmann::json golden = load_fixture("chat_goldens.json");
  const nlohmann::json* chat_case = nullptr;
  for (const auto& golden_case : golden["cases"])
    if (golden_case["template"] == "llama3" && golden_case["add_generation_prompt"] == true && golden_case["messages"].size() > 2) {
      chat_case = &golden_case;
      break;
    }
  ASSERT_NE(chat_case, nullptr);
  const std::string input = R"({"text": "Hello world"})"
                            "\n" +
                            nlohmann::json{{"messages", (*chat_case)["messages"]}}.dump() + "\n" + R"({"text": ""})" + "\n";
  const auto lines = run_lines(input, false);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], (nlohmann::json{{"ids", {9906, 1917}}}));
  EXPECT_EQ(lines[1]["text"], (*chat_case)["rendered"]);
  EXPECT_EQ(lines[1]["ids"], (*chat_case)["ids"]);
  EXPECT_EQ(lines[2]["ids"], nlohmann::json::array());
}

TEST(TokenizeJsonl, TemplateOverride) {
  const auto lines = run_lines(R"({"messages": [{"role": "user", "content": "Hi"}]})", false, "chatml");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["text"], "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(TokenizeJsonl, BadLinesNameTheLine) {
  auto error_for = [](const std::string& input) -> std::string {
    std::istringstream in(input);
    std::ostringstream out;
    try {
      run_tokenize_jsonl(llama3(), in, out, false);
    } catch (const Error& error) {
      return error.what();
    }
    return "no error";
  };
  EXPECT_NE(error_for("{\"text\": \"ok\"}\n{\"text\": 5}\n").find("input line 2: \"text\" must be a string"), std::string::npos);
  EXPECT_NE(error_for("{\"text\": \"ok\"}\nnot json\n").find("input line 2: not valid JSON"), std::string::npos);
  EXPECT_NE(error_for("{\"foo\": 1}\n").find("input line 1: expected exactly one of"), std::string::npos);
  EXPECT_NE(error_for("\n").find("input line 1: empty line"), std::string::npos);
  EXPECT_NE(error_for("{\"messages\": [{\"role\": \"user\"}]}\n").find("input line 1: message 0"), std::string::npos);
  EXPECT_NE(error_for("{\"text\": \"\\udc00\"}\n").find("input line 1:"), std::string::npos);
}

}  // namespace
}  // namespace specq
