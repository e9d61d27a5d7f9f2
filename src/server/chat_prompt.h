// From a conversation to prompt text: the model's chat template when it has one, else a plain layout.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "server/api.h"

namespace specq::server {

struct ChatPrompt {
  std::string text;                // ends where the assistant's answer begins
  bool add_special = true;         // let the tokenizer add BOS (false when the text already holds it)
  std::vector<std::string> stops;  // stop strings the layout implies, added to the request's own
};

using ChatRenderer = std::function<ChatPrompt(const std::vector<ChatTurn>&)>;

// For models without a chat template (e.g. llama2.c stories): one "Role: content" line per message,
// then "Assistant:" for the answer, which stops at "\nUser:" so the model does not write the next turn.
//   System: Be brief.\nUser: Hi\nAssistant: Hello!\nUser: Who are you?\nAssistant:
ChatPrompt plain_chat_prompt(const std::vector<ChatTurn>& turns);

}  // namespace specq::server
