// specq tokenize: JSON lines of text or chat messages in, token ids out (one line per line).
#include <filesystem>
#include <fstream>
#include <iostream>

#include <fmt/core.h>

#include "cli/commands.h"
#include "core/error.h"
#include "io/loader.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenize_jsonl.h"

namespace specq::cli {

Command add_tokenize(CLI::App& app) {
  auto* sub = app.add_subcommand("tokenize", "Tokenize JSON lines of {\"text\"} or {\"messages\"}");
  auto model = std::make_shared<std::string>();
  auto input = std::make_shared<std::string>();
  auto add_special = std::make_shared<bool>(false);
  auto chat_template = std::make_shared<std::string>();
  sub->add_option("--model", *model, "Model or tokenizer directory (or a tokenizer file)")->required();
  sub->add_option("--input", *input, "JSON-lines file; - for standard input")->required();
  sub->add_flag("--add-special", *add_special, "Add the tokenizer's special tokens (BOS) to plain text");
  sub->add_option("--chat-template", *chat_template, fmt::format("Chat template override: {}", kChatTemplateNames));
  auto run = [=]() -> int {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path path(*model);
    // A tokenizer-only directory or file is enough; otherwise the tokenizer next to the model.
    std::string tokenizer_path = *model;
    if (!fs::exists(path / "tokenizer.json", ec) && !(fs::is_regular_file(path, ec) && path.extension() == ".json")) {
      const Model m = load_model(*model);
      SPECQ_CHECK(!m.tokenizer_path.empty(), "model '{}' has no tokenizer", *model);
      tokenizer_path = m.tokenizer_path;
    }
    const auto tokenizer = Tokenizer::load(tokenizer_path);
    const std::optional<std::string> override_name =
        chat_template->empty() ? std::nullopt : std::optional<std::string>(*chat_template);
    if (*input == "-") return run_tokenize_jsonl(*tokenizer, std::cin, std::cout, *add_special, override_name);
    std::ifstream in(*input);
    SPECQ_CHECK(in.good(), "cannot open --input '{}'", *input);
    return run_tokenize_jsonl(*tokenizer, in, std::cout, *add_special, override_name);
  };
  return {sub, run};
}

}  // namespace specq::cli
