// Chat templates: the Jinja templates of known model families are recognized and rendered by built-in C++
// renderers that produce exactly what transformers' apply_chat_template(..., tokenize=False) produces.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace specq {

class Tokenizer;

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

enum class ChatFormat {
  kLlama3,  // <|start_header_id|>role<|end_header_id|>\n\n content <|eot_id|>
  kLlama2,  // <s>[INST] <<SYS>>...<</SYS>> user [/INST] assistant </s>
  kChatML,  // <|im_start|>role\n content <|im_end|>\n  (Qwen2, SmolLM2, ...)
};

struct ChatTemplateKind {
  ChatFormat format;
  // ChatML variants (Qwen2, SmolLM2) insert a system message when the conversation does not start with one.
  std::string default_system_prompt;
  // Some Llama 3 templates append the assistant header whether or not a generation prompt is asked for.
  bool generation_prompt_always = false;
};

// Maps a Jinja chat template to the renderer that reproduces it; throws specq::Error for templates it does
// not know (the message suggests the override names).
ChatTemplateKind recognize_chat_template(std::string_view jinja);

// The override names "llama3", "llama2" and "chatml" (the families' standard templates).
ChatTemplateKind chat_template_by_name(std::string_view name);

// The override if given, else the tokenizer's own template (an error if it has none).
ChatTemplateKind resolve_chat_template(const Tokenizer& tokenizer, const std::optional<std::string>& override_name);

// Throws specq::Error where the original template raises (Llama 2: roles must alternate user/assistant).
std::string render_chat(const ChatTemplateKind& kind, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt, std::string_view bos_token, std::string_view eos_token);

}  // namespace specq
