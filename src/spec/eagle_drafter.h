// EAGLE-2 drafting: a dynamic tree grown level by level with an EAGLE head.
#pragma once
#include <cstdint>
#include <vector>

#include "spec/drafter.h"
#include "spec/eagle_head.h"

namespace specq {

struct EagleTreeOptions {
  int depth = 6;       // D: levels below the root
  int topk = 10;       // k: children per expanded node, and nodes expanded per level
  int tree_size = 60;  // T: nodes verified per step, root included
  void validate() const;
};

// Greedy: the k best children (by the head's log-probability) of each of the k best frontier
// nodes (by cumulative log-probability) are candidates; the T - 1 best candidates overall form the
// tree (a child never outscores its parent, so they are closed under parents).
// Sampling: children are drawn from the head's distribution without replacement; the same frontier
// rule picks which nodes grow, but the tree keeps candidates in breadth-first order (the first
// T - 1), so how many children a node keeps never depends on the children's own values, which
// lossless rejection sampling needs.
class EagleDrafter final : public Drafter {
 public:
  EagleDrafter(EagleHead& head, const EagleTreeOptions& options);
  int max_nodes() const override { return options_.tree_size; }
  bool wants_hidden() const override { return true; }
  bool reads_device_hidden() const override { return head_.device() == Device::Cuda; }
  void committed(std::span<const int32_t> seq, int unchanged) override;
  void hidden(int first_pos, const HiddenRows& rows) override { head_.set_features(first_pos, rows); }
  void draft(DraftTree& tree, int max_nodes, const DraftContext& context) override;

 private:
  struct Candidate {
    int32_t token;
    int parent;  // candidate index, -1 under the root
    float score; // cumulative log-probability
    int row;     // scratch row once expanded, else -1
  };
  void catch_up(int root_pos, const DraftContext& context);
  void add_children(int parent, int head_row, float parent_score, const DraftContext& context, float* q);
  void run_head(int n, int committed, int row0, const uint64_t* mask, int logits_from, const DraftContext& context);

  EagleHead& head_;
  EagleTreeOptions options_;
  int vocab_ = 0, head_len_ = 0, mask_stride_ = 0, last_row_ = 0;
  std::vector<int32_t> seq_;
  std::vector<Candidate> candidates_;
  std::vector<int> frontier_, level_, order_, node_of_;
  std::vector<int32_t> tokens_, positions_, features_;  // features_: the head's feature source per input
  std::vector<float> logp_, probs_;  // probs_: one q row per expanded node (sampling)
  std::vector<uint64_t> masks_;  // scratch-row ancestor masks, mask_stride_ words each
};

}  // namespace specq
