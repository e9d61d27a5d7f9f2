// What a speculation loop needs from a drafter: a tree of guesses, and news of what was committed.
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "gen/sampler.h"
#include "model/runner.h"
#include "spec/draft_tree.h"

namespace specq {

// How drafts are chosen. Greedy drafts pick the drafter's most likely tokens; sampling drafts draw
// them from the drafter's distribution (after the same temperature/top-k/top-p as the target), and
// record that distribution in the tree, as lossless rejection sampling needs.
struct DraftContext {
  bool sampling = false;
  Sampler* sampler = nullptr;    // turns drafter logits into the draft distribution q
  std::mt19937_64* rng = nullptr;
};

// Final hidden states of verifier rows for a drafter: row i of the delivery is row select[i] (or i
// when select is empty) of the verifier's output, fp32 [rows][hidden_size], found on the host and/or
// (CUDA verifiers) in device memory, where it is valid until the verifier's next forward.
struct HiddenRows {
  int count = 0;
  std::span<const int32_t> select;
  std::span<const float> host;     // empty when the verifier kept them on the device
  const float* device = nullptr;   // null unless the verifier runs on a CUDA device
  Runner* source = nullptr;        // the verifier that produced them
};

class Drafter {
 public:
  virtual ~Drafter() = default;
  // Most nodes (root included) a draft can have; the loop plans its buffers from this.
  virtual int max_nodes() const = 0;
  // True when the drafter needs the verifier's final hidden states (EAGLE heads).
  virtual bool wants_hidden() const { return false; }
  // The committed sequence is now `seq` (the root, not yet in the verifier's cache, last); its
  // first `unchanged` tokens are the same as in the previous call.
  virtual void committed(std::span<const int32_t> seq, int unchanged) = 0;
  // True when it reads them from device memory (a CUDA EAGLE head): the verifier may keep them there.
  virtual bool reads_device_hidden() const { return false; }
  // The verifier's final hidden states of positions [first_pos, first_pos + rows.count).
  virtual void hidden(int /*first_pos*/, const HiddenRows& /*rows*/) {}
  // Fills `tree` (already reset to the root) with at most max_nodes nodes in all.
  virtual void draft(DraftTree& tree, int max_nodes, const DraftContext& context) = 0;
};

// Draws one token from a dense distribution.
int32_t sample_from(std::span<const float> probs, std::mt19937_64& rng);

// Runs tokens as a chain at positions first_pos, first_pos + 1, ... into the runner's cache (rows
// from first_pos), in chunks of its forward size. Hidden states (when `hidden` is given) go to it
// chunk by chunk; the result holds the last row's argmax when last_logits (and its logits when
// logits_to_host).
ForwardResult forward_chain(Runner& runner, std::span<const int32_t> tokens, int first_pos, bool last_logits,
                            std::vector<int32_t>& positions, Drafter* hidden = nullptr,
                            bool logits_to_host = true);

}  // namespace specq
