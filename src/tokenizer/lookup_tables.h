// Open-addressing hash tables for the tokenizer hot path (vocab lookup by bytes, merge lookup by id pair).
// std::unordered_map spends most of the encode time chasing nodes; these keep everything in flat arrays.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace specq {

inline uint64_t hash_bytes(std::string_view bytes) {
  // 8 bytes at a time, multiply-xorshift mixing; plenty for vocab-sized tables.
  uint64_t hash = 0x9E3779B97F4A7C15ull ^ (bytes.size() * 0xFF51AFD7ED558CCDull);
  size_t pos = 0;
  for (; pos + 8 <= bytes.size(); pos += 8) {
    uint64_t word;
    std::memcpy(&word, bytes.data() + pos, 8);
    hash = (hash ^ word) * 0xC4CEB9FE1A85EC53ull;
    hash ^= hash >> 29;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, bytes.data() + pos, bytes.size() - pos);
  hash = (hash ^ tail) * 0xC4CEB9FE1A85EC53ull;
  return hash ^ (hash >> 32);
}

// Maps byte strings to ids. Keys are copied into one arena.
class StringIdMap {
 public:
  // Later inserts of an existing key replace its id.
  void insert(std::string_view key, int32_t id);
  // -1 when absent.
  int32_t find(std::string_view key) const {
    if (slots_.empty()) return -1;
    for (size_t slot = hash_bytes(key) & mask_;; slot = (slot + 1) & mask_) {
      const Slot& entry = slots_[slot];
      if (entry.id < 0) return -1;
      if (entry.length == key.size() && std::memcmp(arena_.data() + entry.offset, key.data(), key.size()) == 0)
        return entry.id;
    }
  }
  size_t size() const { return count_; }

 private:
  struct Slot {
    uint32_t offset = 0;
    uint32_t length = 0;
    int32_t id = -1;
  };
  void grow();

  std::vector<Slot> slots_;
  std::string arena_;
  size_t mask_ = 0;
  size_t count_ = 0;
};

// Maps a pair of symbol ids to what merging them gives: its priority (lower merges first) and the new id.
struct PairMerge {
  int32_t rank;
  int32_t merged_id;
};

class PairMergeMap {
 public:
  // Later inserts of an existing pair replace it (HF builds its merge map the same way).
  void insert(int32_t left, int32_t right, PairMerge merge);
  const PairMerge* find(int32_t left, int32_t right) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = pack(left, right);
    for (size_t slot = mix(key) & mask_;; slot = (slot + 1) & mask_) {
      const Slot& entry = slots_[slot];
      if (entry.key == kEmpty) return nullptr;
      if (entry.key == key) return &entry.merge;
    }
  }
  size_t size() const { return count_; }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  struct Slot {
    uint64_t key = kEmpty;
    PairMerge merge{};
  };
  static uint64_t pack(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  static uint64_t mix(uint64_t key) {
    key = (key ^ (key >> 31)) * 0x7FB5D329728EA185ull;
    return key ^ (key >> 27);
  }
  void grow();

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t count_ = 0;
};

}  // namespace specq
