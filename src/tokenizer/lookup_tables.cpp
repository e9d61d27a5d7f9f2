#include "tokenizer/lookup_tables.h"

#include "core/error.h"

namespace specq {

void StringIdMap::grow() {
  std::vector<Slot> old = std::move(slots_);
  const size_t capacity = old.empty() ? 1024 : old.size() * 2;
  slots_.assign(capacity, Slot{});
  mask_ = capacity - 1;
  for (const Slot& entry : old) {
    if (entry.id < 0) continue;
    const std::string_view key(arena_.data() + entry.offset, entry.length);
    size_t slot = hash_bytes(key) & mask_;
    while (slots_[slot].id >= 0) slot = (slot + 1) & mask_;
    slots_[slot] = entry;
  }
}

void StringIdMap::insert(std::string_view key, int32_t id) {
  SPECQ_CHECK(id >= 0, "token id {} is negative", id);
  if ((count_ + 1) * 2 > slots_.size()) grow();
  size_t slot = hash_bytes(key) & mask_;
  for (;; slot = (slot + 1) & mask_) {
    Slot& entry = slots_[slot];
    if (entry.id < 0) break;
    if (entry.length == key.size() && std::memcmp(arena_.data() + entry.offset, key.data(), key.size()) == 0) {
      entry.id = id;
      return;
    }
  }
  SPECQ_CHECK(arena_.size() + key.size() < UINT32_MAX, "vocabulary is too large");
  slots_[slot] = Slot{static_cast<uint32_t>(arena_.size()), static_cast<uint32_t>(key.size()), id};
  arena_.append(key);
  ++count_;
}

void PairMergeMap::grow() {
  std::vector<Slot> old = std::move(slots_);
  const size_t capacity = old.empty() ? 1024 : old.size() * 2;
  slots_.assign(capacity, Slot{});
  mask_ = capacity - 1;
  for (const Slot& entry : old) {
    if (entry.key == kEmpty) continue;
    size_t slot = mix(entry.key) & mask_;
    while (slots_[slot].key != kEmpty) slot = (slot + 1) & mask_;
    slots_[slot] = entry;
  }
}

void PairMergeMap::insert(int32_t left, int32_t right, PairMerge merge) {
  if ((count_ + 1) * 2 > slots_.size()) grow();
  const uint64_t key = pack(left, right);
  size_t slot = mix(key) & mask_;
  for (;; slot = (slot + 1) & mask_) {
    Slot& entry = slots_[slot];
    if (entry.key == kEmpty) break;
    if (entry.key == key) {
      entry.merge = merge;
      return;
    }
  }
  slots_[slot] = Slot{key, merge};
  ++count_;
}

}  // namespace specq
