// Encode throughput on one core over every text of ../shared/data (the texts tools/bench_hf_tokenizers.py
// feeds to Hugging Face `tokenizers`), one encode call per text, no special tokens.
#include <benchmark/benchmark.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "data/text_file.h"
#include "tokenizer/tokenizer.h"

namespace {

const std::vector<std::string>& shared_texts() {
  static const std::vector<std::string> texts = [] {
    const std::vector<std::pair<std::string, std::vector<std::string>>> sources{
        {"data/mt_bench/question.jsonl", {"turns"}},
        {"data/spec_bench/question.jsonl", {"turns"}},
        {"data/gsm8k/test.jsonl", {"question", "answer"}},
        {"data/humaneval/HumanEval.jsonl.gz", {"prompt", "canonical_solution"}},
    };
    std::vector<std::string> all;
    for (const auto& [file, fields] : sources) {
      std::istringstream lines(specq::read_text_file(std::string(SPECQ_SHARED_DIR) + "/" + file));
      for (std::string line; std::getline(lines, line);) {
        if (line.empty()) continue;
        const auto record = nlohmann::json::parse(line);
        for (const auto& field : fields) {
          const auto& value = record.at(field);
          if (value.is_array()) {
            for (const auto& item : value) all.push_back(item.get<std::string>());
          } else {
            all.push_back(value.get<std::string>());
          }
        }
      }
    }
    return all;
  }();
  return texts;
}

void encode_shared_texts(benchmark::State& state, const std::string& tokenizer_dir) {
  const auto tokenizer = specq::Tokenizer::load(std::string(SPECQ_SHARED_DIR) + "/tokenizers/" + tokenizer_dir);
  const auto& texts = shared_texts();
  size_t bytes = 0, tokens = 0;
  for (const auto& text : texts) bytes += text.size();
  for (auto _ : state) {
    tokens = 0;
    for (const auto& text : texts) {
      const auto ids = tokenizer->encode(text, false);
      tokens += ids.size();
      benchmark::DoNotOptimize(ids.data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
  state.counters["texts"] = static_cast<double>(texts.size());
  state.counters["tokens"] = static_cast<double>(tokens);
}

void BM_EncodeLlama3(benchmark::State& state) { encode_shared_texts(state, "llama3"); }
void BM_EncodeLlama2(benchmark::State& state) { encode_shared_texts(state, "llama2"); }
BENCHMARK(BM_EncodeLlama3)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_EncodeLlama2)->Unit(benchmark::kMillisecond)->MinTime(2.0);

void BM_DecodeLlama3(benchmark::State& state) {
  const auto tokenizer = specq::Tokenizer::load(std::string(SPECQ_SHARED_DIR) + "/tokenizers/llama3");
  std::vector<std::vector<int32_t>> encoded;
  size_t bytes = 0;
  for (const auto& text : shared_texts()) {
    encoded.push_back(tokenizer->encode(text, false));
    bytes += text.size();
  }
  for (auto _ : state)
    for (const auto& ids : encoded) benchmark::DoNotOptimize(tokenizer->decode(ids));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}
BENCHMARK(BM_DecodeLlama3)->Unit(benchmark::kMillisecond)->MinTime(1.0);

}  // namespace

BENCHMARK_MAIN();
