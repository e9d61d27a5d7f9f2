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
  kLlama3,   // <|start_header_id|>role<|end_header_id|>\n\n content <|eot_id|>
  kLlama31,  // Llama 3.1+: as kLlama3, after a system header with the knowledge cutoff and today's date
  kLlama2,   // <s>[INST] <<SYS>>...<</SYS>> user [/INST] assistant </s>
  kChatML,   // <|im_start|>role\n content <|im_end|>\n  (Qwen2, SmolLM2, ...)
};

struct ChatTemplateKind {
  ChatFormat format;
  // ChatML variants (Qwen2, SmolLM2) insert a system message when the conversation does not start with one.
  std::string default_system_prompt;
  // Some Llama 3 templates append the assistant header whether or not a generation prompt is asked for.
  bool generation_prompt_always = false;
  // Llama 3.1+: the "Today Date: " the template writes ("26 Jul 2024" in Llama 3.1's); empty for templates that
  // ask for the current date (Llama 3.2's strftime_now), which render_chat reads from the local clock.
  std::string date_string;
};

// The names chat_template_by_name accepts, for help texts and error messages.
inline constexpr std::string_view kChatTemplateNames = "llama3, llama3.1, llama3.2, llama2 or chatml";

// Maps a Jinja chat template to the renderer that reproduces it; throws specq::Error for templates it does
// not know (the message suggests the override names).
ChatTemplateKind recognize_chat_template(std::string_view jinja);

// The override names of kChatTemplateNames (the families' standard templates; llama3.1 dates its system header
// 26 Jul 2024 like Llama 3.1's template, llama3.2 today like Llama 3.2's).
ChatTemplateKind chat_template_by_name(std::string_view name);

// The override if given, else the tokenizer's own template (an error if it has none).
ChatTemplateKind resolve_chat_template(const Tokenizer& tokenizer, const std::optional<std::string>& override_name);

// Throws specq::Error where the original template raises (Llama 2: roles must alternate user/assistant) and for
// what the built-in renderers leave out (Llama 3.1+: tool and ipython messages, an empty conversation).
std::string render_chat(const ChatTemplateKind& kind, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt, std::string_view bos_token, std::string_view eos_token);

}  // namespace specq
