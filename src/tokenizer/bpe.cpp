#include "tokenizer/bpe.h"

#include <algorithm>

namespace specq {

namespace {

// Min-heap order on (rank, position): std heaps are max-heaps, so "less" means "comes later". A function
// object (not a function pointer) so that the heap operations inline it.
struct Later {
  bool operator()(const BpeScratch::Candidate& a, const BpeScratch::Candidate& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  }
};
constexpr Later later;

}  // namespace

void bpe_merge(const PairMergeMap& merges, std::vector<int32_t>& ids, BpeScratch& scratch) {
  const auto count = static_cast<int32_t>(ids.size());
  if (count < 2) return;
  auto& symbols = scratch.symbols;
  auto& heap = scratch.heap;
  symbols.resize(ids.size());
  heap.clear();
  for (int32_t i = 0; i < count; ++i) {
    symbols[i] = {ids[i], i - 1, i + 1 < count ? i + 1 : -1};
    if (i + 1 < count) {
      if (const PairMerge* merge = merges.find(ids[i], ids[i + 1]))
        heap.push_back({merge->rank, i, merge->merged_id, ids[i], ids[i + 1]});
    }
  }
  std::make_heap(heap.begin(), heap.end(), later);

  auto push_candidate = [&](int32_t left) {
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    if (const PairMerge* merge = merges.find(symbols[left].id, symbols[right].id)) {
      heap.push_back({merge->rank, left, merge->merged_id, symbols[left].id, symbols[right].id});
      std::push_heap(heap.begin(), heap.end(), later);
    }
  };

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const BpeScratch::Candidate top = heap.back();
    heap.pop_back();
    auto& left = symbols[top.pos];
    // The pair may have changed since this candidate was queued; only merge if it is still the same pair.
    if (left.id != top.left_id || left.next < 0) continue;
    auto& right = symbols[left.next];
    if (right.id != top.right_id) continue;
    left.id = top.merged_id;
    right.id = -1;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) push_candidate(left.prev);
    push_candidate(top.pos);
  }

  ids.clear();
  for (int32_t pos = 0; pos >= 0; pos = symbols[pos].next) ids.push_back(symbols[pos].id);
}

}  // namespace specq
