// FR-Spec (frequency-ranked speculative sampling): the draft LM head keeps only the V most frequent
// tokens of a corpus, so drafting reads V rows of the LM head instead of the whole vocabulary. The
// target still verifies over the full vocabulary, so greedy output does not change; only drafts of
// tokens outside the map become impossible.
//
// A token map is the list of target ids the draft head keeps, most frequent first. Files:
//   .safetensors: tensor "token_map" (or the file's only tensor), I64 or I32, shape [V] (what
//     `specq frspec build` writes);
//   anything else: a torch.save file holding that tensor, as FR-Spec's freq_{V}.pt and SGLang's
//     --speculative-token-map files do (read without running pickle code).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace specq {

// Token counts of a corpus over a vocabulary.
struct TokenFrequencies {
  std::vector<uint64_t> counts;  // [vocab]
  uint64_t tokens = 0;           // tokens counted
  uint64_t documents = 0;
  void add(std::span<const int32_t> ids);  // Error on an id outside the vocabulary
};

// The `size` ids of highest count (ties: the smaller id), most frequent first, with every id of
// `forced` (the EOS and end-of-turn ids) included: missing forced ids replace the least frequent
// entries. Ids never seen fill the tail in id order when the corpus saw fewer than `size` ids.
std::vector<int32_t> frequency_ranked_vocab(const TokenFrequencies& frequencies, int size,
                                            std::span<const int32_t> forced);

// Error unless `ids` is a non-empty list of distinct ids in [0, vocab_size).
void validate_token_map(std::span<const int32_t> ids, int vocab_size, const std::string& source);

std::vector<int32_t> load_token_map(const std::string& path, int vocab_size);
// Writes .safetensors (tensor "token_map", I64) with `metadata` entries in its header.
void save_token_map(const std::string& path, std::span<const int32_t> ids,
                    const std::vector<std::pair<std::string, std::string>>& metadata);

}  // namespace specq
