// Chat templates against transformers' apply_chat_template renders (tools/make_tokenizer_goldens.py).
#include "tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <ctime>

#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace specq {
namespace {

using testing::load_fixture;
using testing::shared_path;

std::vector<ChatMessage> messages_of(const nlohmann::json& golden_case) {
  std::vector<ChatMessage> messages;
  for (const auto& message : golden_case["messages"])
    messages.push_back({message["role"].get<std::string>(), message["content"].get<std::string>()});
  return messages;
}

TEST(ChatTemplate, RendersExactlyLikeTransformers) {
  const nlohmann::json golden = load_fixture("chat_goldens.json");
  const auto llama3 = Tokenizer::load(shared_path("tokenizers/llama3"));
  std::map<std::string, ChatTemplateKind> kinds;
  kinds.emplace("llama3", recognize_chat_template(*llama3->chat_template()));
  for (const auto& [name, jinja] : golden["templates"].items()) kinds.emplace(name, recognize_chat_template(jinja.get<std::string>()));

  size_t checked = 0;
  for (const auto& golden_case : golden["cases"]) {
    const std::string name = golden_case["template"].get<std::string>();
    ChatTemplateKind kind = kinds.at(name);
    // Llama 3.2's template would write today's date; its goldens were rendered with a fixed date_string.
    if (golden_case.contains("date_string")) kind.date_string = golden_case["date_string"].get<std::string>();
    const std::string rendered =
        render_chat(kind, messages_of(golden_case), golden_case["add_generation_prompt"].get<bool>(),
                    golden_case["bos_token"].get<std::string>(), golden_case["eos_token"].get<std::string>());
    EXPECT_EQ(rendered, golden_case["rendered"].get<std::string>()) << golden_case.dump();
    if (golden_case.contains("ids")) {
      EXPECT_EQ(llama3->encode(rendered, false), golden_case["ids"].get<std::vector<int32_t>>());
    }
    ++checked;
  }
  EXPECT_EQ(checked, 70u);
}

TEST(ChatTemplate, RecognizesFamilies) {
  const nlohmann::json templates = load_fixture("chat_goldens.json")["templates"];
  const auto llama3 = Tokenizer::load(shared_path("tokenizers/llama3"));
  const ChatTemplateKind shared_llama3 = recognize_chat_template(*llama3->chat_template());
  EXPECT_EQ(shared_llama3.format, ChatFormat::kLlama3);
  EXPECT_TRUE(shared_llama3.generation_prompt_always);  // this older template has no add_generation_prompt test
  EXPECT_EQ(recognize_chat_template(templates["llama2"].get<std::string>()).format, ChatFormat::kLlama2);
  const ChatTemplateKind chatml = recognize_chat_template(templates["chatml"].get<std::string>());
  EXPECT_EQ(chatml.format, ChatFormat::kChatML);
  EXPECT_EQ(chatml.default_system_prompt, "");
  EXPECT_EQ(recognize_chat_template(templates["qwen2"].get<std::string>()).default_system_prompt,
            "You are a helpful assistant.");
  EXPECT_EQ(recognize_chat_template(templates["smollm2"].get<std::string>()).default_system_prompt,
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  const ChatTemplateKind llama31 = recognize_chat_template(templates["llama3.1"].get<std::string>());
  EXPECT_EQ(llama31.format, ChatFormat::kLlama31);
  EXPECT_EQ(llama31.date_string, "26 Jul 2024");
  // The date is the template's own default, not a constant of the renderer.
  std::string redated = templates["llama3.1"].get<std::string>();
  redated.replace(redated.find("26 Jul 2024"), 11, "01 Aug 2024");
  EXPECT_EQ(recognize_chat_template(redated).date_string, "01 Aug 2024");
  const ChatTemplateKind llama32 = recognize_chat_template(templates["llama3.2"].get<std::string>());
  EXPECT_EQ(llama32.format, ChatFormat::kLlama31);
  EXPECT_EQ(llama32.date_string, "");  // today's, from strftime_now
}

// Today's date as strftime_now("%d %b %Y") gives it in transformers.
std::string today() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  if (localtime_r(&now, &local) == nullptr) return "";
  char buffer[32];
  return std::string(buffer, std::strftime(buffer, sizeof(buffer), "%d %b %Y", &local));
}

// Llama 3.2's template dates the system header today (read before and after, in case the day changes between).
TEST(ChatTemplate, Llama32UsesTodaysDate) {
  const std::string jinja = load_fixture("chat_goldens.json")["templates"]["llama3.2"].get<std::string>();
  const std::string before = today();
  const std::string rendered =
      render_chat(recognize_chat_template(jinja), {{"user", "Hi"}}, true, "<|begin_of_text|>", "<|eot_id|>");
  const std::string after = today();
  ASSERT_FALSE(before.empty());
  const auto expected = [](const std::string& date) {
    return "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
           "Today Date: " + date + "\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n";
  };
  EXPECT_TRUE(rendered == expected(before) || rendered == expected(after)) << rendered;
}

// The override names give the families' standard templates (generation prompt only when asked for).
TEST(ChatTemplate, OverrideNames) {
  const std::vector<ChatMessage> messages{{"system", "Be brief."}, {"user", " Hi "}};
  EXPECT_EQ(render_chat(chat_template_by_name("llama3"), messages, true, "<|begin_of_text|>", "<|end_of_text|>"),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(render_chat(chat_template_by_name("llama3"), messages, false, "<|begin_of_text|>", ""),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
  EXPECT_EQ(render_chat(chat_template_by_name("llama2"), messages, true, "<s>", "</s>"),
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi [/INST]");
  EXPECT_EQ(render_chat(chat_template_by_name("chatml"), messages, true, "", ""),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n Hi <|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render_chat(chat_template_by_name("llama3.1"), messages, true, "<|begin_of_text|>", "<|eot_id|>"),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
            "Today Date: 26 Jul 2024\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(chat_template_by_name("llama3.2").date_string, "");
  EXPECT_THROW(chat_template_by_name("vicuna"), Error);
}

TEST(ChatTemplate, Errors) {
  EXPECT_THROW(recognize_chat_template("{{ messages[0]['content'] }}"), Error);
  EXPECT_THROW(recognize_chat_template("<|start_header_id|><|end_header_id|><|eot_id|>Cutting Knowledge Date"), Error);
  // A Llama 3.1 style template that writes the system header only when there is a system message is refused.
  std::string conditional = load_fixture("chat_goldens.json")["templates"]["llama3.1"].get<std::string>();
  const std::string header = "\n{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}";
  ASSERT_NE(conditional.find(header), std::string::npos);
  conditional.replace(conditional.find(header), header.size(),
                      "\n{%- if system_message %}\n    {{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}");
  EXPECT_THROW(recognize_chat_template(conditional), Error);
  // Tool results and empty conversations are outside the built-in Llama 3.1 renderer (transformers refuses the latter).
  EXPECT_THROW(render_chat(chat_template_by_name("llama3.1"), {{"user", "a"}, {"tool", "42"}}, true, "", ""), Error);
  EXPECT_THROW(render_chat(chat_template_by_name("llama3.1"), {}, true, "", ""), Error);
  // Llama 2 requires user/assistant alternation, as its template's raise_exception does.
  EXPECT_THROW(render_chat(chat_template_by_name("llama2"), {{"user", "a"}, {"user", "b"}}, true, "<s>", "</s>"), Error);
  EXPECT_THROW(render_chat(chat_template_by_name("chatml"), {{"user", "bad \xFF utf8"}}, true, "", ""), Error);
  const auto llama2 = Tokenizer::load(shared_path("tokenizers/llama2"));
  EXPECT_THROW(resolve_chat_template(*llama2, std::nullopt), Error);  // its tokenizer_config has no template
  EXPECT_EQ(resolve_chat_template(*llama2, "llama2").format, ChatFormat::kLlama2);
}

}  // namespace
}  // namespace specq
