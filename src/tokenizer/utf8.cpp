#include "tokenizer/utf8.h"

#include "core/error.h"

namespace specq::utf8 {

namespace {

bool is_continuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

// How many bytes of the sequence at text[pos] are a valid prefix; `complete` says whether the sequence is
// whole. Follows the Unicode "maximal subpart" rule, which Rust's lossy conversion (and so HF) implements.
size_t valid_prefix(std::string_view text, size_t pos, bool& complete) {
  complete = false;
  const auto lead = static_cast<unsigned char>(text[pos]);
  if (lead < 0x80) {
    complete = true;
    return 1;
  }
  size_t width = 0;
  unsigned char second_min = 0x80, second_max = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    width = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    width = 3;
    if (lead == 0xE0) second_min = 0xA0;  // overlong
    if (lead == 0xED) second_max = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    width = 4;
    if (lead == 0xF0) second_min = 0x90;  // overlong
    if (lead == 0xF4) second_max = 0x8F;  // > U+10FFFF
  } else {
    return 0;
  }
  size_t length = 1;
  while (length < width) {
    if (pos + length >= text.size()) return length;
    const auto byte = static_cast<unsigned char>(text[pos + length]);
    const bool ok = length == 1 ? (byte >= second_min && byte <= second_max) : is_continuation(byte);
    if (!ok) return length;
    ++length;
  }
  complete = true;
  return width;
}

}  // namespace

size_t valid_sequence_length(std::string_view text, size_t pos) {
  bool complete = false;
  const size_t length = valid_prefix(text, pos, complete);
  return complete ? length : 0;
}

size_t first_invalid(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<unsigned char>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const size_t length = valid_sequence_length(text, pos);
    if (length == 0) return pos;
    pos += length;
  }
  return std::string_view::npos;
}

void check_valid(std::string_view text, std::string_view what) {
  const size_t bad = first_invalid(text);
  SPECQ_CHECK(bad == std::string_view::npos, "{} is not valid UTF-8 (bad byte 0x{:02X} at offset {})", what,
              static_cast<unsigned char>(text[bad]), bad);
}

char32_t decode_at(std::string_view text, size_t pos) {
  const auto lead = static_cast<unsigned char>(text[pos]);
  const size_t length = char_length(lead);
  if (length == 1) return lead;
  char32_t code_point = lead & (0xFF >> (length + 1));
  for (size_t i = 1; i < length; ++i) code_point = (code_point << 6) | (static_cast<unsigned char>(text[pos + i]) & 0x3F);
  return code_point;
}

void append(std::string& out, char32_t code_point) {
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xC0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else if (code_point < 0x10000) {
    out += static_cast<char>(0xE0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code_point >> 18));
    out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
}

std::string_view trim(std::string_view text, bool (*is_space)(char32_t), bool left, bool right) {
  size_t begin = 0, end = text.size();
  while (left && begin < end && is_space(decode_at(text, begin))) begin += char_length(static_cast<unsigned char>(text[begin]));
  while (right && end > begin) {
    size_t start = end - 1;
    while (start > begin && is_continuation(static_cast<unsigned char>(text[start]))) --start;
    if (!is_space(decode_at(text, start))) break;
    end = start;
  }
  return text.substr(begin, end - begin);
}

std::string lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    bool complete = false;
    const size_t length = valid_prefix(bytes, pos, complete);
    if (complete) {
      out.append(bytes.substr(pos, length));
      pos += length;
    } else {
      out.append(kReplacementChar);
      pos += length == 0 ? 1 : length;
    }
  }
  return out;
}

}  // namespace specq::utf8
