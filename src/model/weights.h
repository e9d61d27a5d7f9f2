// The weights of a Llama-family model as host-side views. Loaders fill these; backends read them
// (the CPU backend in place, the CUDA backend by uploading once).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/config.h"

namespace specq {

// A dense tensor view. Matrices are nn.Linear layout: shape {out_features, in_features}, row-major.
struct Weight {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // host memory owned by Model::storage (mmap or buffer)
  // synthetic: models: no bytes yet, values are synthetic_value(seed, i, offset, scale) (core/synthetic_rng.h),
  // made on the device that uses them; materialize_synthetic() makes host bytes for the CPU.
  bool synthetic = false;
  uint64_t seed = 0;
  float offset = 0.0f, scale = 0.0f;

  bool present() const { return data != nullptr || synthetic; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  int64_t rows() const { return shape.empty() ? 0 : shape[0]; }
  int64_t cols() const { return shape.size() < 2 ? 1 : shape[1]; }
};

struct LayerWeights {
  Weight attn_norm;           // [hidden]
  Weight wq, wk, wv, wo;      // [q_dim, hidden], [kv_dim, hidden] x2, [hidden, q_dim]
  Weight bq, bk, bv;          // optional biases (Qwen2)
  Weight ffn_norm;            // [hidden]
  Weight w_gate, w_up;        // [intermediate, hidden]
  Weight w_down;              // [hidden, intermediate]
};

struct ModelWeights {
  Weight embed;       // [vocab, hidden]
  std::vector<LayerWeights> layers;
  Weight final_norm;  // [hidden]
  Weight lm_head;     // [vocab, hidden]; the embedding itself when tied
};

struct Model {
  ModelConfig config;
  ModelWeights weights;
  std::string source;           // path or synthetic:NAME, for messages
  std::string tokenizer_path;   // tokenizer found next to the weights, "" if none
  std::vector<std::shared_ptr<const void>> storage;  // keeps mmaps / owned buffers alive

  // Total bytes of all weight tensors (tied lm_head counted once).
  size_t weight_bytes() const;
  int64_t parameter_count() const;
};

// Checks every weight's presence, shape and dtype against the config; throws Error naming the tensor
// by its Hugging Face name (model.layers.0.self_attn.q_proj.weight), whatever format it came from.
void validate_weights(const Model& model);

}  // namespace specq
