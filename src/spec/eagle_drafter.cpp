#include "spec/eagle_drafter.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace specq {

void EagleTreeOptions::validate() const {
  SPECQ_CHECK(depth >= 1, "--tree-depth must be >= 1 (got {})", depth);
  SPECQ_CHECK(topk >= 1, "--tree-topk must be >= 1 (got {})", topk);
  SPECQ_CHECK(tree_size >= 2, "--tree-size must be >= 2 (got {})", tree_size);
}

EagleDrafter::EagleDrafter(EagleHead& head, const EagleTreeOptions& options)
    : head_(head), options_(options), vocab_(head.config().vocab_size) {
  options_.validate();
  SPECQ_CHECK(options_.topk <= vocab_, "--tree-topk {} exceeds the vocabulary ({})", options_.topk, vocab_);
  const int k = options_.topk, scratch_rows = (options_.depth - 1) * k;
  SPECQ_CHECK(k <= head.max_tokens_per_forward(), "--tree-topk {} exceeds the head's forward size", k);
  SPECQ_CHECK(k <= head.max_top_k(), "--tree-topk {} exceeds the {} EAGLE head's top-k limit of {}", k,
              head.device() == Device::Cuda ? "CUDA" : "CPU", head.max_top_k());
  mask_stride_ = mask_words(std::max(scratch_rows, 1));
  seq_.reserve(size_t(head.max_rows()) + 1);
  candidates_.reserve(size_t(k + (options_.depth - 1) * k * k));
  for (auto* v : {&frontier_, &level_, &order_, &node_of_}) v->reserve(candidates_.capacity());
  node_of_.resize(candidates_.capacity());
  tokens_.resize(size_t(std::max(k, head.max_tokens_per_forward())));
  positions_.resize(tokens_.size());
  features_.resize(tokens_.size());
  logp_.assign(size_t(vocab_), 0.0f);
  probs_.assign(size_t(1 + scratch_rows) * size_t(vocab_), 0.0f);
  masks_.assign(size_t(std::max(scratch_rows, 1)) * size_t(mask_stride_), 0);
}

void EagleDrafter::committed(std::span<const int32_t> seq, int unchanged) {
  seq_.assign(seq.begin(), seq.end());
  // Head row t holds the pair (h_t, token t + 1): it stays valid while token t + 1 is unchanged.
  head_len_ = std::min(head_len_, std::max(0, unchanged - 1));
}

// Runs the head over inputs [0, n) of tokens_, positions_ and features_: greedy drafts take the
// top-k of each logits row (computed where the head runs), sampling drafts the full logits.
void EagleDrafter::run_head(int n, int committed, int row0, const uint64_t* mask, int logits_from,
                            const DraftContext& context) {
  EagleStep step;
  step.tokens = std::span<const int32_t>(tokens_.data(), size_t(n));
  step.features = std::span<const int32_t>(features_.data(), size_t(n));
  step.positions = std::span<const int32_t>(positions_.data(), size_t(n));
  step.committed = committed;
  step.row0 = row0;
  step.mask = mask;
  step.mask_stride = mask_stride_;
  step.logits_from = logits_from;
  step.top_k = context.sampling ? 0 : options_.topk;
  step.logits_to_host = context.sampling;
  head_.forward(step);
}

// Runs the head over the pairs it has not seen, (h_t, token t + 1) for t in [head_len_, root_pos),
// at their own positions; the last one (h of the token before the root, the root) predicts depth 1.
void EagleDrafter::catch_up(int root_pos, const DraftContext& context) {
  head_len_ = std::min(head_len_, root_pos - 1);  // the root pair's output is needed again
  const int chunk = head_.max_tokens_per_forward();
  for (int start = head_len_; start < root_pos; start += chunk) {
    const int n = std::min(chunk, root_pos - start);
    for (int t = 0; t < n; ++t) {
      tokens_[size_t(t)] = seq_[size_t(start + t + 1)];
      positions_[size_t(t)] = start + t;
      features_[size_t(t)] = start + t;  // the verifier's hidden state of position start + t
    }
    run_head(n, start, start, nullptr, start + n == root_pos ? n - 1 : n, context);
    last_row_ = n - 1;
  }
  head_len_ = root_pos;
}

void EagleDrafter::add_children(int parent, int head_row, float parent_score, const DraftContext& context,
                                float* q) {
  const int k = options_.topk;
  if (!context.sampling) {
    // The k best by log_softmax (ties: the smaller id), from the head. logp <= 0, so a child never
    // outscores its parent (rerank relies on it).
    const std::span<const int32_t> ids = head_.top_ids(head_row);
    const std::span<const float> logp = head_.top_logp(head_row);
    for (int i = 0; i < k; ++i)
      candidates_.push_back({ids[size_t(i)], parent, parent_score + std::min(0.0f, logp[size_t(i)]), -1});
    return;
  }
  // Sampling: k draws without replacement from q (fewer when q has fewer tokens).
  const std::span<float> dist(q, size_t(vocab_));
  context.sampler->distribution(head_.logits(head_row), dist);
  std::copy(dist.begin(), dist.end(), logp_.begin());  // the mass not drawn yet
  double left = 1.0;
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (int i = 0; i < k && left > 0.0; ++i) {
    const double u = uniform(*context.rng) * left;
    double cumulative = 0.0;
    int32_t pick = -1;
    for (int v = 0; v < vocab_; ++v) {
      if (logp_[size_t(v)] <= 0.0f) continue;
      pick = v;
      cumulative += logp_[size_t(v)];
      if (u < cumulative) break;
    }
    if (pick < 0) break;
    left -= logp_[size_t(pick)];
    logp_[size_t(pick)] = 0.0f;
    candidates_.push_back({pick, parent, parent_score + std::log(dist[size_t(pick)]), -1});
  }
}

