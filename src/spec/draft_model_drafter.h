// Vanilla speculative decoding: a smaller model with the same vocabulary drafts a chain.
#pragma once
#include <cstdint>
#include <vector>

#include "spec/drafter.h"

namespace specq {

// Drafts gamma tokens, one forward each. Its cache follows the committed sequence: rows that still
// match are kept (accepted drafts included), the rest are simply overwritten by the next draft.
class DraftModelDrafter final : public Drafter {
 public:
  DraftModelDrafter(Runner& draft_model, int gamma);
  int max_nodes() const override { return gamma_ + 1; }
  void committed(std::span<const int32_t> seq, int unchanged) override;
  void draft(DraftTree& tree, int max_nodes, const DraftContext& context) override;

 private:
  Runner& model_;
  int gamma_;
  std::vector<int32_t> seq_;
  std::vector<int32_t> cached_;  // the token behind each row of the draft model's cache
  std::vector<int32_t> positions_;
};

}  // namespace specq
