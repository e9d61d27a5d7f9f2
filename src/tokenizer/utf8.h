// UTF-8 helpers shared by the tokenizers: validation, code point iteration and lossy conversion.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace specq::utf8 {

// Length of the valid UTF-8 sequence starting at text[pos], or 0 if the bytes there are not one
// (bad lead byte, bad continuation, overlong form, surrogate, > U+10FFFF, or truncated).
size_t valid_sequence_length(std::string_view text, size_t pos);

// Offset of the first byte that is not part of valid UTF-8, or npos when the whole text is valid.
size_t first_invalid(std::string_view text);

// Throws specq::Error naming `what` and the byte offset if `text` is not valid UTF-8.
void check_valid(std::string_view text, std::string_view what);

// Byte length of the character whose (valid) lead byte is `lead`.
inline size_t char_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

// Decodes the valid character at text[pos].
char32_t decode_at(std::string_view text, size_t pos);

void append(std::string& out, char32_t code_point);

// Like Rust's String::from_utf8_lossy (what HF uses): each maximal invalid subsequence becomes one U+FFFD.
std::string lossy(std::string_view bytes);

// `text` without the leading (if `left`) and trailing (if `right`) characters for which is_space is true.
std::string_view trim(std::string_view text, bool (*is_space)(char32_t), bool left = true, bool right = true);

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

}  // namespace specq::utf8
