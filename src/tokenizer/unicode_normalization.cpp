#include "tokenizer/unicode_normalization.h"

#include <cstdint>

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>

#include "core/error.h"

namespace specq {

namespace {

const icu::Normalizer2& instance(NormalizationForm form) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* normalizer = nullptr;
  switch (form) {
    case NormalizationForm::kNFC: normalizer = icu::Normalizer2::getNFCInstance(status); break;
    case NormalizationForm::kNFD: normalizer = icu::Normalizer2::getNFDInstance(status); break;
    case NormalizationForm::kNFKC: normalizer = icu::Normalizer2::getNFKCInstance(status); break;
    case NormalizationForm::kNFKD: normalizer = icu::Normalizer2::getNFKDInstance(status); break;
  }
  SPECQ_CHECK(U_SUCCESS(status) && normalizer != nullptr, "ICU cannot load its Unicode normalization data ({})",
              u_errorName(status));
  return *normalizer;
}

}  // namespace

NormalizationForm normalization_form(std::string_view name) {
  if (name == "NFC") return NormalizationForm::kNFC;
  if (name == "NFD") return NormalizationForm::kNFD;
  if (name == "NFKC") return NormalizationForm::kNFKC;
  if (name == "NFKD") return NormalizationForm::kNFKD;
  fail("unknown Unicode normalization form \"{}\" (expected NFC, NFD, NFKC or NFKD)", name);
}

std::string unicode_normalize(std::string_view text, NormalizationForm form) {
  // ASCII is unchanged by every form, and is most of what gets encoded: skip ICU for it.
  bool ascii = true;
  for (const char c : text) ascii &= static_cast<unsigned char>(c) < 0x80;
  if (ascii) return std::string(text);
  SPECQ_CHECK(text.size() <= static_cast<size_t>(INT32_MAX), "text of {} bytes is too long to normalize", text.size());
  const icu::Normalizer2& normalizer = instance(form);
  std::string out;
  out.reserve(text.size());
  icu::StringByteSink<std::string> sink(&out);
  UErrorCode status = U_ZERO_ERROR;
  normalizer.normalizeUTF8(0, icu::StringPiece(text.data(), static_cast<int32_t>(text.size())), sink, nullptr, status);
  SPECQ_CHECK(U_SUCCESS(status), "Unicode normalization failed ({})", u_errorName(status));
  return out;
}

}  // namespace specq
