// Unicode normalization forms (NFC, NFD, NFKC, NFKD) of UTF-8 text, through ICU's Normalizer2: the tokenizer.json
// normalizers of those names (Qwen2's tokenizer uses NFC).
#pragma once
#include <string>
#include <string_view>

namespace specq {

enum class NormalizationForm { kNFC, kNFD, kNFKC, kNFKD };

// The form named "NFC", "NFD", "NFKC" or "NFKD" as tokenizer.json spells it; throws specq::Error otherwise.
NormalizationForm normalization_form(std::string_view name);

// `text` (valid UTF-8) in normalization form `form`. Throws specq::Error if ICU fails (its data missing).
std::string unicode_normalize(std::string_view text, NormalizationForm form);

}  // namespace specq
