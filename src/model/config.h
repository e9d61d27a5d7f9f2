// What a Llama-family model is: shapes and numerics, independent of where the weights came from.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace specq {

enum class Arch { Llama, Qwen2 };

struct RopeScaling {
  // Factors: per-frequency divisors as GGUF stores Llama 3.x scaling (the rope_freqs tensor).
  enum class Type { None, Linear, Llama3, Factors };
  Type type = Type::None;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;    // llama3 only
  float high_freq_factor = 4.0f;   // llama3 only
  int original_max_position = 8192;  // llama3 only
  std::vector<float> freq_factors;   // factors only: inv_freq[i] /= freq_factors[i], head_dim / 2 values
};

struct ModelConfig {
  Arch arch = Arch::Llama;
  std::string arch_name = "LlamaForCausalLM";
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  int max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  bool attention_bias = false;   // q/k/v bias (Qwen2)
  DType dtype = DType::F32;      // dtype of the checkpoint's floating-point tensors
  int bos_token_id = -1;
  std::vector<int> eos_token_ids;  // generation stops on any of these

  int q_dim() const { return num_heads * head_dim; }
  int kv_dim() const { return num_kv_heads * head_dim; }
  // Checks internal consistency; throws Error naming the offending field.
  void validate() const;
};

// RoPE inverse frequencies (head_dim / 2 values) with the configured scaling applied.
std::vector<float> rope_inv_freq(const ModelConfig& config);

}  // namespace specq
