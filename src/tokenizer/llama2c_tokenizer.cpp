// llama2.c's tokenizer (run.c): code points looked up in the vocabulary (unknown ones fall back to byte
// tokens, id = byte + 3), a " " dummy prefix, then repeatedly merge the adjacent pair whose concatenation
// is the highest-scoring vocabulary entry.
#include "tokenizer/llama2c_tokenizer.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "core/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/lookup_tables.h"
#include "tokenizer/utf8.h"

namespace specq {

namespace {

constexpr int32_t kUnkId = 0;
constexpr int32_t kBosId = 1;
constexpr int32_t kEosId = 2;
constexpr int32_t kFirstByteId = 3;  // <0x00> .. <0xFF> are ids 3 .. 258

class Llama2cTokenizer : public Tokenizer {
 public:
  explicit Llama2cTokenizer(std::span<const uint8_t> bytes) {
    size_t pos = 0;
    auto read = [&](void* out, size_t size, const char* what) {
      SPECQ_CHECK(pos + size <= bytes.size(), "llama2.c tokenizer is truncated reading {} of token {}", what,
                  pieces_.size());
      std::memcpy(out, bytes.data() + pos, size);
      pos += size;
    };
    int32_t max_token_length = 0;
    read(&max_token_length, 4, "the header");
    SPECQ_CHECK(max_token_length > 0 && max_token_length < 4096, "llama2.c tokenizer header: bad max_token_length {}",
                max_token_length);
    while (pos < bytes.size()) {
      float score = 0;
      int32_t length = 0;
      read(&score, 4, "the score");
      read(&length, 4, "the length");
      SPECQ_CHECK(length >= 0 && length <= max_token_length, "llama2.c tokenizer: token {} has length {} (max {})",
                  pieces_.size(), length, max_token_length);
      std::string piece(static_cast<size_t>(length), '\0');
      read(piece.data(), piece.size(), "the text");
      scores_.push_back(score);
      pieces_.push_back(std::move(piece));
    }
    SPECQ_CHECK(pieces_.size() > kFirstByteId + 255, "llama2.c tokenizer has only {} tokens (needs the 256 byte tokens)",
                pieces_.size());
    for (size_t id = 0; id < pieces_.size(); ++id) lookup_.insert(pieces_[id], static_cast<int32_t>(id));
    build_merges();
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special) const override {
    utf8::check_valid(text, "text to encode");
    std::vector<int32_t> ids;
    if (!text.empty()) {
      if (const int32_t space = lookup_.find(" "); space >= 0) ids.push_back(space);
      for (size_t pos = 0; pos < text.size();) {
        const size_t length = utf8::char_length(static_cast<unsigned char>(text[pos]));
        if (const int32_t id = lookup_.find(text.substr(pos, length)); id >= 0) {
          ids.push_back(id);
        } else {
          for (size_t i = 0; i < length; ++i) ids.push_back(kFirstByteId + static_cast<unsigned char>(text[pos + i]));
        }
        pos += length;
      }
      BpeScratch scratch;
      bpe_merge(merges_, ids, scratch);
    }
    if (add_special) ids.insert(ids.begin(), kBosId);
    return ids;
  }

  std::string decode(std::span<const int32_t> ids, bool skip_special) const override {
    std::string bytes;
    for (size_t i = 0; i < ids.size(); ++i) {
      const int32_t id = ids[i];
      check_id(id);
      if (id <= kEosId) {
        if (!skip_special) bytes += special_text(id);
        continue;
      }
      if (id < kFirstByteId + 256) {
        bytes += static_cast<char>(id - kFirstByteId);
        continue;
      }
      std::string_view piece = pieces_[id];
      // SentencePiece's word-start space is not part of the text at the start or right after BOS.
      if ((i == 0 || ids[i - 1] == kBosId) && piece.starts_with(' ')) piece.remove_prefix(1);
      bytes += piece;
    }
    return utf8::lossy(bytes);
  }

  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
  std::optional<int32_t> bos_id() const override { return kBosId; }
  std::vector<int32_t> eos_ids() const override { return {kEosId}; }
  std::optional<int32_t> token_to_id(std::string_view token) const override {
    const int32_t id = lookup_.find(token);
    return id >= 0 ? std::optional<int32_t>(id) : std::nullopt;
  }
  std::string id_to_token(int32_t id) const override {
    check_id(id);
    return pieces_[id];
  }
  bool is_special(int32_t id) const override {
    check_id(id);
    return id <= kEosId;
  }
  std::optional<std::string> chat_template() const override { return std::nullopt; }
  std::string bos_token() const override { return "<s>"; }
  std::string eos_token() const override { return "</s>"; }

 private:
  // llama2.c stores "\n<s>\n" and "\n</s>\n"; the token itself is what users expect to see.
  static std::string_view special_text(int32_t id) {
    return id == kUnkId ? "<unk>" : id == kBosId ? "<s>" : "</s>";
  }

  // Every pair of tokens whose concatenation is a vocabulary entry can merge; higher score merges first.
  // Equal scores share a rank so that, as in llama2.c, the leftmost of them wins.
  void build_merges() {
    std::vector<float> distinct(scores_);
    std::sort(distinct.begin(), distinct.end(), std::greater<>());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    for (size_t merged = 0; merged < pieces_.size(); ++merged) {
      const std::string& piece = pieces_[merged];
      // The lookup resolves duplicate strings to one id, as llama2.c's str_lookup does.
      const int32_t merged_id = lookup_.find(piece);
      if (merged_id != static_cast<int32_t>(merged)) continue;
      const auto rank = static_cast<int32_t>(
          std::lower_bound(distinct.begin(), distinct.end(), scores_[merged], std::greater<>()) - distinct.begin());
      for (size_t split = 1; split < piece.size(); ++split) {
        const int32_t left = lookup_.find(std::string_view(piece).substr(0, split));
        const int32_t right = lookup_.find(std::string_view(piece).substr(split));
        if (left >= 0 && right >= 0) merges_.insert(left, right, {rank, merged_id});
      }
    }
  }

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  StringIdMap lookup_;
  PairMergeMap merges_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_llama2c_tokenizer(std::span<const uint8_t> file_bytes) {
  return std::make_unique<Llama2cTokenizer>(file_bytes);
}

}  // namespace specq
