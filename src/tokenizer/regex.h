// PCRE2 (UTF + Unicode properties, JIT) for the Split pre-tokenizer and Replace normalizer patterns.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace specq {

struct MatchSpan {
  size_t begin;
  size_t end;
};

class Regex {
 public:
  // Throws specq::Error (naming the pattern) if it does not compile.
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // All non-overlapping matches, left to right; empty matches are skipped. `text` must be valid UTF-8.
  // Thread-safe: each call uses its own match data.
  void find_all(std::string_view text, std::vector<MatchSpan>& matches) const;

  // Escapes `literal` so that it matches itself.
  static std::string escape(std::string_view literal);

 private:
  void* code_ = nullptr;  // pcre2_code_8*, kept opaque so pcre2.h stays out of our headers
  std::string pattern_;
};

}  // namespace specq
