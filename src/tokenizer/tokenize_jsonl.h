// `specq tokenize --model DIR --input FILE.jsonl [--add-special] [--chat-template NAME]`, as a library call so
// the CLI only parses flags. Each input line is {"text": "..."} -> {"ids": [...]}, or {"messages": [{"role",
// "content"}, ...]} -> the chat template with a generation prompt -> {"text": "...", "ids": [...]}.
#pragma once
#include <iosfwd>
#include <optional>
#include <string>

#include "tokenizer/tokenizer.h"

namespace specq {

// Writes one output line per input line, in order. Returns 0 (the process exit status); a bad line throws
// specq::Error naming its line number. `chat_template_override` is one of kChatTemplateNames.
int run_tokenize_jsonl(const Tokenizer& tokenizer, std::istream& in, std::ostream& out, bool add_special,
                       const std::optional<std::string>& chat_template_override = std::nullopt);

}  // namespace specq
