// Next-token choice from logits: greedy, or sampling with temperature, top-k and top-p.
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace specq {

struct SamplingOptions {
  float temperature = 0.0f;  // 0 = greedy
  int top_k = 0;             // 0 = whole vocabulary
  float top_p = 1.0f;        // 1 = no nucleus cut
  uint64_t seed = 0;
  void validate() const;     // Error on values out of range
};

class Sampler {
 public:
  Sampler(const SamplingOptions& options, int vocab_size);
  bool greedy() const { return options_.temperature <= 0.0f; }
  // Picks a token from one row of logits; `argmax` is the row's argmax when the device computed it.
  int32_t sample(std::span<const float> logits, int32_t argmax);
  // The distribution sample() draws from (after temperature, top-k, top-p), as dense probabilities.
  void distribution(std::span<const float> logits, std::span<float> probs);

 private:
  // Fills candidates_ with the kept (token, probability) pairs, probabilities normalised.
  void keep_candidates(std::span<const float> logits);

  SamplingOptions options_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;  // planned once: vocab entries
};

}  // namespace specq
