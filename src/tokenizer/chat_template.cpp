#include "tokenizer/chat_template.h"

#include <ctime>

#include "core/error.h"
#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace specq {

namespace {

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

// Python's str.isspace(), which Jinja's `trim` filter and str.strip() use.
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

std::string python_strip(std::string_view text) { return std::string(utf8::trim(text, is_python_space)); }

// The system prompt a ChatML template writes as a literal ('<|im_start|>system\n...<|im_end|>'), if any.
std::string chatml_default_system_prompt(std::string_view jinja) {
  static const Regex literal_system(R"(<\|im_start\|>system(?:\\n|\n)([^'"{}]*?)<\|im_end\|>)");
  std::vector<MatchSpan> matches;
  literal_system.find_all(jinja, matches);
  if (matches.empty()) return "";
  constexpr std::string_view kOpen = "<|im_start|>system";
  constexpr std::string_view kClose = "<|im_end|>";
  std::string_view body = jinja.substr(matches[0].begin + kOpen.size(), matches[0].end - matches[0].begin - kOpen.size() - kClose.size());
  body.remove_prefix(body.starts_with("\\n") ? 2 : 1);
  // Undo the Jinja string-literal escapes that such prompts use.
  std::string prompt;
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] == '\\' && i + 1 < body.size() && body[i + 1] == 'n') {
      prompt += '\n';
      ++i;
    } else {
      prompt += body[i];
    }
  }
  return prompt;
}

void check_messages(const std::vector<ChatMessage>& messages) {
  for (size_t i = 0; i < messages.size(); ++i) {
    utf8::check_valid(messages[i].role, fmt::format("role of message {}", i));
    utf8::check_valid(messages[i].content, fmt::format("content of message {}", i));
  }
}

std::string render_llama3(const ChatTemplateKind& kind, const std::vector<ChatMessage>& messages,
                          bool add_generation_prompt, std::string_view bos_token) {
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i == 0) out += bos_token;
    out += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n" + python_strip(messages[i].content) +
           "<|eot_id|>";
  }
  if (add_generation_prompt || kind.generation_prompt_always) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// Today's date as transformers' strftime_now("%d %b %Y") writes it (local time; "%b" in the C locale).
std::string local_date_string() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  SPECQ_CHECK(localtime_r(&now, &local) != nullptr, "cannot read the local date for the chat template");
  char buffer[32];
  const size_t length = std::strftime(buffer, sizeof(buffer), "%d %b %Y", &local);
  SPECQ_CHECK(length > 0, "cannot format the local date for the chat template");
  return std::string(buffer, length);
}

