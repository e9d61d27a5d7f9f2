// The BPE merge loop shared by the tokenizer.json and llama2.c tokenizers.
#pragma once
#include <cstdint>
#include <vector>

#include "tokenizer/lookup_tables.h"

namespace specq {

// Reused buffers so that encoding many words does not allocate per word. One per encode call (not shared
// between threads).
struct BpeScratch {
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
  };
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t merged_id;
    int32_t left_id;   // the pair as it was when queued: if either side has changed since, the candidate
    int32_t right_id;  // is stale
  };
  std::vector<Symbol> symbols;
  std::vector<Candidate> heap;
};

// Repeatedly merges the adjacent pair with the lowest rank (leftmost among equal ranks) until no pair in
// `ids` has a merge. A heap plus a linked list keeps this O(n log n) in the word length, not quadratic.
void bpe_merge(const PairMergeMap& merges, std::vector<int32_t>& ids, BpeScratch& scratch);

}  // namespace specq
