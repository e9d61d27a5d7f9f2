// Arbitrary bytes as text for the Llama 3 and Llama 2 tokenizers (loaded once, from $SPECQ_TOKENIZERS_DIR or
// ../shared/tokenizers). Invalid UTF-8 must throw specq::Error; valid text must round-trip through decode and
// stream decoding must agree with decode.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "core/error.h"
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
  return std::string_view(name) == "llama3" ? *llama3 : *llama2;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const bool valid = specq::utf8::first_invalid(text) == std::string::npos;
  for (const char* name : {"llama3", "llama2"}) {
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
