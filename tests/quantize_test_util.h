// Helpers of the quantizer tests: stories260K samples and held-out text, perplexity, and a
// quantize-write-reload round trip.
#pragma once
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <nlohmann/json.hpp>

#include "gen/generate.h"
#include "io/hf_writer.h"
#include "io/loader.h"
#include "quant/quantize_model.h"
#include "test_util.h"

namespace specq::test {

inline std::string stories_bin() { return test::stories260k() + "/stories260K.bin"; }

inline std::vector<std::vector<int32_t>> samples(const std::string& model_path, std::vector<uint64_t> seeds,
                                                 int length) {
  Model m = load_model(model_path);
  RunnerOptions ro;
  ro.threads = 1;
  auto runner = make_cpu_runner(m, ro);
  std::vector<std::vector<int32_t>> out;
  for (uint64_t seed : seeds) {
    GenerateOptions g;
    g.max_new_tokens = length - 1;
    g.sampling.temperature = 1.0f;
    g.sampling.seed = seed;
    const std::vector<int32_t> prompt = {m.config.bos_token_id};
    std::vector<int32_t> seq = prompt;
    const GenerateResult r = generate(*runner, prompt, g);
    seq.insert(seq.end(), r.tokens.begin(), r.tokens.end());
    out.push_back(seq);
  }
  return out;
}

inline double perplexity_of(Model& m, const std::vector<std::vector<int32_t>>& seqs) {
  RunnerOptions ro;
  ro.threads = 1;
  auto runner = make_cpu_runner(m, ro);
  double log_sum = 0.0, tokens = 0.0;
  for (const auto& s : seqs) {
    log_sum += std::log(quant::perplexity(*runner, s)) * double(s.size() - 1);
    tokens += double(s.size() - 1);
  }
  return std::exp(log_sum / tokens);
}

// Quantizes a fresh copy of the model, writes it, reloads it; returns the reloaded model.
inline Model quantize_and_reload(const std::string& model_path, const quant::QuantOptions& o,
                          const std::vector<std::vector<int32_t>>& calibration, const std::filesystem::path& dir,
                          Model* in_memory = nullptr) {
  Model m = load_model(model_path);
  const quant::QuantizeSummary s = quant::quantize_model(m, o, calibration, 1, nullptr);
  write_hf_model(m, dir.string(), quant::checkpoint_write_options(o, s));
  Model reloaded = load_model(dir.string());
  if (in_memory != nullptr) *in_memory = std::move(m);
  return reloaded;
}

inline std::vector<int32_t> random_ids(uint32_t seed, int n, int vocab) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids = {1};
  while (int(ids.size()) < n) ids.push_back(int32_t(rng() % uint32_t(vocab)));
  return ids;
}

// stories260K's held-out text: 4 samples (seeds 101..104) and the 256-token greedy reference.
inline std::vector<std::vector<int32_t>> stories_held_out() {
  auto held_out = samples(stories_bin(), {101, 102, 103, 104}, 256);
  std::ifstream ref(test::stories260k() + "/greedy_from_bos_256.json");
  const nlohmann::json greedy = nlohmann::json::parse(ref);
  std::vector<int32_t> greedy_ids = {1};
  for (int id : greedy["ids"]) greedy_ids.push_back(id);
  greedy_ids.resize(256);
  held_out.push_back(greedy_ids);
  return held_out;
}

}  // namespace specq::test
