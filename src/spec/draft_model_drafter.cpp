#include "spec/draft_model_drafter.h"

#include <algorithm>

#include "core/error.h"

namespace specq {

DraftModelDrafter::DraftModelDrafter(Runner& draft_model, int gamma) : model_(draft_model), gamma_(gamma) {
  SPECQ_CHECK(gamma >= 1, "--draft-length must be >= 1 (got {})", gamma);
  seq_.reserve(size_t(model_.max_context()) + 1);
  cached_.reserve(size_t(model_.max_context()));
  positions_.resize(size_t(model_.max_tokens_per_forward()));
}

void DraftModelDrafter::committed(std::span<const int32_t> seq, int /*unchanged*/) {
  seq_.assign(seq.begin(), seq.end());
  // Keep the rows whose tokens (and so whose prefixes) still match; the root is always run again,
  // since its logits are the first draft's.
  const size_t common = std::min({cached_.size(), seq.size() - 1});
  const auto end = std::mismatch(cached_.begin(), cached_.begin() + std::ptrdiff_t(common), seq.begin()).first;
  cached_.erase(end, cached_.end());
}

void DraftModelDrafter::draft(DraftTree& tree, int max_nodes, const DraftContext& context) {
  const int root_pos = int(seq_.size()) - 1;
  // The last draft is never run, so gamma drafts need rows up to root_pos + gamma - 1.
  const int gamma = std::min({gamma_, max_nodes - 1, model_.max_context() - root_pos});
  if (gamma < 1) return;
  const int first = int(cached_.size());
  ForwardResult out = forward_chain(model_, std::span<const int32_t>(seq_).subspan(size_t(first)), first, true,
                                    positions_, nullptr, context.sampling);
  cached_.insert(cached_.end(), seq_.begin() + first, seq_.end());
  for (int g = 1; g <= gamma; ++g) {
    int32_t token = out.argmax[0];
    if (context.sampling) {
      const std::span<float> q = tree.child_probs(g - 1);
      context.sampler->distribution(out.logits, q);
      token = sample_from(q, *context.rng);
    }
    tree.add(token, g - 1);
    if (g == gamma) break;
    const int32_t position = root_pos + g;
    ForwardRequest request;
    request.tokens = std::span<const int32_t>(&token, 1);
    request.positions = std::span<const int32_t>(&position, 1);
    request.cache_len = position;
    request.logits_to_host = context.sampling;
    out = model_.forward(request);
    cached_.push_back(token);
  }
}

}  // namespace specq
