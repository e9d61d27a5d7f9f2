#include "tokenizer/tokenize_jsonl.h"

#include <istream>
#include <nlohmann/json.hpp>
#include <ostream>

#include "core/error.h"
#include "tokenizer/chat_template.h"

namespace specq {

namespace {

using json = nlohmann::json;

std::vector<ChatMessage> parse_messages(const json& messages) {
  SPECQ_CHECK(messages.is_array() && !messages.empty(), "\"messages\" must be a non-empty array");
  std::vector<ChatMessage> parsed;
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& message = messages[i];
    SPECQ_CHECK(message.is_object() && message.contains("role") && message["role"].is_string() &&
                    message.contains("content") && message["content"].is_string(),
                "message {} must be an object with string \"role\" and \"content\"", i);
    parsed.push_back({message["role"].get<std::string>(), message["content"].get<std::string>()});
  }
  return parsed;
}

}  // namespace

int run_tokenize_jsonl(const Tokenizer& tokenizer, std::istream& in, std::ostream& out, bool add_special,
                       const std::optional<std::string>& chat_template_override) {
  // Resolved on the first chat line only, so plain-text inputs work with tokenizers that have no template.
  std::optional<ChatTemplateKind> chat_kind;
  std::string line;
  for (size_t line_number = 1; std::getline(in, line); ++line_number) {
    try {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      SPECQ_CHECK(!line.empty(), "empty line");
      json input;
      try {
        input = json::parse(line);
      } catch (const json::exception& error) {
        fail("not valid JSON: {}", error.what());
      }
      SPECQ_CHECK(input.is_object(), "expected a JSON object");
      const bool has_text = input.contains("text"), has_messages = input.contains("messages");
      SPECQ_CHECK(has_text != has_messages, "expected exactly one of \"text\" and \"messages\"");
      json output;
      if (has_text) {
        SPECQ_CHECK(input["text"].is_string(), "\"text\" must be a string");
        output["ids"] = tokenizer.encode(input["text"].get<std::string>(), add_special);
      } else {
        const std::vector<ChatMessage> messages = parse_messages(input["messages"]);
        if (!chat_kind) chat_kind = resolve_chat_template(tokenizer, chat_template_override);
        const std::string text = render_chat(*chat_kind, messages, true, tokenizer.bos_token(), tokenizer.eos_token());
        output["text"] = text;
        output["ids"] = tokenizer.encode(text, add_special);
      }
      out << output.dump() << '\n';
    } catch (const Error& error) {
      fail("input line {}: {}", line_number, error.what());
    }
  }
  SPECQ_CHECK(!in.bad(), "error reading the input");
  out.flush();
  return 0;
}

}  // namespace specq
