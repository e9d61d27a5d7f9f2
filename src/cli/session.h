// What generate, bench, eval and serve share: flags that pick a model, a device and a tokenizer,
// and the loaded objects behind them.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/runner.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

namespace specq::cli {

struct SessionFlags {
  std::string model;
  std::string tokenizer;       // "" = the one next to the model
  std::string device = "cpu";
  std::string dtype = "f16";   // CUDA activations: f16 | bf16
  int max_context = 0;
  int threads = 0;
  bool chat = false;
  std::string system;
  std::string chat_template;   // override: a name of kChatTemplateNames (tokenizer/chat_template.h)
};

void add_session_flags(CLI::App& app, SessionFlags& flags);
void add_chat_flags(CLI::App& app, SessionFlags& flags);

// Turns ids into text as they arrive (whole UTF-8 characters only); without a tokenizer, the ids.
class TextStreamer {
 public:
  explicit TextStreamer(const Tokenizer* tokenizer);
  std::string push(int32_t id);
  std::string finish();

 private:
  std::optional<StreamDecoder> decoder_;
};

struct Session {
  SessionFlags flags;
  Model model;
  std::unique_ptr<Tokenizer> tokenizer;  // null when the model has none we can read

  std::unique_ptr<Runner> make_runner();
  std::vector<int32_t> ids_prompt(const std::string& ids) const;  // "" = BOS alone
  std::vector<int32_t> text_prompt(const std::string& text) const;
  std::string decode(const std::vector<int32_t>& ids) const;     // "" without a tokenizer
  std::vector<int> stop_ids() const;  // the model's EOS ids and the tokenizer's end-of-turn ids
  TextStreamer streamer() const { return TextStreamer(tokenizer.get()); }
};

Session open_session(const SessionFlags& flags);

}  // namespace specq::cli
