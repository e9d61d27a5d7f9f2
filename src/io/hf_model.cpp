#include "io/hf_model.h"

#include <cstring>
#include <filesystem>
#include <memory>

#include "core/error.h"
#include "io/hf_config.h"
#include "io/safetensors.h"

namespace specq {
namespace fs = std::filesystem;

namespace {

class TensorSource {
 public:
  TensorSource(const std::string& dir, Model& model) : dir_(dir), model_(model), checkpoint_(dir) {
    for (auto& mapping : checkpoint_.mappings()) model_.storage.push_back(mapping);
  }

  bool has(const std::string& name) const { return checkpoint_.find(name) != nullptr; }

  // The named tensor as a Weight; floating-point dtypes only (shapes are checked by validate_weights).
  Weight take(const std::string& name) {
    const SafetensorsTensor* t = checkpoint_.find(name);
    SPECQ_CHECK(t != nullptr, "'{}': missing tensor {}", dir_, name);
    SPECQ_CHECK(t->dtype == DType::F32 || t->dtype == DType::F16 || t->dtype == DType::BF16,
                "'{}': tensor {} has dtype {}, expected a floating-point dtype (f32, f16, bf16)",
                checkpoint_.file_of(name), name, dtype_name(t->dtype));
    Weight w;
    w.dtype = t->dtype;
    w.shape = t->shape;
    w.data = t->data;
    // The format does not promise alignment (a u8 tensor may precede a float one); backends read
    // whole elements, so such a tensor gets an aligned copy instead.
    if (reinterpret_cast<uintptr_t>(t->data) % dtype_size(t->dtype) != 0) {
      std::shared_ptr<uint8_t[]> copy(new uint8_t[t->nbytes]);
      std::memcpy(copy.get(), t->data, t->nbytes);
      w.data = copy.get();
      model_.storage.push_back(std::shared_ptr<const void>(copy, copy.get()));
    }
    return w;
  }

 private:
  std::string dir_;
  Model& model_;
  SafetensorsCheckpoint checkpoint_;
};

}  // namespace

Model load_hf_directory(const std::string& dir) {
  Model m;
  m.source = dir;
  m.config = read_hf_config(dir);
  const ModelConfig& c = m.config;
  TensorSource tensors(dir, m);

  ModelWeights& w = m.weights;
  w.embed = tensors.take("model.embed_tokens.weight");
  w.layers.resize(size_t(c.num_layers));
  for (int i = 0; i < c.num_layers; ++i) {
    LayerWeights& l = w.layers[size_t(i)];
    const std::string p = fmt::format("model.layers.{}.", i);
    l.attn_norm = tensors.take(p + "input_layernorm.weight");
    l.wq = tensors.take(p + "self_attn.q_proj.weight");
    l.wk = tensors.take(p + "self_attn.k_proj.weight");
    l.wv = tensors.take(p + "self_attn.v_proj.weight");
    l.wo = tensors.take(p + "self_attn.o_proj.weight");
    if (c.attention_bias) {
      l.bq = tensors.take(p + "self_attn.q_proj.bias");
      l.bk = tensors.take(p + "self_attn.k_proj.bias");
      l.bv = tensors.take(p + "self_attn.v_proj.bias");
    }
    // Llama with attention_bias also biases o_proj, which the forward has no slot for.
    SPECQ_CHECK(!tensors.has(p + "self_attn.o_proj.bias"), "'{}': tensor {} (an o_proj bias) is not supported", dir,
                p + "self_attn.o_proj.bias");
    l.ffn_norm = tensors.take(p + "post_attention_layernorm.weight");
    l.w_gate = tensors.take(p + "mlp.gate_proj.weight");
    l.w_up = tensors.take(p + "mlp.up_proj.weight");
    l.w_down = tensors.take(p + "mlp.down_proj.weight");
  }
  w.final_norm = tensors.take("model.norm.weight");
  // As in transformers, tied embeddings win over a stored lm_head.weight.
  w.lm_head = c.tie_word_embeddings ? w.embed : tensors.take("lm_head.weight");
  m.config.dtype = w.embed.dtype;  // the tensors, not the config's dtype field, decide

  try {
    validate_weights(m);
  } catch (const Error& e) {
    fail("'{}': {}", dir, e.what());
  }

  std::error_code ec;
  if (fs::is_regular_file(fs::path(dir) / "tokenizer.json", ec)) m.tokenizer_path = dir;
  return m;
}

}  // namespace specq
