// A speculative draft: a tree of tokens rooted at the last committed token.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "model/runner.h"

namespace specq {

// Node 0 is the root: the newest committed token, not yet in the verifier's KV cache, at position
// root_pos. Every other node is a drafted token whose parent has a smaller index, so index order is
// a valid order for a forward pass. Siblings appear in the order they were drawn (sampling needs it).
// A chain is the tree in which node i's parent is i - 1.
class DraftTree {
 public:
  // Plans every buffer once; with_probs keeps one vocab-sized distribution per node (sampling).
  void plan(int max_nodes, int vocab, bool with_probs);
  void reset(int32_t root, int root_pos);
  // Appends a drafted token under `parent`; returns its node index.
  int add(int32_t token, int parent);
  // Packs the ancestor masks (bit j of row i: node i sees node j) for a forward over size() nodes.
  void finish();

  int size() const { return size_; }
  int max_nodes() const { return max_nodes_; }
  bool has_probs() const { return !probs_.empty(); }
  int32_t token(int i) const { return tokens_[size_t(i)]; }
  int parent(int i) const { return parents_[size_t(i)]; }
  int depth(int i) const { return depths_[size_t(i)]; }
  std::span<const int32_t> tokens() const { return {tokens_.data(), size_t(size_)}; }
  std::span<const int32_t> positions() const { return {positions_.data(), size_t(size_)}; }
  std::span<const uint64_t> mask() const { return {packed_.data(), size_t(size_) * size_t(mask_words(size_))}; }
  // The distribution node i's children were drawn from (sampling drafts only).
  std::span<float> child_probs(int i) { return {probs_.data() + size_t(i) * size_t(vocab_), size_t(vocab_)}; }
  std::span<const float> child_probs(int i) const {
    return {probs_.data() + size_t(i) * size_t(vocab_), size_t(vocab_)};
  }

 private:
  int max_nodes_ = 0, vocab_ = 0, size_ = 0, words_ = 0, root_pos_ = 0;
  std::vector<int32_t> tokens_, parents_, depths_, positions_;
  std::vector<uint64_t> ancestors_;  // max_nodes rows of words_ (the widest mask), filled by add()
  std::vector<uint64_t> packed_;     // size_ rows of mask_words(size_), made by finish()
  std::vector<float> probs_;
};

}  // namespace specq
