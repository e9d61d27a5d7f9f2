// EAGLE-1/2 head checkpoints: a directory with model.safetensors (or a sharded index), or with the
// pytorch_model.bin the EAGLE authors publish (read by io/torch_checkpoint.h, which runs no code).
#pragma once
#include <string>

#include "model/config.h"
#include "spec/eagle_head.h"

namespace specq {

// Tensor names as the EAGLE repository saves them: fc.weight [H, 2H] (+ fc.bias), layers.0.self_attn.
// {q,k,v,o}_proj.weight, layers.0.post_attention_layernorm.weight, layers.0.mlp.{gate,up,down}_proj.weight.
// Its own embed_tokens is not used: the head reads the base model's embedding and LM head.
EagleWeights load_eagle_weights(const std::string& dir, const ModelConfig& base);

}  // namespace specq
