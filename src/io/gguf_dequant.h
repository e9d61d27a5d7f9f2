// GGUF tensor encodings (ggml block formats) turned into what specq computes with: fp32 values, or,
// for Q4_0, the GptqInt4 layout it is exactly equal to. Block layouts are in docs/FORMATS.md.
#pragma once
#include <cstdint>
#include <memory>
#include <span>

#include "io/gguf.h"
#include "model/weights.h"

namespace specq {

// True for the types dequantize_ggml reads: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K,
// Q6_K.
bool ggml_type_dequantizable(GgmlType type);

// Decodes `count` values (a whole number of the type's blocks) stored at `src` as `type` into fp32,
// exactly as llama.cpp's reference dequantization does (same fp32 operations in the same order).
void dequantize_ggml(GgmlType type, const uint8_t* src, int64_t count, float* dst);

// Q4_0 rows of an [n, k] matrix as the equivalent symmetric GptqInt4 weight (group size 32, zero 8,
// fp16 scales = the blocks' scales): (q - 8) * d either way, so nothing is rounded. Output row r is
// source row `source_rows[r]` (an empty span means r). The packed parts are owned by the returned
// object's `storage` entries, which the caller keeps alive. Needs n % 8 == 0 (GPTQ packs outputs
// in eights).
struct RepackedQ4_0 {
  std::shared_ptr<QuantizedWeight> quant;
  std::shared_ptr<const void> qweight, qzeros, scales;  // owners of the parts' bytes
};
RepackedQ4_0 repack_q4_0_as_gptq(const uint8_t* src, int64_t n, int64_t k, std::span<const int64_t> source_rows);

}  // namespace specq
