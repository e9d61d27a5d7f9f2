#include "spec/draft_tree.h"

#include <algorithm>

#include "core/error.h"

namespace specq {

void DraftTree::plan(int max_nodes, int vocab, bool with_probs) {
  SPECQ_CHECK(max_nodes >= 1, "a draft tree needs room for its root (max nodes {})", max_nodes);
  max_nodes_ = max_nodes;
  vocab_ = vocab;
  words_ = mask_words(max_nodes);
  for (auto* v : {&tokens_, &parents_, &depths_, &positions_}) v->assign(size_t(max_nodes), 0);
  ancestors_.assign(size_t(max_nodes) * size_t(words_), 0);
  packed_.assign(size_t(max_nodes) * size_t(words_), 0);
  probs_.assign(with_probs ? size_t(max_nodes) * size_t(vocab) : 0, 0.0f);
  size_ = 0;
}

void DraftTree::reset(int32_t root, int root_pos) {
  root_pos_ = root_pos;
  size_ = 0;
  add(root, -1);
}

int DraftTree::add(int32_t token, int parent) {
  SPECQ_CHECK(size_ < max_nodes_, "draft tree overflow: more than {} nodes", max_nodes_);
  SPECQ_CHECK(parent < size_ && (parent >= 0 || size_ == 0), "draft node {} has invalid parent {}", size_, parent);
  const int i = size_++;
  tokens_[size_t(i)] = token;
  parents_[size_t(i)] = parent;
  depths_[size_t(i)] = parent < 0 ? 0 : depths_[size_t(parent)] + 1;
  positions_[size_t(i)] = root_pos_ + depths_[size_t(i)];
  uint64_t* row = ancestors_.data() + size_t(i) * size_t(words_);
  if (parent >= 0)
    std::copy_n(ancestors_.data() + size_t(parent) * size_t(words_), words_, row);
  else
    std::fill_n(row, words_, 0);
  row[i / 64] |= uint64_t(1) << (i % 64);
  return i;
}

void DraftTree::finish() {
  const int words = mask_words(size_);
  for (int i = 0; i < size_; ++i)
    std::copy_n(ancestors_.data() + size_t(i) * size_t(words_), words, packed_.data() + size_t(i) * size_t(words));
}

}  // namespace specq
