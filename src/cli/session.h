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
  std::string chat_template;   // override: llama3 | llama2 | chatml
};

void add_session_flags(CLI::App& app, SessionFlags& flags);
void add_chat_flags(CLI::App& app, SessionFlags& flags);

// Turns ids into text as they arrive; without a tokenizer it prints the ids.
class TextStreamer {
 public:
  virtual ~TextStreamer() = default;
  virtual std::string push(int32_t id);
  virtual std::string finish() { return {}; }
};

struct Session {
  SessionFlags flags;
  Model model;
  std::unique_ptr<Runner> make_runner();
  std::vector<int32_t> ids_prompt(const std::string& ids) const;  // "" = BOS alone
  std::vector<int32_t> text_prompt(const std::string& text) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  TextStreamer streamer() const { return TextStreamer{}; }
};

Session open_session(const SessionFlags& flags);

}  // namespace specq::cli
