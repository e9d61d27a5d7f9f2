// tokenizer.json: added tokens -> normalizer -> pre-tokenizer -> BPE model -> post-processor, and back
// through the decoder, following the semantics of Hugging Face `tokenizers`.
#include "tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <deque>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/lookup_tables.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode_normalization.h"
#include "tokenizer/utf8.h"

namespace specq {

namespace {

using json = nlohmann::json;

// ---------------------------------------------------------------------------------------------------------
// GPT-2's byte <-> printable character table used by the ByteLevel pre-tokenizer and decoder.

struct ByteLevelAlphabet {
  std::array<char32_t, 256> byte_to_char{};
  std::unordered_map<char32_t, uint8_t> char_to_byte;

  ByteLevelAlphabet() {
    std::array<bool, 256> printable{};
    for (int b = '!'; b <= '~'; ++b) printable[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
    char32_t next_unprintable = 256;
    for (int b = 0; b < 256; ++b) {
      byte_to_char[b] = printable[b] ? static_cast<char32_t>(b) : next_unprintable++;
      char_to_byte[byte_to_char[b]] = static_cast<uint8_t>(b);
    }
  }

  // The raw bytes a byte-level token string stands for, or nullopt if it has a character outside the table.
  std::optional<std::string> to_bytes(std::string_view token) const {
    std::string bytes;
    for (size_t pos = 0; pos < token.size();) {
      const auto found = char_to_byte.find(utf8::decode_at(token, pos));
      if (found == char_to_byte.end()) return std::nullopt;
      bytes += static_cast<char>(found->second);
      pos += utf8::char_length(static_cast<unsigned char>(token[pos]));
    }
    return bytes;
  }
};

const ByteLevelAlphabet& byte_level_alphabet() {
  static const ByteLevelAlphabet alphabet;
  return alphabet;
}

// GPT-2's split pattern, used by ByteLevel when use_regex is true.
constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Unicode White_Space, which Rust's char::is_whitespace (used by HF for lstrip/rstrip) tests.
bool is_unicode_whitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

std::string replace_all(std::string_view text, std::string_view from, std::string_view to) {
  if (from.empty()) return std::string(text);
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  for (size_t hit; (hit = text.find(from, pos)) != std::string_view::npos; pos = hit + from.size()) {
    out.append(text.substr(pos, hit - pos));
    out.append(to);
  }
  out.append(text.substr(pos));
  return out;
}

const json& required(const json& object, const char* key, std::string_view where) {
  SPECQ_CHECK(object.is_object() && object.contains(key), "{} has no \"{}\"", where, key);
  return object.at(key);
}

// A non-negative integer field; nlohmann's own conversion is undefined for out-of-range numbers.
int64_t read_count(const json& value, std::string_view what, int64_t limit) {
  SPECQ_CHECK(value.is_number_integer(), "{} must be an integer, not {}", what, value.dump());
  const auto number = value.get<int64_t>();
  SPECQ_CHECK(number >= 0 && number < limit && !(value.is_number_unsigned() && value.get<uint64_t>() >= static_cast<uint64_t>(limit)),
              "{} {} is out of range [0, {})", what, value.dump(), limit);
  return number;
}

constexpr int64_t kMaxTokenId = int64_t{1} << 30;

int32_t read_id(const json& value, std::string_view what) { return static_cast<int32_t>(read_count(value, what, kMaxTokenId)); }

std::string string_or_content(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content")) return value.at("content").get<std::string>();
  return "";
}

// A `pattern` field: {"String": "..."} or {"Regex": "..."}; both become a compiled regex.
std::unique_ptr<Regex> compile_pattern(const json& pattern, std::string_view where) {
  SPECQ_CHECK(pattern.is_object(), "{}: \"pattern\" must be an object", where);
  if (pattern.contains("String")) return std::make_unique<Regex>(Regex::escape(pattern.at("String").get<std::string>()));
  if (pattern.contains("Regex")) return std::make_unique<Regex>(pattern.at("Regex").get<std::string>());
  fail("{}: \"pattern\" must hold \"String\" or \"Regex\"", where);
}

// ---------------------------------------------------------------------------------------------------------
// Per-call working memory (encode is const and may run on several threads at once).

struct Piece {
  std::string_view text;
  bool at_text_start;  // begins at offset 0 of the text being encoded (Metaspace's prepend_scheme "first")
};

struct EncodeState {
  std::deque<std::string> storage;  // owns rewritten text that pieces point into
  std::vector<MatchSpan> matches;
  std::vector<Piece> pieces;
  std::vector<Piece> next_pieces;
  BpeScratch scratch;
  std::vector<int32_t> word_ids;
};

// ---------------------------------------------------------------------------------------------------------
// Normalizers

class NormalizerStep {
 public:
  virtual ~NormalizerStep() = default;
  virtual void apply(std::string& text) const = 0;
};

class PrependNormalizer : public NormalizerStep {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void apply(std::string& text) const override {
    if (!text.empty()) text.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public NormalizerStep {
 public:
  // A {"String": ...} pattern is replaced literally (much faster than a regex); {"Regex": ...} by matches.
  ReplaceNormalizer(const json& pattern, std::string content, std::string_view where) : content_(std::move(content)) {
    if (pattern.is_object() && pattern.contains("String")) literal_ = pattern.at("String").get<std::string>();
    else regex_ = compile_pattern(pattern, where);
  }
  void apply(std::string& text) const override {
    if (!regex_) {
      if (text.find(literal_) != std::string::npos) text = replace_all(text, literal_, content_);
      return;
    }
    std::vector<MatchSpan> matches;
    regex_->find_all(text, matches);
    if (matches.empty()) return;
    std::string out;
    size_t pos = 0;
    for (const MatchSpan& match : matches) {
      out.append(text, pos, match.begin - pos);
      out.append(content_);
      pos = match.end;
    }
    out.append(text, pos);
    text = std::move(out);
  }

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
  std::string content_;
};

class StripNormalizer : public NormalizerStep {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void apply(std::string& text) const override { text = std::string(utf8::trim(text, is_unicode_whitespace, left_, right_)); }

