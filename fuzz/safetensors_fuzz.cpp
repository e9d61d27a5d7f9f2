// Feeds arbitrary bytes to the safetensors parser. It must either throw specq::Error or return
// tensors whose bytes lie inside the input and match their shape and dtype; ASan/UBSan catch the rest.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> input(data, size);
  try {
    const specq::SafetensorsHeader header = specq::parse_safetensors(input, "fuzz input");
    volatile uint8_t sink = 0;
    for (const specq::SafetensorsTensor& t : header.tensors) {
      const bool inside = t.data >= data && t.nbytes <= size && t.data - data <= std::ptrdiff_t(size - t.nbytes);
      if (!inside || t.nbytes != size_t(t.numel()) * specq::dtype_size(t.dtype)) __builtin_trap();
      if (header.find(t.name) != &t) __builtin_trap();
      // Reading every byte lets ASan prove the range really is inside the input buffer.
      for (size_t i = 0; i < t.nbytes; ++i) sink = sink ^ t.data[i];
    }
  } catch (const specq::Error&) {
    // Rejected input: the expected outcome for almost all mutations.
  }
  return 0;
}
