#include "spec/cascade_drafter.h"

#include <algorithm>

#include "core/error.h"
#include "core/synthetic_rng.h"

namespace specq {
namespace {

SamplingOptions reseeded(SamplingOptions options) {
  options.seed = splitmix64(options.seed ^ 0xca5cadeull);  // the middle level draws its own randomness
  return options;
}

}  // namespace

CascadeDrafter::CascadeDrafter(Runner& middle, Drafter& inner, int min_chain, const SamplingOptions& sampling)
    : middle_(middle, inner, reseeded(sampling)), min_chain_(min_chain) {
  SPECQ_CHECK(min_chain >= 1, "--cascade-min-chain must be >= 1 (got {})", min_chain);
}

void CascadeDrafter::committed(std::span<const int32_t> seq, int /*unchanged*/) { middle_.reset_to(seq); }

void CascadeDrafter::draft(DraftTree& tree, int max_nodes, const DraftContext& context) {
  SPECQ_CHECK(context.sampling == middle_.sampling(), "cascade: levels disagree on greedy vs sampling");
  int parent = 0;
  while (tree.size() - 1 < min_chain_) {
    const std::span<const int32_t> fresh = middle_.step();
    if (fresh.empty()) return;  // the middle model's context is full
    for (size_t j = 0; j < fresh.size(); ++j) {
      if (tree.size() >= max_nodes) return;  // a cut by count only: the chain stays lossless
      if (context.sampling) {
        const std::span<const float> p = middle_.step_probs(int(j));
        std::copy(p.begin(), p.end(), tree.child_probs(parent).begin());
      }
      parent = tree.add(fresh[j], parent);
    }
  }
}

}  // namespace specq
