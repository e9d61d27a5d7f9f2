// HierSpec generalised: a speculation loop over a middle model, used as a drafter for the level above.
#pragma once
#include <cstdint>

#include "spec/speculate.h"

namespace specq {

// Each draft runs the middle model's own speculation loop (drafted by `inner`: an EAGLE head, a
// draft model, or another cascade) until its committed chain holds at least min_chain tokens, and
// offers that chain. The chain is exactly the middle model's output (greedy), or a sample of it
// whose per-token distributions are recorded (sampling), so the level above verifies it like any
// chain. After verification the middle loop is re-pointed at the committed sequence, keeping the
// rows and drafter state that still match.
class CascadeDrafter final : public Drafter {
 public:
  CascadeDrafter(Runner& middle, Drafter& inner, int min_chain, const SamplingOptions& sampling);
  int max_nodes() const override { return min_chain_ + middle_.max_nodes(); }
  void committed(std::span<const int32_t> seq, int unchanged) override;
  void draft(DraftTree& tree, int max_nodes, const DraftContext& context) override;
  // The middle level's own statistics (its tau, steps and phase times).
  const SpecStats& level_stats() const { return middle_.stats(); }

 private:
  Speculator middle_;
  int min_chain_;
};

}  // namespace specq
