// GGUF models (llama.cpp's format) of the llama and qwen2 architectures: the config from the
// `ARCH.*` metadata, weights from the `token_embd` / `blk.N.*` / `output*` tensors.
#pragma once
#include <string>

#include "io/gguf.h"
#include "model/weights.h"

namespace specq {

// The ModelConfig a GGUF header describes (shapes, RoPE, norms, BOS/EOS); throws Error naming the
// file and key for an unknown architecture, a missing or out-of-range key, or RoPE scaling specq
// cannot reproduce.
ModelConfig gguf_model_config(const GgufHeader& header);

// Loads and validates a .gguf model. F32/F16/BF16 tensors stay in the memory map; Q4_0 linears
// become GptqInt4 (exact); other quantized tensors (Q8_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) are dequantized
// to fp32 at load. Llama q/k rows are put back from llama.cpp's interleaved RoPE order into the
// rotate-half order. The tokenizer is the file itself (Model::tokenizer_path = path) when the
// file has tokenizer metadata.
Model load_gguf(const std::string& path);

}  // namespace specq