void EagleDrafter::draft(DraftTree& tree, int max_nodes, const DraftContext& context) {
  const int root_pos = int(seq_.size()) - 1;
  const int k = options_.topk;
  const int budget = std::min(max_nodes, options_.tree_size) - 1;  // drafted nodes
  if (budget < 1) return;
  SPECQ_CHECK(root_pos + (options_.depth - 1) * k <= head_.max_rows(),
              "EAGLE head cache of {} rows is too small for position {}", head_.max_rows(), root_pos);
  catch_up(root_pos, context);

  // Level 1: children of the root, from the last pair's output; every frontier node then feeds
  // that output as its feature (its own hidden state is unknown until the verifier runs it).
  candidates_.clear();
  add_children(-1, last_row_, 0.0f, context, probs_.data());
  frontier_.clear();
  for (int i = 0; i < int(candidates_.size()); ++i) {
    frontier_.push_back(i);
    features_[size_t(i)] = -1 - last_row_;  // output row last_row_ of the previous forward
  }

  // Levels 2..D: feed the frontier (each row sees its ancestors' rows), expand, pick the next frontier.
  int used_rows = 0;
  for (int d = 1; d < options_.depth && !frontier_.empty(); ++d) {
    const int f = int(frontier_.size());
    for (int i = 0; i < f; ++i) {
      Candidate& c = candidates_[size_t(frontier_[size_t(i)])];
      c.row = used_rows + i;
      tokens_[size_t(i)] = c.token;
      positions_[size_t(i)] = root_pos + d - 1;
      uint64_t* mask = masks_.data() + size_t(c.row) * size_t(mask_stride_);
      if (c.parent >= 0)
        std::copy_n(masks_.data() + size_t(candidates_[size_t(c.parent)].row) * size_t(mask_stride_), mask_stride_,
                    mask);
      else
        std::fill_n(mask, mask_stride_, 0);
      mask[c.row / 64] |= uint64_t(1) << (c.row % 64);
    }
    run_head(f, root_pos, root_pos + used_rows, masks_.data() + size_t(used_rows) * size_t(mask_stride_), 0,
             context);
    const int level_start = int(candidates_.size());
    for (int i = 0; i < f; ++i) {
      const Candidate& c = candidates_[size_t(frontier_[size_t(i)])];
      add_children(frontier_[size_t(i)], i, c.score, context, probs_.data() + size_t(1 + c.row) * size_t(vocab_));
    }
    used_rows += f;
    if (d + 1 == options_.depth) break;
    // Next frontier: the k best new candidates by cumulative score (ties: the earlier one), kept in
    // index order; each feeds its parent's output.
    level_.clear();
    for (int i = level_start; i < int(candidates_.size()); ++i) level_.push_back(i);
    const int keep = std::min(k, int(level_.size()));
    std::partial_sort(level_.begin(), level_.begin() + keep, level_.end(), [&](int a, int b) {
      return candidates_[size_t(a)].score > candidates_[size_t(b)].score ||
             (candidates_[size_t(a)].score == candidates_[size_t(b)].score && a < b);
    });
    frontier_.assign(level_.begin(), level_.begin() + keep);
    std::sort(frontier_.begin(), frontier_.end());
    for (int i = 0; i < keep; ++i) {
      const int parent_row = candidates_[size_t(candidates_[size_t(frontier_[size_t(i)])].parent)].row;
      features_[size_t(i)] = -1 - (parent_row - (used_rows - f));  // its output in the forward just run
    }
  }

  // Rerank into the tree (see the class comment for greedy vs sampling).
  const int total = int(candidates_.size());
  order_.resize(size_t(total));
  for (int i = 0; i < total; ++i) order_[size_t(i)] = i;
  const int take = std::min(budget, total);
  if (!context.sampling) {
    std::partial_sort(order_.begin(), order_.begin() + take, order_.end(), [&](int a, int b) {
      return candidates_[size_t(a)].score > candidates_[size_t(b)].score ||
             (candidates_[size_t(a)].score == candidates_[size_t(b)].score && a < b);
    });
    std::sort(order_.begin(), order_.begin() + take);  // parents before children
  }
  std::fill_n(node_of_.begin(), total, -1);
  for (int i = 0; i < take; ++i) {
    const int index = order_[size_t(i)];
    const Candidate& c = candidates_[size_t(index)];
    const int parent = c.parent < 0 ? 0 : node_of_[size_t(c.parent)];
    SPECQ_CHECK(parent >= 0, "EAGLE rerank kept a node without its parent (candidate {})", index);
    node_of_[size_t(index)] = tree.add(c.token, parent);
  }
  if (context.sampling) {
    std::copy_n(probs_.data(), vocab_, tree.child_probs(0).data());
    for (int i = 0; i < take; ++i) {
      const Candidate& c = candidates_[size_t(order_[size_t(i)])];
      if (c.row >= 0)
        std::copy_n(probs_.data() + size_t(1 + c.row) * size_t(vocab_), vocab_,
                    tree.child_probs(node_of_[size_t(order_[size_t(i)])]).data());
    }
  }
}

}  // namespace specq
