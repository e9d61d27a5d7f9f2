// Arbitrary bytes as tokenizer.json (and as tokenizer_config.json): loading either succeeds or throws
// specq::Error; a loaded tokenizer must then encode and decode without crashing.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "tokenizer/hf_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // The first line (if any) doubles as the config, so both parsers see fuzzed input.
  const size_t newline = bytes.find('\n');
  const std::string_view config = newline == std::string_view::npos ? std::string_view() : bytes.substr(0, newline);
  try {
    const auto tokenizer = specq::make_hf_tokenizer(bytes, config);
    const auto ids = tokenizer->encode("Hello world, <s> 1234 ü 👍\r\n", true);
    tokenizer->decode(ids, false);
    tokenizer->decode(ids, true);
  } catch (const specq::Error&) {
    // Expected for malformed input.
  }
  return 0;
}
