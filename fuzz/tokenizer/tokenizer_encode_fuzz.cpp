// Arbitrary bytes as text for the Llama 3 and Llama 2 tokenizers (loaded once, from $SPECQ_TOKENIZERS_DIR or
// ../shared/tokenizers) and for the test fixture's byte-level BPE with an NFKC normalizer. Invalid UTF-8 must throw
// specq::Error; valid text must encode, round-trip through decode (Llama 3), and stream decoding must agree with
// decode.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/text_file.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace {

const specq::Tokenizer& tokenizer(const char* name) {
  static auto load = [](const char* which) {
    const char* dir = std::getenv("SPECQ_TOKENIZERS_DIR");
    return specq::Tokenizer::load(std::string(dir ? dir : SPECQ_SHARED_DIR "/tokenizers") + "/" + which);
  };
  static const auto llama3 = load("llama3");
  static const auto llama2 = load("llama2");
  // NFKC rewrites text before the pre-tokenizer (ICU under the sanitizers); the fixture also has a normalized
  // added token.
  static const auto nfkc = [] {
    nlohmann::json golden =
        nlohmann::json::parse(specq::read_text_file(SPECQ_FIXTURE_DIR "/tokenizer/normalizer_goldens.json"));
    golden["tokenizer"]["normalizer"] = golden["normalizers"]["nfkc"];
    return specq::make_hf_tokenizer(golden["tokenizer"].dump(), "");
  }();
  const std::string_view which(name);
  return which == "llama3" ? *llama3 : which == "llama2" ? *llama2 : *nfkc;
}

}  // namespace

// Loading the tokenizers (seconds under the sanitizers) happens here, outside the per-input timeout.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  for (const char* name : {"llama3", "llama2", "nfkc"}) tokenizer(name);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const bool valid = specq::utf8::first_invalid(text) == std::string::npos;
  for (const char* name : {"llama3", "llama2", "nfkc"}) {
    const specq::Tokenizer& tok = tokenizer(name);
    try {
      const auto ids = tok.encode(text, true);
      if (!valid) __builtin_trap();  // invalid UTF-8 must be rejected
      const std::string decoded = tok.decode(ids, false);
      // Byte-level BPE round-trips exactly (BOS aside: this tokenizer.json adds none); SentencePiece-style
      // decoding differs in the spaces around added tokens, as in HF.
      if (std::string_view(name) == "llama3" && decoded != text) __builtin_trap();
      specq::StreamDecoder stream(tok, false);
      std::string streamed;
      for (const int32_t id : ids) streamed += stream.next(id);
      streamed += stream.flush();
      if (streamed != decoded) __builtin_trap();
    } catch (const specq::Error&) {
      if (valid) __builtin_trap();  // valid text must always encode
    }
  }
  return 0;
}
