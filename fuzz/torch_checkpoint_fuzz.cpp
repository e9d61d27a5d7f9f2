// Feeds arbitrary bytes to the torch.save reader (zip + restricted pickle). It must either throw
// specq::Error or return tensors whose bytes lie inside the input; ASan/UBSan catch the rest.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/error.h"
#include "io/torch_checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto tensors = specq::parse_torch_checkpoint(std::span<const uint8_t>(data, size), "fuzz input");
    volatile uint8_t sink = 0;
    for (const specq::TorchTensor& t : tensors) {
      size_t numel = 1;
      for (const int64_t d : t.shape) numel *= size_t(d);
      const size_t nbytes = numel * specq::dtype_size(t.dtype);
      const bool inside = t.data >= data && nbytes <= size && size_t(t.data - data) <= size - nbytes;
      if (!inside) __builtin_trap();
      // Reading every byte lets ASan prove the range really is inside the input buffer.
      for (size_t i = 0; i < nbytes; ++i) sink = sink ^ t.data[i];
    }
  } catch (const specq::Error&) {
    // Rejected input: the expected outcome for almost all mutations.
  }
  return 0;
}
