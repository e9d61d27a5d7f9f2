#include "eval/prompts.h"

#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace specq::eval {
namespace {

// str.isspace() over code points.
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

class PlainFormat : public PromptFormat {
 public:
  std::string name() const override { return "plain"; }
  bool is_fallback() const override { return true; }
  bool encode_with_special_tokens() const override { return true; }
  std::string render(const std::vector<Message>& messages, bool add_generation_prompt) const override {
    std::string out;
    for (const Message& m : messages) out += role_label(m.role) + ": " + python_strip(m.content) + "\n\n";
    if (add_generation_prompt) out += "Assistant:";
    return out;
  }

 private:
  static std::string role_label(const std::string& role) {
    if (role == "system") return "System";
    if (role == "user") return "User";
    if (role == "assistant") return "Assistant";
    return role;
  }
};

// The tokenizer's chat template, rendered by the tokenizer library's renderer.
class TemplateFormat : public PromptFormat {
 public:
  TemplateFormat(ChatTemplateKind kind, std::string bos_token, std::string eos_token)
      : kind_(std::move(kind)), bos_token_(std::move(bos_token)), eos_token_(std::move(eos_token)) {}
  std::string name() const override {
    switch (kind_.format) {
      case ChatFormat::kLlama3: return "llama3";
      case ChatFormat::kLlama31: return "llama3.1";
      case ChatFormat::kLlama2: return "llama2";
      case ChatFormat::kChatML: return "chatml";
    }
    return "template";
  }
  bool is_fallback() const override { return false; }
  bool encode_with_special_tokens() const override { return false; }
  std::string render(const std::vector<Message>& messages, bool add_generation_prompt) const override {
    return render_chat(kind_, messages, add_generation_prompt, bos_token_, eos_token_);
  }

 private:
  ChatTemplateKind kind_;
  std::string bos_token_, eos_token_;
};

// EvalPlus's instruction and response prefixes and its splitter, as the seed uses them.
constexpr std::string_view kInstructionPrefix =
    "Please provide a self-contained Python script that solves the following problem in a markdown code block:";
constexpr std::string_view kResponsePrefix =
    "Below is a Python script with a self-contained function that solves the problem and passes corresponding "
    "tests:";
constexpr std::string_view kSplitter = "-[[]]-this-is-really-our-highest-priority-[[]]-";

}  // namespace

const std::string_view kSeedSystemPrompt =
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being "
    "safe.  Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal "
    "content. Please ensure that your responses are socially unbiased and positive in nature.\n\nIf a question "
    "does not make any sense, or is not factually coherent, explain why instead of answering something not "
    "correct. If you don't know the answer to a question, please don't share false information.";

std::unique_ptr<PromptFormat> plain_prompt_format() { return std::make_unique<PlainFormat>(); }

std::unique_ptr<PromptFormat> prompt_format_for(const Tokenizer& tokenizer, const std::string& override_name) {
  if (override_name.empty() && !tokenizer.chat_template().has_value()) return plain_prompt_format();
  const std::optional<std::string> name = override_name.empty() ? std::nullopt : std::optional(override_name);
  return std::make_unique<TemplateFormat>(resolve_chat_template(tokenizer, name), tokenizer.bos_token(),
                                          tokenizer.eos_token());
}

std::vector<Message> chat_messages(const std::vector<std::string>& user_turns,
                                   const std::vector<std::string>& previous_answers, size_t turn) {
  std::vector<Message> messages = {{"system", std::string(kSeedSystemPrompt)}};
  for (size_t i = 0; i <= turn && i < user_turns.size(); ++i) {
    messages.push_back({"user", user_turns[i]});
    if (i < turn && i < previous_answers.size()) messages.push_back({"assistant", previous_answers[i]});
  }
  return messages;
}

std::string humaneval_prompt(const PromptFormat& format, std::string_view task_prompt) {
  const std::string user =
      std::string(kInstructionPrefix) + "\n```\n" + python_strip(task_prompt) + "\n```\n";
  const std::string response = std::string(kResponsePrefix) + "\n```python\n" + std::string(kSplitter) + "\n```\n";
  const std::string text = format.render({{"user", user}, {"assistant", response}}, false);
  return text.substr(0, text.find(kSplitter));
}

std::string python_strip(std::string_view text) { return std::string(utf8::trim(text, is_python_space)); }

}  // namespace specq::eval