 private:
  bool left_, right_;
};

class UnicodeNormalizer : public NormalizerStep {
 public:
  explicit UnicodeNormalizer(NormalizationForm form) : form_(form) {}
  void apply(std::string& text) const override { text = unicode_normalize(text, form_); }

 private:
  NormalizationForm form_;
};

void parse_normalizer(const json& spec, std::vector<std::unique_ptr<NormalizerStep>>& steps) {
  if (spec.is_null()) return;
  const std::string type = required(spec, "type", "normalizer").get<std::string>();
  if (type == "Sequence") {
    for (const json& child : required(spec, "normalizers", "Sequence normalizer")) parse_normalizer(child, steps);
  } else if (type == "Prepend") {
    steps.push_back(std::make_unique<PrependNormalizer>(required(spec, "prepend", "Prepend normalizer").get<std::string>()));
  } else if (type == "Replace") {
    steps.push_back(std::make_unique<ReplaceNormalizer>(required(spec, "pattern", "Replace normalizer"),
                                                        required(spec, "content", "Replace normalizer").get<std::string>(),
                                                        "Replace normalizer"));
  } else if (type == "Strip") {
    steps.push_back(std::make_unique<StripNormalizer>(spec.value("strip_left", true), spec.value("strip_right", true)));
  } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    steps.push_back(std::make_unique<UnicodeNormalizer>(normalization_form(type)));
  } else {
    fail("unsupported normalizer type \"{}\" (supported: Sequence, Prepend, Replace, Strip, NFC, NFD, NFKC, NFKD)",
         type);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Pre-tokenizers

class PreTokenizerStep {
 public:
  virtual ~PreTokenizerStep() = default;
  virtual void apply(EncodeState& state) const = 0;
};

enum class SplitBehavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext, kContiguous };

SplitBehavior parse_behavior(const std::string& name) {
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  fail("unknown split behavior \"{}\"", name);
}

struct Span {
  size_t begin;
  size_t end;
  bool is_match;
};

// Splits every piece at the matches of `pattern`, combining matches and the text between them as HF's
// SplitDelimiterBehavior does. Empty pieces are dropped.
void split_pieces(const Regex& pattern, SplitBehavior behavior, bool invert, EncodeState& state) {
  state.next_pieces.clear();
  std::vector<Span> spans;
  std::vector<Span> combined;
  for (const Piece& piece : state.pieces) {
    pattern.find_all(piece.text, state.matches);
    spans.clear();
    size_t pos = 0;
    for (const MatchSpan& match : state.matches) {
      if (match.begin > pos) spans.push_back({pos, match.begin, invert});
      spans.push_back({match.begin, match.end, !invert});
      pos = match.end;
    }
    if (pos < piece.text.size()) spans.push_back({pos, piece.text.size(), invert});

    combined.clear();
    bool previous_match = false;
    switch (behavior) {
      case SplitBehavior::kIsolated:
        combined = spans;
        break;
      case SplitBehavior::kRemoved:
        for (const Span& span : spans)
          if (!span.is_match) combined.push_back(span);
        break;
      case SplitBehavior::kMergedWithPrevious:
        for (const Span& span : spans) {
          if (span.is_match && !previous_match && !combined.empty()) combined.back().end = span.end;
          else combined.push_back(span);
          previous_match = span.is_match;
        }
        break;
      case SplitBehavior::kMergedWithNext:
        for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
          if (it->is_match && !previous_match && !combined.empty()) combined.back().begin = it->begin;
          else combined.push_back(*it);
          previous_match = it->is_match;
        }
        std::reverse(combined.begin(), combined.end());
        break;
      case SplitBehavior::kContiguous:
        for (const Span& span : spans) {
          if (span.is_match == previous_match && !combined.empty()) combined.back().end = span.end;
          else combined.push_back(span);
          previous_match = span.is_match;
        }
        break;
    }
    for (const Span& span : combined) {
      if (span.end > span.begin)
        state.next_pieces.push_back({piece.text.substr(span.begin, span.end - span.begin), piece.at_text_start && span.begin == 0});
    }
  }
  state.pieces.swap(state.next_pieces);
}

class SplitPreTokenizer : public PreTokenizerStep {
 public:
  SplitPreTokenizer(std::unique_ptr<Regex> pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  void apply(EncodeState& state) const override { split_pieces(*pattern_, behavior_, invert_, state); }

 private:
  std::unique_ptr<Regex> pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

// Our byte-level BPE works on raw bytes (the vocabulary is converted at load time), so the byte -> character
// mapping itself is implicit; what remains is the optional prefix space and GPT-2 regex split.
class ByteLevelPreTokenizer : public PreTokenizerStep {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), regex_(use_regex ? std::make_unique<Regex>(kGpt2Pattern) : nullptr) {}
  void apply(EncodeState& state) const override {
    if (add_prefix_space_) {
      for (Piece& piece : state.pieces) {
        if (piece.text.starts_with(' ')) continue;
        std::string& prefixed = state.storage.emplace_back(1, ' ');
        prefixed.append(piece.text);
        piece.text = prefixed;
      }
    }
    if (regex_) split_pieces(*regex_, SplitBehavior::kIsolated, false, state);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

enum class PrependScheme { kAlways, kNever, kFirst };

class MetaspacePreTokenizer : public PreTokenizerStep {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split),
        replacement_regex_(std::make_unique<Regex>(Regex::escape(replacement_))) {}
  void apply(EncodeState& state) const override {
    for (Piece& piece : state.pieces) {
      std::string text = replace_all(piece.text, " ", replacement_);
      const bool prepend = scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && piece.at_text_start);
      if (prepend && !text.starts_with(replacement_)) text.insert(0, replacement_);
      piece.text = state.storage.emplace_back(std::move(text));
    }
    if (split_) split_pieces(*replacement_regex_, SplitBehavior::kMergedWithNext, false, state);
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
  std::unique_ptr<Regex> replacement_regex_;
};

PrependScheme parse_prepend_scheme(const json& spec) {
  if (spec.contains("prepend_scheme")) {
    const std::string scheme = spec.at("prepend_scheme").get<std::string>();
    if (scheme == "always") return PrependScheme::kAlways;
    if (scheme == "never") return PrependScheme::kNever;
    if (scheme == "first") return PrependScheme::kFirst;
    fail("unknown Metaspace prepend_scheme \"{}\"", scheme);
  }
  // Older files have add_prefix_space instead.
  return spec.value("add_prefix_space", true) ? PrependScheme::kAlways : PrependScheme::kNever;
}

struct PreTokenizerPipeline {
  std::vector<std::unique_ptr<PreTokenizerStep>> steps;
  bool byte_level = false;
};

void parse_pre_tokenizer(const json& spec, PreTokenizerPipeline& pipeline) {
  if (spec.is_null()) return;
  const std::string type = required(spec, "type", "pre_tokenizer").get<std::string>();
  // Steps after ByteLevel would see byte-level characters, which our raw-byte representation does not keep.
  SPECQ_CHECK(!pipeline.byte_level || type == "Sequence",
              "pre_tokenizer \"{}\" after ByteLevel is not supported", type);
  if (type == "Sequence") {
    for (const json& child : required(spec, "pretokenizers", "Sequence pre_tokenizer")) parse_pre_tokenizer(child, pipeline);
  } else if (type == "Split") {
    pipeline.steps.push_back(std::make_unique<SplitPreTokenizer>(
        compile_pattern(required(spec, "pattern", "Split pre_tokenizer"), "Split pre_tokenizer"),
        parse_behavior(required(spec, "behavior", "Split pre_tokenizer").get<std::string>()), spec.value("invert", false)));
  } else if (type == "ByteLevel") {
    pipeline.steps.push_back(
        std::make_unique<ByteLevelPreTokenizer>(spec.value("add_prefix_space", false), spec.value("use_regex", true)));
    pipeline.byte_level = true;
  } else if (type == "Metaspace") {
    pipeline.steps.push_back(std::make_unique<MetaspacePreTokenizer>(
        spec.value("replacement", std::string("\xE2\x96\x81")), parse_prepend_scheme(spec), spec.value("split", true)));
  } else if (type == "Digits") {
    const bool individual = spec.value("individual_digits", false);
    pipeline.steps.push_back(std::make_unique<SplitPreTokenizer>(std::make_unique<Regex>(individual ? "\\p{N}" : "\\p{N}+"),
                                                                 SplitBehavior::kIsolated, false));
  } else if (type == "Whitespace") {
    pipeline.steps.push_back(
        std::make_unique<SplitPreTokenizer>(std::make_unique<Regex>(R"(\w+|[^\w\s]+)"), SplitBehavior::kRemoved, true));
  } else if (type == "WhitespaceSplit") {
    pipeline.steps.push_back(
        std::make_unique<SplitPreTokenizer>(std::make_unique<Regex>(R"(\s+)"), SplitBehavior::kRemoved, false));
  } else {
    fail("unsupported pre_tokenizer type \"{}\" (supported: Sequence, Split, ByteLevel, Metaspace, Digits, "
         "Whitespace, WhitespaceSplit)",
         type);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Decoders: each step rewrites the list of token strings, as HF's decode_chain does.

class DecoderStep {
 public:
  virtual ~DecoderStep() = default;
  virtual void apply(std::vector<std::string>& tokens) const = 0;
};

class ByteLevelDecoder : public DecoderStep {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& token : tokens) {
      // A token with a character outside the table (an added token, say) contributes its own UTF-8 bytes.
      if (auto raw = byte_level_alphabet().to_bytes(token)) bytes += *raw;
      else bytes += token;
    }
    tokens.assign(1, utf8::lossy(bytes));
  }
};

class ReplaceDecoder : public DecoderStep {
 public:
  ReplaceDecoder(const json& pattern, std::string content) : normalizer_(pattern, std::move(content), "Replace decoder") {}
  void apply(std::vector<std::string>& tokens) const override {
    for (std::string& token : tokens) normalizer_.apply(token);
  }

 private:
  ReplaceNormalizer normalizer_;  // same text rewrite, applied per token
};

// Parses "<0xAB>" into the byte it stands for.
std::optional<uint8_t> byte_fallback_value(std::string_view token) {
  if (token.size() != 6 || !token.starts_with("<0x") || token[5] != '>') return std::nullopt;
  int value = 0;
  for (size_t i = 3; i < 5; ++i) {
    const char c = token[i];
    int digit;
    if (c >= '0' && c <= '9') digit = c - '0';
    else if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
    else return std::nullopt;
    value = value * 16 + digit;
  }
  return static_cast<uint8_t>(value);
}

class ByteFallbackDecoder : public DecoderStep {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending_bytes;
    size_t pending_count = 0;
    auto flush = [&] {
      if (pending_count == 0) return;
      // HF turns a run of byte tokens into text only if the whole run is valid UTF-8; otherwise every byte
      // token of the run becomes one U+FFFD.
      if (utf8::first_invalid(pending_bytes) == std::string_view::npos) {
        out.push_back(pending_bytes);
      } else {
        for (size_t i = 0; i < pending_count; ++i) out.emplace_back(utf8::kReplacementChar);
      }
      pending_bytes.clear();
      pending_count = 0;
    };
    for (std::string& token : tokens) {
      if (auto byte = byte_fallback_value(token)) {
        pending_bytes += static_cast<char>(*byte);
        ++pending_count;
      } else {
        flush();
        out.push_back(std::move(token));
      }
    }
    flush();
    tokens.swap(out);
  }
};

class FuseDecoder : public DecoderStep {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::string joined;
    for (const std::string& token : tokens) joined += token;
    tokens.assign(1, std::move(joined));
  }
};

class StripDecoder : public DecoderStep {
 public:
  StripDecoder(std::string content, size_t start, size_t stop) : content_(std::move(content)), start_(start), stop_(stop) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (std::string& token : tokens) {
      size_t begin = 0, end = token.size();
      for (size_t i = 0; i < start_ && token.compare(begin, content_.size(), content_) == 0 && begin < end; ++i)
        begin += content_.size();
      for (size_t i = 0; i < stop_ && end >= begin + content_.size() &&
                         token.compare(end - content_.size(), content_.size(), content_) == 0;
           ++i)
        end -= content_.size();
      token = token.substr(begin, end - begin);
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

class MetaspaceDecoder : public DecoderStep {
 public:
  MetaspaceDecoder(std::string replacement, PrependScheme scheme) : replacement_(std::move(replacement)), scheme_(scheme) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string text = replace_all(tokens[i], replacement_, " ");
      // The space the pre-tokenizer prepended to the first word is not part of the text.
      if (i == 0 && scheme_ != PrependScheme::kNever && tokens[i].starts_with(replacement_)) text.erase(0, 1);
      tokens[i] = std::move(text);
    }
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
};

struct DecoderPipeline {
  std::vector<std::unique_ptr<DecoderStep>> steps;
  bool only_byte_level = false;  // enables the fast path: concatenate raw bytes, then lossy UTF-8
};

void parse_decoder(const json& spec, DecoderPipeline& pipeline) {
  if (spec.is_null()) return;
  const std::string type = required(spec, "type", "decoder").get<std::string>();
  if (type == "Sequence") {
    for (const json& child : required(spec, "decoders", "Sequence decoder")) parse_decoder(child, pipeline);
  } else if (type == "ByteLevel") {
    pipeline.steps.push_back(std::make_unique<ByteLevelDecoder>());
  } else if (type == "Replace") {
    pipeline.steps.push_back(std::make_unique<ReplaceDecoder>(required(spec, "pattern", "Replace decoder"),
                                                              required(spec, "content", "Replace decoder").get<std::string>()));
  } else if (type == "ByteFallback") {
    pipeline.steps.push_back(std::make_unique<ByteFallbackDecoder>());
  } else if (type == "Fuse") {
    pipeline.steps.push_back(std::make_unique<FuseDecoder>());
  } else if (type == "Strip") {
    const std::string content = required(spec, "content", "Strip decoder").get<std::string>();
    pipeline.steps.push_back(std::make_unique<StripDecoder>(content, static_cast<size_t>(read_count(spec.value("start", json(0)), "Strip decoder start", 1 << 20)),
                                                              static_cast<size_t>(read_count(spec.value("stop", json(0)), "Strip decoder stop", 1 << 20))));
  } else if (type == "Metaspace") {
    pipeline.steps.push_back(std::make_unique<MetaspaceDecoder>(spec.value("replacement", std::string("\xE2\x96\x81")),
                                                                parse_prepend_scheme(spec)));
  } else {
    fail("unsupported decoder type \"{}\" (supported: Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, "
         "Metaspace)",
         type);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Added tokens: matched in the raw text (or, for normalized ones, in the normalized text) before the model.

struct AddedToken {
  std::string content;
  int32_t id;
  bool special;
  bool lstrip;
  bool rstrip;
  bool single_word;
  bool normalized;
};

struct Segment {
  std::string_view text;  // empty when this segment is an added token
  int32_t added_id;       // -1 for text
  bool at_text_start;
};

bool is_word_byte(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }

// Leftmost-longest matcher over a set of added tokens.
class AddedTokenMatcher {
 public:
  void add(const AddedToken& token) {
    if (token.content.empty()) return;
    by_first_byte_[static_cast<unsigned char>(token.content[0])].push_back(token);
  }
  void finish() {
    for (auto& candidates : by_first_byte_)
      std::stable_sort(candidates.begin(), candidates.end(),
                       [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  }
  bool empty() const {
    return std::all_of(by_first_byte_.begin(), by_first_byte_.end(), [](const auto& list) { return list.empty(); });
  }

  // Splits `text` into text segments and added tokens, appending to `out`.
  void split(std::string_view text, bool at_text_start, std::vector<Segment>& out) const {
    size_t text_begin = 0;
    size_t pos = 0;
    while (pos < text.size()) {
      const AddedToken* hit = longest_at(text, pos);
      if (hit == nullptr) {
        ++pos;
        continue;
      }
      size_t match_begin = pos, match_end = pos + hit->content.size();
      if (hit->lstrip) match_begin = skip_whitespace_backward(text, text_begin, match_begin);
      if (hit->rstrip) match_end = skip_whitespace_forward(text, match_end);
      if (match_begin > text_begin)
        out.push_back({text.substr(text_begin, match_begin - text_begin), -1, at_text_start && text_begin == 0});
      out.push_back({{}, hit->id, false});
      text_begin = pos = match_end;
    }
    if (text_begin < text.size()) out.push_back({text.substr(text_begin), -1, at_text_start && text_begin == 0});
  }

 private:
  const AddedToken* longest_at(std::string_view text, size_t pos) const {
    for (const AddedToken& token : by_first_byte_[static_cast<unsigned char>(text[pos])]) {
      if (text.compare(pos, token.content.size(), token.content) != 0) continue;
      if (token.single_word) {
        const size_t end = pos + token.content.size();
        const bool word_before = pos > 0 && is_word_byte(static_cast<unsigned char>(text[pos - 1]));
        const bool word_after = end < text.size() && is_word_byte(static_cast<unsigned char>(text[end]));
        if (word_before || word_after) continue;
      }
      return &token;
    }
    return nullptr;
  }
  static size_t skip_whitespace_backward(std::string_view text, size_t floor, size_t pos) {
    while (pos > floor) {
      size_t start = pos - 1;
      while (start > floor && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
      if (!is_unicode_whitespace(utf8::decode_at(text, start))) break;
      pos = start;
    }
    return pos;
  }
  static size_t skip_whitespace_forward(std::string_view text, size_t pos) {
    while (pos < text.size() && is_unicode_whitespace(utf8::decode_at(text, pos)))
      pos += utf8::char_length(static_cast<unsigned char>(text[pos]));
    return pos;
  }

  std::array<std::vector<AddedToken>, 256> by_first_byte_;
};

// ---------------------------------------------------------------------------------------------------------

class HfTokenizer : public Tokenizer {
 public:
  HfTokenizer(const json& spec, const json& config) {
    SPECQ_CHECK(spec.is_object(), "tokenizer.json must hold a JSON object");
    const json& model = required(spec, "model", "tokenizer.json");
    const size_t declared = (model.contains("vocab") ? model["vocab"].size() : 0) +
                            (spec.contains("added_tokens") ? spec["added_tokens"].size() : 0);
    id_limit_ = static_cast<int32_t>(std::min<size_t>(declared + 65536, kMaxTokenId));
    parse_normalizer(spec.value("normalizer", json()), normalizers_);
    parse_pre_tokenizer(spec.value("pre_tokenizer", json()), pre_tokenizer_);
    parse_decoder(spec.value("decoder", json()), decoder_);
    decoder_.only_byte_level = decoder_.steps.size() == 1 && dynamic_cast<ByteLevelDecoder*>(decoder_.steps[0].get());
    parse_model(model);
    parse_added_tokens(spec.value("added_tokens", json::array()));
    parse_post_processor(spec.value("post_processor", json()));
    parse_config(config);
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special) const override {
    utf8::check_valid(text, "text to encode");
    std::vector<int32_t> ids;
    if (add_special) ids = template_prefix_;
    EncodeState state;
    std::vector<Segment> raw_segments;
    raw_tokens_.split(text, true, raw_segments);
    std::vector<Segment> segments;
    for (const Segment& raw : raw_segments) {
      if (raw.added_id >= 0) {
        ids.push_back(raw.added_id);
        continue;
      }
      std::string_view normalized = raw.text;
      if (!normalizers_.empty()) {
        std::string rewritten(raw.text);
        for (const auto& step : normalizers_) step->apply(rewritten);
        normalized = state.storage.emplace_back(std::move(rewritten));
      }
      segments.clear();
      normalized_tokens_.split(normalized, raw.at_text_start, segments);
      for (const Segment& segment : segments) {
        if (segment.added_id >= 0) ids.push_back(segment.added_id);
        else encode_segment(segment, state, ids);
      }
    }
    if (add_special) ids.insert(ids.end(), template_suffix_.begin(), template_suffix_.end());
    return ids;
  }

  std::string decode(std::span<const int32_t> ids, bool skip_special) const override {
    if (decoder_.only_byte_level) {
      std::string bytes;
      for (const int32_t id : ids) {
        check_id(id);
        if (skip_special && special_[id]) continue;
        bytes += decoded_bytes_[id];
      }
      return utf8::lossy(bytes);
    }
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (const int32_t id : ids) {
      check_id(id);
      if ((skip_special && special_[id]) || !has_token_[id]) continue;
      tokens.push_back(id_to_token_[id]);
    }
    if (decoder_.steps.empty()) {
      std::string joined;
      for (size_t i = 0; i < tokens.size(); ++i) joined += (i ? " " : "") + tokens[i];
      return joined;
    }
    for (const auto& step : decoder_.steps) step->apply(tokens);
    std::string joined;
    for (const std::string& token : tokens) joined += token;
    return joined;
  }

  int32_t vocab_size() const override { return static_cast<int32_t>(id_to_token_.size()); }
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  std::vector<int32_t> eos_ids() const override { return eos_ids_; }
  std::optional<int32_t> token_to_id(std::string_view token) const override {
    const int32_t id = token_lookup_.find(token);
    return id >= 0 ? std::optional<int32_t>(id) : std::nullopt;
  }
  std::string id_to_token(int32_t id) const override {
    check_id(id);
    return id_to_token_[id];
  }
  bool is_special(int32_t id) const override {
    check_id(id);
    return special_[id];
  }
  std::optional<std::string> chat_template() const override { return chat_template_; }
  std::string bos_token() const override { return bos_token_; }
  std::string eos_token() const override { return eos_token_; }

 private:
  void set_token(int32_t id, const std::string& token) {
    // Ids index dense tables, so a stray huge id must not make us allocate gigabytes.
    SPECQ_CHECK(id < id_limit_, "token id {} for {:?} is far beyond the {} tokens in the file", id, token, id_limit_ - 65536);
    if (static_cast<size_t>(id) >= id_to_token_.size()) {
      id_to_token_.resize(id + 1);
      has_token_.resize(id + 1, false);
    }
    id_to_token_[id] = token;
    has_token_[id] = true;
  }

  void parse_model(const json& model) {
    const std::string type = model.value("type", std::string("BPE"));
    SPECQ_CHECK(type == "BPE", "unsupported model type \"{}\" (only BPE is supported)", type);
    // Null or "" (as Qwen2's tokenizer.json writes them) both mean no affix.
    const auto no_affix = [&](const char* key) {
      const json value = model.value(key, json());
      return value.is_null() || (value.is_string() && value.get<std::string>().empty());
    };
    SPECQ_CHECK(no_affix("continuing_subword_prefix") && no_affix("end_of_word_suffix"),
                "BPE continuing_subword_prefix / end_of_word_suffix are not supported");
    const json dropout = model.value("dropout", json());
    SPECQ_CHECK(dropout.is_null() || (dropout.is_number() && dropout.get<double>() == 0.0), "BPE dropout is not supported (it makes encoding random)");
    ignore_merges_ = model.value("ignore_merges", false);
    byte_fallback_ = model.value("byte_fallback", false);
    fuse_unk_ = model.value("fuse_unk", false);

    const json& vocab = required(model, "vocab", "model");
    SPECQ_CHECK(vocab.is_object(), "model.vocab must be an object of token -> id");
    const ByteLevelAlphabet& alphabet = byte_level_alphabet();
    for (const auto& [token, id_value] : vocab.items()) {
      const int32_t id = read_id(id_value, "vocabulary id");
      utf8::check_valid(token, "a vocabulary token");
      set_token(id, token);
      token_lookup_.insert(token, id);
      if (pre_tokenizer_.byte_level) {
        // Byte-level tokens are looked up by the bytes they stand for; others can never be produced.
        if (auto bytes = alphabet.to_bytes(token)) model_lookup_.insert(*bytes, id);
      } else {
        model_lookup_.insert(token, id);
      }
    }

    const json& merges = required(model, "merges", "model");
    SPECQ_CHECK(merges.is_array(), "model.merges must be an array");
    int32_t rank = 0;
    for (const json& merge : merges) {
      std::string left, right;
      if (merge.is_string()) {
        const std::string line = merge.get<std::string>();
        const size_t space = line.find(' ');
        SPECQ_CHECK(space != std::string::npos, "merge {:?} (rank {}) is not of the form \"a b\"", line, rank);
        left = line.substr(0, space);
        right = line.substr(space + 1);
      } else {
        SPECQ_CHECK(merge.is_array() && merge.size() == 2, "merge #{} must be \"a b\" or [\"a\", \"b\"]", rank);
        left = merge[0].get<std::string>();
        right = merge[1].get<std::string>();
      }
      const int32_t left_id = token_lookup_.find(left), right_id = token_lookup_.find(right);
      const int32_t merged_id = token_lookup_.find(left + right);
      SPECQ_CHECK(left_id >= 0 && right_id >= 0, "merge {:?} + {:?} (rank {}) uses a token not in the vocabulary", left,
                  right, rank);
      SPECQ_CHECK(merged_id >= 0, "merge {:?} + {:?} (rank {}) makes a token not in the vocabulary", left, right, rank);
      merges_.insert(left_id, right_id, {rank, merged_id});
      ++rank;
    }

    // Initial symbols: single bytes (byte-level) or characters; byte fallback tokens for unknown characters.
    byte_ids_.fill(-1);
    ascii_ids_.fill(-1);
    byte_fallback_ids_.fill(-1);
    for (int b = 0; b < 256; ++b) {
      if (pre_tokenizer_.byte_level) byte_ids_[b] = model_lookup_.find(std::string(1, static_cast<char>(b)));
      if (b < 0x80) ascii_ids_[b] = model_lookup_.find(std::string(1, static_cast<char>(b)));
      byte_fallback_ids_[b] = token_lookup_.find(fmt::format("<0x{:02X}>", b));
    }
    const json unk = model.value("unk_token", json());
    if (unk.is_string()) {
      unk_id_ = token_lookup_.find(unk.get<std::string>());
      SPECQ_CHECK(unk_id_ >= 0, "unk_token {:?} is not in the vocabulary", unk.get<std::string>());
    }
  }

  void parse_added_tokens(const json& added) {
    SPECQ_CHECK(added.is_array(), "added_tokens must be an array");
    for (const json& entry : added) {
      AddedToken token{required(entry, "content", "added token").get<std::string>(),
                       read_id(required(entry, "id", "added token"), "added token id"),
                       entry.value("special", false),
                       entry.value("lstrip", false),
                       entry.value("rstrip", false),
                       entry.value("single_word", false),
                       entry.value("normalized", false)};
      utf8::check_valid(token.content, "an added token");
      token_lookup_.insert(token.content, token.id);
      if (token.special) special_ids_.push_back(token.id);
      // Tokens marked "normalized" are looked for in the normalized text, the others in the raw text. As in HF,
      // the normalizer rewrites their content too (under NFC, a decomposed token matches either spelling), and
      // the rewritten content is what id_to_token and decode give.
      if (token.normalized && !normalizers_.empty()) {
        for (const auto& step : normalizers_) step->apply(token.content);
        normalized_tokens_.add(token);
      } else {
        raw_tokens_.add(token);
      }
      set_token(token.id, token.content);
    }
    raw_tokens_.finish();
    normalized_tokens_.finish();

    special_.assign(id_to_token_.size(), false);
    for (const int32_t id : special_ids_) special_[id] = true;
    decoded_bytes_.resize(id_to_token_.size());
    for (size_t id = 0; id < id_to_token_.size(); ++id) {
      if (!has_token_[id]) continue;
      auto raw = byte_level_alphabet().to_bytes(id_to_token_[id]);
      decoded_bytes_[id] = raw ? *raw : id_to_token_[id];
    }
  }

  // The ids TemplateProcessing (or Bert/Roberta processing) puts around a single sequence.
  void parse_post_processor(const json& spec) {
    if (spec.is_null()) return;
    const std::string type = required(spec, "type", "post_processor").get<std::string>();
    if (type == "Sequence") {
      for (const json& child : required(spec, "processors", "Sequence post_processor")) parse_post_processor(child);
    } else if (type == "ByteLevel") {
      // Only adjusts offsets; ids are unchanged.
    } else if (type == "TemplateProcessing") {
      const json& special_tokens = spec.value("special_tokens", json::object());
      bool seen_sequence = false;
      for (const json& item : required(spec, "single", "TemplateProcessing")) {
        if (item.contains("Sequence")) {
          seen_sequence = true;
          continue;
        }
        const std::string name = required(required(item, "SpecialToken", "template item"), "id", "SpecialToken").get<std::string>();
        SPECQ_CHECK(special_tokens.contains(name), "TemplateProcessing uses special token {:?} it does not define", name);
        for (const json& id : required(special_tokens.at(name), "ids", "TemplateProcessing special token")) {
          const int32_t value = read_id(id, "TemplateProcessing id");
          check_id(value);
          (seen_sequence ? template_suffix_ : template_prefix_).push_back(value);
        }
      }
    } else if (type == "BertProcessing" || type == "RobertaProcessing") {
      // Both store [token, id] pairs: cls before the sequence, sep after.
      const int32_t cls = read_id(required(spec, "cls", type).at(1), "cls id");
      const int32_t sep = read_id(required(spec, "sep", type).at(1), "sep id");
      check_id(cls);
      check_id(sep);
      template_prefix_.assign(1, cls);
      template_suffix_.assign(1, sep);
    } else {
      fail("unsupported post_processor type \"{}\"", type);
    }
  }

  void parse_config(const json& config) {
    if (!template_prefix_.empty()) bos_id_ = template_prefix_.front();
    if (config.is_null()) return;
    SPECQ_CHECK(config.is_object(), "tokenizer_config.json must hold a JSON object");
    bos_token_ = string_or_content(config.value("bos_token", json()));
    eos_token_ = string_or_content(config.value("eos_token", json()));
    if (!bos_token_.empty()) {
      const int32_t id = token_lookup_.find(bos_token_);
      SPECQ_CHECK(id >= 0, "bos_token {:?} is not in the vocabulary", bos_token_);
      bos_id_ = id;
    }
    if (!eos_token_.empty()) {
      const int32_t id = token_lookup_.find(eos_token_);
      SPECQ_CHECK(id >= 0, "eos_token {:?} is not in the vocabulary", eos_token_);
      eos_ids_.push_back(id);
    }
    const json templates = config.value("chat_template", json());
    if (templates.is_string()) {
      chat_template_ = templates.get<std::string>();
    } else if (templates.is_array()) {
      // Named templates: [{"name": "default", "template": "..."}, ...]
      for (const json& named : templates)
        if (named.value("name", std::string()) == "default") chat_template_ = named.value("template", std::string());
    }
    // The template's end-of-turn token also ends a generation.
    if (chat_template_) {
      for (const int32_t id : special_ids_) {
        const std::string& token = id_to_token_[id];
        const bool ends_turn = token == "<|eot_id|>" || token == "<|im_end|>" || token == "<|eom_id|>";
        if (ends_turn && chat_template_->find(token) != std::string::npos &&
            std::find(eos_ids_.begin(), eos_ids_.end(), id) == eos_ids_.end())
          eos_ids_.push_back(id);
      }
    }
  }

  void encode_segment(const Segment& segment, EncodeState& state, std::vector<int32_t>& ids) const {
    state.pieces.assign(1, Piece{segment.text, segment.at_text_start});
    for (const auto& step : pre_tokenizer_.steps) step->apply(state);
    for (const Piece& piece : state.pieces) encode_word(piece.text, state, ids);
  }

  void encode_word(std::string_view word, EncodeState& state, std::vector<int32_t>& ids) const {
    if (ignore_merges_) {
      // Llama 3: a pre-token that is itself in the vocabulary is emitted whole, without merging.
      if (const int32_t id = model_lookup_.find(word); id >= 0) {
        ids.push_back(id);
        return;
      }
    }
    auto& symbols = state.word_ids;
    symbols.clear();
    bool previous_unk = false;
    auto push_unknown = [&] {
      if (unk_id_ < 0) return;  // HF drops characters it has no token for when there is no unk token
      if (!(fuse_unk_ && previous_unk)) symbols.push_back(unk_id_);
      previous_unk = true;
    };
    if (pre_tokenizer_.byte_level) {
      for (const char c : word) {
        const int32_t id = byte_ids_[static_cast<unsigned char>(c)];
        if (id >= 0) {
          symbols.push_back(id);
          previous_unk = false;
        } else {
          push_unknown();
        }
      }
    } else {
      for (size_t pos = 0; pos < word.size();) {
        if (const auto byte = static_cast<unsigned char>(word[pos]); byte < 0x80 && ascii_ids_[byte] >= 0) {
          symbols.push_back(ascii_ids_[byte]);
          previous_unk = false;
          ++pos;
          continue;
        }
        const size_t length = utf8::char_length(static_cast<unsigned char>(word[pos]));
        const std::string_view character = word.substr(pos, length);
        pos += length;
        if (const int32_t id = model_lookup_.find(character); id >= 0) {
          symbols.push_back(id);
          previous_unk = false;
          continue;
        }
        if (byte_fallback_ &&
            std::all_of(character.begin(), character.end(), [&](char c) { return byte_fallback_ids_[static_cast<unsigned char>(c)] >= 0; })) {
          for (const char c : character) symbols.push_back(byte_fallback_ids_[static_cast<unsigned char>(c)]);
          previous_unk = false;
          continue;
        }
        push_unknown();
      }
    }
    bpe_merge(merges_, symbols, state.scratch);
    ids.insert(ids.end(), symbols.begin(), symbols.end());
  }

  std::vector<std::unique_ptr<NormalizerStep>> normalizers_;
  PreTokenizerPipeline pre_tokenizer_;
  DecoderPipeline decoder_;

  StringIdMap token_lookup_;  // token string (as stored in the file) -> id, added tokens included
  StringIdMap model_lookup_;  // what the BPE model looks up: raw bytes for byte-level vocabularies
  PairMergeMap merges_;
  std::array<int32_t, 256> byte_ids_{};
  std::array<int32_t, 256> byte_fallback_ids_{};
  std::array<int32_t, 128> ascii_ids_{};  // character-level BPE: vocabulary ids of ASCII characters, -1 if none
  int32_t unk_id_ = -1;
  bool ignore_merges_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;

  int32_t id_limit_ = 0;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_token_;
  std::vector<bool> special_;
  std::vector<int32_t> special_ids_;
  std::vector<std::string> decoded_bytes_;  // per id, for the ByteLevel decoder fast path
  AddedTokenMatcher raw_tokens_;
  AddedTokenMatcher normalized_tokens_;
  std::vector<int32_t> template_prefix_;
  std::vector<int32_t> template_suffix_;

  std::optional<int32_t> bos_id_;
  std::vector<int32_t> eos_ids_;
  std::string bos_token_;
  std::string eos_token_;
  std::optional<std::string> chat_template_;
};

json parse_json(std::string_view text, std::string_view what) {
  try {
    return json::parse(text);
  } catch (const json::exception& error) {
    fail("{} is not valid JSON: {}", what, error.what());
  }
}

}  // namespace

std::unique_ptr<Tokenizer> make_hf_tokenizer(std::string_view tokenizer_json, std::string_view config_json) {
  const json spec = parse_json(tokenizer_json, "tokenizer.json");
  const json config = config_json.empty() ? json() : parse_json(config_json, "tokenizer_config.json");
  return make_hf_tokenizer_from_json(spec, config);
}

std::unique_ptr<Tokenizer> make_hf_tokenizer_from_json(const nlohmann::json& spec, const nlohmann::json& config) {
  try {
    return std::make_unique<HfTokenizer>(spec, config);
  } catch (const json::exception& error) {
    // Wrong JSON types (a number where a string belongs, ...) surface here.
    fail("malformed tokenizer.json / tokenizer_config.json: {}", error.what());
  }
}

}  // namespace specq
