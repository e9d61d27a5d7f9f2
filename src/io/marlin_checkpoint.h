// The seed's converted W4A16 checkpoints (SpecMQuant model_convert/convert_w4a16.py, seed-spec 2.3):
// model_gptq.safetensors holding, per layer, PREFIX.qweight i32 [K/16, 2N] in Marlin's fp16 tile
// layout (model/marlin_layout.h) and PREFIX.scales f16 [K/g, N] Marlin-permuted, for the fused
// self_attn.qkv_proj (q|k|v along N), mlp.gate_up_proj (gate|up) and the plain o_proj and
// down_proj; symmetric uint4 with zero 8, no zero points and no g_idx. The quantization config is
// the source GPTQ checkpoint's. Loading repacks each part into GptqInt4 (AutoGPTQ's layout), so
// every backend runs them as it runs GPTQ checkpoints.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "io/gptq_checkpoint.h"
#include "model/weights.h"

namespace specq {

// Whether the checkpoint stores linear PREFIX as a Marlin matrix (PREFIX.qweight of shape [K/16, 2N]
// with N = the sum of `parts`; GPTQ's qweight is [K/8, N]).
bool has_marlin_linear(const TensorLookup& lookup, const std::string& prefix, std::span<const int64_t> parts,
                       int64_t k);

// Linear PREFIX with k inputs, split along its outputs into `parts` (q, k, v sizes for qkv_proj):
// one GptqInt4 Weight per part. Shapes, dtypes and the config (4-bit, symmetric; act-order only with
// static groups, since the converter drops g_idx) are checked; Errors name `where`.
std::vector<Weight> load_marlin_linear(const TensorLookup& lookup, const std::string& prefix,
                                       std::span<const int64_t> parts, int64_t k, const GptqConfig& config,
                                       const std::string& where);

}  // namespace specq
