#include "server/chat_prompt.h"

namespace specq::server {

ChatPrompt plain_chat_prompt(const std::vector<ChatTurn>& turns) {
  ChatPrompt prompt;
  for (const ChatTurn& turn : turns) {
    const char* label = turn.role == "system" ? "System" : turn.role == "assistant" ? "Assistant" : "User";
    prompt.text += std::string(label) + ": " + turn.content + "\n";
  }
  prompt.text += "Assistant:";
  prompt.stops = {"\nUser:"};
  return prompt;
}

}  // namespace specq::server
