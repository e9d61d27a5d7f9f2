// Feeds arbitrary bytes to the GGUF header parser. It must either throw specq::Error or return a
// header whose tensors lie inside the input with the byte size their dims and type imply; when the
// header has tokenizer metadata, building the tokenizer must also end in success or an Error.
// ASan/UBSan catch the rest.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_model.h"
#include "tokenizer/gguf_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const specq::GgufHeader header = specq::parse_gguf(std::span<const uint8_t>(data, size), "fuzz input");
    volatile uint8_t sink = 0;
    for (const specq::GgufTensor& t : header.tensors) {
      const bool inside = t.data >= data && t.nbytes <= size && t.data - data <= std::ptrdiff_t(size - t.nbytes);
      if (!inside || (t.data - data) % std::ptrdiff_t(header.alignment) != 0) __builtin_trap();
      const auto traits = specq::ggml_type_traits(t.type);
      if (!traits || t.nbytes != size_t(t.numel() / traits->block_elements * traits->block_bytes)) __builtin_trap();
      if (header.find(t.name) != &t) __builtin_trap();
      // Reading every byte lets ASan prove the range really is inside the input buffer.
      for (size_t i = 0; i < t.nbytes; ++i) sink = sink ^ t.data[i];
    }
    // The metadata consumers: model config and tokenizer (each may reject the header).
    try {
      specq::gguf_model_config(header);
    } catch (const specq::Error&) {
    }
    if (header.value("tokenizer.ggml.model") != nullptr) specq::make_gguf_tokenizer(header);
  } catch (const specq::Error&) {
    // Rejected input: the expected outcome for almost all mutations.
  }
  return 0;
}
