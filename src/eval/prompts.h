// The prompts of the seed's harness (seed-spec 5.1, 5.4) built over a PromptFormat: the model's chat
// template when it has one, else a plain "User:/Assistant:" layout (recorded in the answer file).
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/chat_template.h"

namespace specq {
class Tokenizer;
}

namespace specq::eval {

using Message = ChatMessage;

class PromptFormat {
 public:
  virtual ~PromptFormat() = default;
  // "llama3", "llama3.1", "llama2", "chatml" (the tokenizer's template) or "plain".
  virtual std::string name() const = 0;
  // True for the plain layout used when the model has no chat template.
  virtual bool is_fallback() const = 0;
  virtual std::string render(const std::vector<Message>& messages, bool add_generation_prompt) const = 0;
  // Chat templates write the BOS token into the text themselves, and the seed encodes their output with
  // add_special_tokens=False; the plain layout relies on the tokenizer adding it.
  virtual bool encode_with_special_tokens() const = 0;
};

// "System: ...\n\nUser: ...\n\nAssistant: ...\n\n" ending in "Assistant:" for a generation prompt.
std::unique_ptr<PromptFormat> plain_prompt_format();

// The model's own chat template (through the tokenizer's renderer); the plain layout when the tokenizer
// has none. `override_name` (one of kChatTemplateNames; "" = none) replaces the tokenizer's template.
std::unique_ptr<PromptFormat> prompt_format_for(const Tokenizer& tokenizer, const std::string& override_name);

// The Llama-2 safety system prompt the seed's MT-Bench/Spec-Bench harness puts first, verbatim.
extern const std::string_view kSeedSystemPrompt;

// Messages of turn `turn` (0-based) of a multi-turn question: the system prompt, then the user turns
// 0..turn with the model's (post-processed) answers to the earlier ones in between.
std::vector<Message> chat_messages(const std::vector<std::string>& user_turns,
                                   const std::vector<std::string>& previous_answers, size_t turn);

// The EvalPlus-style HumanEval prompt: the instruction with the task's code in a markdown block, and
// the assistant's reply opened up to inside a ```python block, so the model writes the code next.
std::string humaneval_prompt(const PromptFormat& format, std::string_view task_prompt);

// Python's str.strip() (Unicode whitespace as str.isspace() defines it).
std::string python_strip(std::string_view text);

}  // namespace specq::eval
