// specq frspec build: the FR-Spec token map of a model from a corpus (spec/frspec.h). As FR-Spec's
// fr.py: tokenize the first --num-lines documents with the model's tokenizer, count, keep the V most
// frequent ids, force the end-of-sequence ids in.
#include <fmt/core.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/session.h"
#include "core/error.h"
#include "data/text_file.h"
#include "spec/frspec.h"

namespace specq::cli {
namespace {

// A document's text: a JSON object's "text", else every string inside it (MT-Bench "turns", chat
// "messages"); any other line as it is.
void collect_strings(const nlohmann::json& value, std::string& out) {
  if (value.is_string()) {
    if (!out.empty()) out += '\n';
    out += value.get<std::string>();
  } else if (value.is_array() || value.is_object()) {
    for (const auto& item : value) collect_strings(item, out);
  }
}

std::string document_text(const std::string& line) {
  if (line.empty() || line.front() != '{') return line;
  const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return line;
  std::string text;
  if (j.contains("text") && j["text"].is_string()) return j["text"].get<std::string>();
  collect_strings(j, text);
  return text;
}

}  // namespace

Command add_frspec(CLI::App& app) {
  auto* sub = app.add_subcommand("frspec", "FR-Spec token maps for EAGLE draft heads");
  sub->require_subcommand(1);
  auto* build = sub->add_subcommand("build", "Count a corpus's tokens and keep the V most frequent");
  auto session_flags = std::make_shared<SessionFlags>();
  auto corpus = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto vocab_size = std::make_shared<int>(0);
  auto num_lines = std::make_shared<int64_t>(1000000);
  build->add_option("--model", session_flags->model, "Model whose tokenizer counts (path or synthetic:NAME)")
      ->required();
  build->add_option("--tokenizer", session_flags->tokenizer, "Tokenizer (default: the one next to the model)");
  build->add_option("--corpus", *corpus, "Text corpus: one document per line, or JSON lines (\"text\", or all strings)")
      ->required();
  build->add_option("--vocab-size", *vocab_size, "Tokens to keep (V)")->required();
  build->add_option("--num-lines", *num_lines, "Documents read at most")->capture_default_str();
  build->add_option("--out", *out, "Output token map (.safetensors)")->required();
  auto run = [=]() -> int {
    SPECQ_CHECK(*num_lines >= 1, "--num-lines must be >= 1 (got {})", *num_lines);
    const Session session = open_session(*session_flags);
    SPECQ_CHECK(session.tokenizer != nullptr, "model '{}' has no tokenizer; give --tokenizer", session_flags->model);
    const int vocab = session.model.config.vocab_size;
    SPECQ_CHECK(*vocab_size >= 1 && *vocab_size <= vocab, "--vocab-size must be in [1, {}] (got {})", vocab,
                *vocab_size);
    std::istringstream lines(read_text_file(*corpus));
    TokenFrequencies frequencies;
    frequencies.counts.assign(size_t(vocab), 0);
    std::string line;
    while (int64_t(frequencies.documents) < *num_lines && std::getline(lines, line)) {
      const std::string text = document_text(line);
      if (text.empty()) continue;
      frequencies.add(session.tokenizer->encode(text, false));
    }
    SPECQ_CHECK(frequencies.tokens > 0, "--corpus '{}' holds no text", *corpus);
    std::vector<int32_t> forced;
    for (const int id : session.stop_ids()) forced.push_back(id);
    const std::vector<int32_t> ids = frequency_ranked_vocab(frequencies, *vocab_size, forced);
    uint64_t covered = 0;
    for (const int32_t id : ids) covered += frequencies.counts[size_t(id)];
    const double coverage = double(covered) / double(frequencies.tokens);
    save_token_map(*out, ids,
                   {{"format", "specq-frspec"},
                    {"model", session_flags->model},
                    {"vocab_size", std::to_string(vocab)},
                    {"corpus", *corpus},
                    {"documents", std::to_string(frequencies.documents)},
                    {"tokens", std::to_string(frequencies.tokens)}});
    const nlohmann::json summary = {{"out", *out},           {"kept", ids.size()},
                                    {"vocab_size", vocab},   {"documents", frequencies.documents},
                                    {"tokens", frequencies.tokens}, {"coverage", coverage}};
    fmt::print("{}\n", summary.dump());
    return 0;
  };
  return {build, run};
}

}  // namespace specq::cli
