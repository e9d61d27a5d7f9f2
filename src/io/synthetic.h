// synthetic:NAME models: real shapes with seeded random weights made in memory (no download),
// for benchmarks at real scale. Values come from core/synthetic_rng.h, identical on every device.
#pragma once
#include <string>
#include <vector>

#include "model/weights.h"

namespace specq {

// NAME: llama3-8b, llama3-70b, llama3.2-1b, qwen2.5-0.5b, qwen2.5-1.5b, stories15m, tiny.
// An optional "@f32" / "@bf16" suffix picks the dtype (default f16); "@w4a16" (group 128),
// "@w4a16-g32", "@w4a16-g64", "@w4a16-ch" (per-channel) make the block linears symmetric GptqInt4.
Model make_synthetic_model(const std::string& name);
std::vector<std::string> synthetic_model_names();

// Gives every synthetic weight host bytes (for the CPU backend); a no-op for real checkpoints.
void materialize_synthetic(Model& model);

// The AutoGPTQ tensors of a synthetic GptqInt4 matrix (gptq_v2 zeros, all 8; fp16 scales): qweight
// words are synthetic_word(seed, index), so every backend packs the same values.
std::shared_ptr<const QuantizedWeight> synthetic_gptq_parts(const Weight& w);

}  // namespace specq
