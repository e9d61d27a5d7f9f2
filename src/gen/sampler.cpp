#include "gen/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace specq {

void SamplingOptions::validate() const {
  SPECQ_CHECK(std::isfinite(temperature) && temperature >= 0.0f, "--temperature must be >= 0 (got {})", temperature);
  SPECQ_CHECK(top_k >= 0, "--top-k must be >= 0 (got {})", top_k);
  SPECQ_CHECK(std::isfinite(top_p) && top_p > 0.0f && top_p <= 1.0f, "--top-p must be in (0, 1] (got {})", top_p);
}

Sampler::Sampler(const SamplingOptions& options, int vocab_size) : options_(options), rng_(options.seed) {
  options_.validate();
  candidates_.reserve(size_t(vocab_size));
}

void Sampler::keep_candidates(std::span<const float> logits) {
  const float inv_t = 1.0f / options_.temperature;
  candidates_.clear();
  for (size_t i = 0; i < logits.size(); ++i) candidates_.emplace_back(logits[i] * inv_t, int32_t(i));
  auto by_value = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t keep = candidates_.size();
  if (options_.top_k > 0 && size_t(options_.top_k) < keep) {
    keep = size_t(options_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + std::ptrdiff_t(keep), candidates_.end(), by_value);
    candidates_.resize(keep);
  }
  const float max_logit =
      std::max_element(candidates_.begin(), candidates_.end(), [](auto& a, auto& b) { return a.first < b.first; })->first;
  double total = 0.0;
  for (auto& c : candidates_) {
    c.first = std::exp(c.first - max_logit);
    total += c.first;
  }
  for (auto& c : candidates_) c.first = float(c.first / total);
  if (options_.top_p < 1.0f) {
    // Smallest prefix (by descending probability) whose mass reaches top_p, as Hugging Face keeps it.
    std::sort(candidates_.begin(), candidates_.end(), by_value);
    double mass = 0.0;
    size_t n = 0;
    while (n < candidates_.size()) {
      mass += candidates_[n].first;
      ++n;
      if (mass >= options_.top_p) break;
    }
    candidates_.resize(n);
    for (auto& c : candidates_) c.first = float(c.first / mass);
  }
}

int32_t Sampler::sample(std::span<const float> logits, int32_t argmax) {
  if (greedy()) return argmax;
  keep_candidates(logits);
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
  double cumulative = 0.0;
  for (const auto& c : candidates_) {
    cumulative += c.first;
    if (u < cumulative) return c.second;
  }
  return candidates_.back().second;
}

void Sampler::distribution(std::span<const float> logits, std::span<float> probs) {
  std::fill(probs.begin(), probs.end(), 0.0f);
  if (greedy()) {
    probs[size_t(std::max_element(logits.begin(), logits.end()) - logits.begin())] = 1.0f;
    return;
  }
  keep_candidates(logits);
  for (const auto& c : candidates_) probs[size_t(c.second)] = c.first;
}

}  // namespace specq
