// The speculation loop: draft a tree, verify it with one forward of the verifier, keep the longest
// accepted path, tell the drafter. Greedy verification reproduces the verifier's greedy output
// exactly; sampling verification (recursive rejection over siblings) reproduces its distribution.
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "gen/generate.h"
#include "gen/sampler.h"
#include "model/runner.h"
#include "spec/drafter.h"

namespace specq {

struct SpecStats {
  int target_steps = 0;         // verifier forwards after the prefill
  int64_t accepted_drafts = 0;  // drafted tokens the verifier accepted, over all steps
  double draft_seconds = 0.0, verify_seconds = 0.0, bookkeeping_seconds = 0.0;
  // tau: tokens committed per verifier step (accepted drafts + the one the verifier adds itself).
  double mean_accepted_length() const {
    return target_steps > 0 ? double(accepted_drafts + target_steps) / double(target_steps) : 0.0;
  }
};

class Speculator {
 public:
  // Plans every buffer once from the drafter's largest tree.
  Speculator(Runner& verifier, Drafter& drafter, const SamplingOptions& sampling);

  // Prefills the prompt into the verifier's empty cache and returns the first new token (the root).
  int32_t start(std::span<const int32_t> prompt);
  // One draft + verify step. Returns the newly committed tokens (accepted drafts, then the token the
  // verifier chose after them, which is the next root); empty when the context is full.
  std::span<const int32_t> step();
  // Re-points the loop at `seq` (committed tokens, root last), keeping the cache rows that still
  // match and running the verifier over the rest. A cascade level rewinds with it.
  void reset_to(std::span<const int32_t> seq);

  // Sampling only: the distribution token j of the last step() was drawn from.
  std::span<const float> step_probs(int j) const {
    return {step_probs_.data() + size_t(j) * size_t(vocab_), size_t(vocab_)};
  }
  std::span<const int32_t> sequence() const { return seq_; }
  int max_nodes() const { return tree_.max_nodes(); }
  bool sampling() const { return context_.sampling; }
  const SpecStats& stats() const { return stats_; }

 private:
  int32_t accept_greedy(std::span<const int32_t> argmax);
  int32_t accept_sampled(std::span<const float> logits);

  Runner& verifier_;
  Drafter& drafter_;
  Sampler sampler_, draft_sampler_;
  std::mt19937_64 rng_, draft_rng_;
  DraftContext context_;
  int vocab_ = 0, hidden_size_ = 0, cache_len_ = 0;
  DraftTree tree_;
  std::vector<int32_t> seq_;        // prompt and committed tokens; seq_.back() is the root
  std::vector<int32_t> path_, rows_, fresh_, first_child_, next_sibling_, positions_;
  std::vector<uint8_t> ok_;
  std::vector<float> p_, q_, step_probs_;
  SpecStats stats_;
};

struct SpecGenerateResult {
  GenerateResult generation;
  SpecStats stats;
};

// generate() with speculation: same options, same tokens (greedy) or same distribution (sampling).
// Stops right after a stop id: tokens a step accepted beyond it are not emitted.
SpecGenerateResult speculative_generate(Runner& target, Drafter& drafter, std::span<const int32_t> prompt,
                                        const GenerateOptions& options, const TokenCallback& on_token = {});

}  // namespace specq