// Llama 3.1/3.2/3.3 Instruct without tools: a system header always comes first (knowledge cutoff, date, then the
// trimmed system message if the conversation starts with one); the other messages are rendered as in Llama 3.
std::string render_llama31(const ChatTemplateKind& kind, const std::vector<ChatMessage>& messages,
                           bool add_generation_prompt, std::string_view bos_token) {
  // transformers refuses an empty conversation before the template runs.
  SPECQ_CHECK(!messages.empty(), "cannot apply the Llama 3.1 chat template to an empty conversation");
  const bool has_system = messages[0].role == "system";
  std::string out(bos_token);
  out += "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: ";
  out += kind.date_string.empty() ? local_date_string() : kind.date_string;
  out += "\n\n";
  if (has_system) out += python_strip(messages[0].content);
  out += "<|eot_id|>";
  for (size_t i = has_system ? 1 : 0; i < messages.size(); ++i) {
    const ChatMessage& message = messages[i];
    SPECQ_CHECK(message.role != "tool" && message.role != "ipython",
                "message {} has role \"{}\": tool calling is not supported by the built-in Llama 3.1 chat template", i,
                message.role);
    out += "<|start_header_id|>" + message.role + "<|end_header_id|>\n\n" + python_strip(message.content) + "<|eot_id|>";
  }
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

std::string render_llama2(const std::vector<ChatMessage>& messages, std::string_view bos_token,
                          std::string_view eos_token) {
  const bool has_system = !messages.empty() && messages[0].role == "system";
  std::string out;
  for (size_t i = has_system ? 1 : 0, turn = 0; i < messages.size(); ++i, ++turn) {
    const ChatMessage& message = messages[i];
    SPECQ_CHECK((message.role == "user") == (turn % 2 == 0),
                "Conversation roles must alternate user/assistant/user/assistant/... (message {} is \"{}\")", i,
                message.role);
    std::string content = message.content;
    if (turn == 0 && has_system) content = "<<SYS>>\n" + messages[0].content + "\n<</SYS>>\n\n" + content;
    if (message.role == "user") {
      out.append(bos_token).append("[INST] ").append(python_strip(content)).append(" [/INST]");
    } else if (message.role == "assistant") {
      out.append(" ").append(python_strip(content)).append(" ").append(eos_token);
    }
  }
  return out;
}

std::string render_chatml(const ChatTemplateKind& kind, const std::vector<ChatMessage>& messages,
                          bool add_generation_prompt) {
  std::string out;
  if (!kind.default_system_prompt.empty() && !messages.empty() && messages[0].role != "system")
    out += "<|im_start|>system\n" + kind.default_system_prompt + "<|im_end|>\n";
  for (const ChatMessage& message : messages)
    out += "<|im_start|>" + message.role + "\n" + message.content + "<|im_end|>\n";
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

// Llama 3.1/3.2/3.3 Instruct. Without tools their templates write, unconditionally and at the top level, a system
// header with the knowledge cutoff and date and the trimmed system message, then each message as Llama 3 does. The
// markers below pin that down; variants that write the header only for a system message are refused.
ChatTemplateKind recognize_llama31(std::string_view jinja, std::string_view hint) {
  static constexpr std::string_view kMarkers[] = {
      "{{- bos_token }}",
      "\n{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}",
      "\n{{- \"Cutting Knowledge Date: December 2023\\n\" }}",
      "\n{{- \"Today Date: \" + date_string + \"\\n\\n\" }}",
      "{%- set system_message = messages[0]['content']|trim %}",
      "\n{{- system_message }}",
      "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>'",
      "{%- if add_generation_prompt %}\n    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}",
  };
  for (const std::string_view marker : kMarkers)
    SPECQ_CHECK(contains(jinja, marker), "unrecognized Llama 3.1 style chat template (it lacks {:?}){}", marker, hint);
  ChatTemplateKind kind{ChatFormat::kLlama31, "", false, ""};
  // Llama 3.2's template takes today's date from strftime_now (transformers defines it); 3.1's has a fixed default.
  if (contains(jinja, "strftime_now")) return kind;
  constexpr std::string_view kDefault = "{%- set date_string = \"";
  const size_t begin = jinja.find(kDefault);
  const size_t end = begin == std::string_view::npos ? begin : jinja.find('"', begin + kDefault.size());
  SPECQ_CHECK(end != std::string_view::npos, "unrecognized Llama 3.1 style chat template (no default date_string){}",
              hint);
  kind.date_string = std::string(jinja.substr(begin + kDefault.size(), end - begin - kDefault.size()));
  return kind;
}

}  // namespace

ChatTemplateKind recognize_chat_template(std::string_view jinja) {
  const std::string hint = fmt::format("; pass a chat template override ({}) to use a built-in one", kChatTemplateNames);
  if (contains(jinja, "<|start_header_id|>") && contains(jinja, "<|end_header_id|>") && contains(jinja, "<|eot_id|>")) {
    if (contains(jinja, "Cutting Knowledge Date")) return recognize_llama31(jinja, hint);
    SPECQ_CHECK(!contains(jinja, "tools"), "Llama 3 style chat templates with tool calling are not supported{}", hint);
    SPECQ_CHECK(contains(jinja, "| trim") || contains(jinja, "|trim"),
                "unrecognized Llama 3 style chat template (message content is not trimmed){}", hint);
    return {ChatFormat::kLlama3, "", !contains(jinja, "add_generation_prompt"), ""};
  }
  if (contains(jinja, "[INST]") && contains(jinja, "[/INST]") && contains(jinja, "<<SYS>>")) {
    SPECQ_CHECK(!contains(jinja, "in messages[0]['content']"),
                "unrecognized Llama 2 chat template variant (built-in default system prompt){}", hint);
    return {ChatFormat::kLlama2, "", false, ""};
  }
  if (contains(jinja, "<|im_start|>") && contains(jinja, "<|im_end|>")) {
    SPECQ_CHECK(!contains(jinja, "tool"), "ChatML chat templates with tool calling are not supported{}", hint);
    return {ChatFormat::kChatML, chatml_default_system_prompt(jinja), false, ""};
  }
  fail("unknown chat template (not Llama 3, Llama 2 or ChatML){}", hint);
}

ChatTemplateKind chat_template_by_name(std::string_view name) {
  if (name == "llama3") return {ChatFormat::kLlama3, "", false, ""};
  if (name == "llama3.1") return {ChatFormat::kLlama31, "", false, "26 Jul 2024"};
  if (name == "llama3.2") return {ChatFormat::kLlama31, "", false, ""};
  if (name == "llama2") return {ChatFormat::kLlama2, "", false, ""};
  if (name == "chatml") return {ChatFormat::kChatML, "", false, ""};
  fail("unknown chat template name \"{}\" (expected {})", name, kChatTemplateNames);
}

ChatTemplateKind resolve_chat_template(const Tokenizer& tokenizer, const std::optional<std::string>& override_name) {
  if (override_name) return chat_template_by_name(*override_name);
  const auto jinja = tokenizer.chat_template();
  SPECQ_CHECK(jinja.has_value(),
              "the tokenizer has no chat template (tokenizer_config.json chat_template); pass an override ({})",
              kChatTemplateNames);
  return recognize_chat_template(*jinja);
}

std::string render_chat(const ChatTemplateKind& kind, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt, std::string_view bos_token, std::string_view eos_token) {
  check_messages(messages);
  switch (kind.format) {
    case ChatFormat::kLlama3:
      return render_llama3(kind, messages, add_generation_prompt, bos_token);
    case ChatFormat::kLlama31:
      return render_llama31(kind, messages, add_generation_prompt, bos_token);
    case ChatFormat::kLlama2:
      return render_llama2(messages, bos_token, eos_token);
    case ChatFormat::kChatML:
      return render_chatml(kind, messages, add_generation_prompt);
  }
  fail("unknown chat format");
}

}  // namespace specq
