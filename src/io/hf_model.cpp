#include "io/hf_model.h"

#include <array>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>

#include "core/error.h"
#include "io/gptq_checkpoint.h"
#include "io/hf_config.h"
#include "io/marlin_checkpoint.h"
#include "io/qoq_checkpoint.h"
#include "io/qqq_checkpoint.h"
#include "io/safetensors.h"
#include "io/w8a8_checkpoint.h"

namespace specq {
namespace fs = std::filesystem;

namespace {

// The directory's quantization config, parsed by the method it names (at most one is set).
struct QuantConfigs {
  std::optional<W8A8Config> w8a8;
  std::optional<QqqConfig> qqq;
  std::optional<QoqConfig> qoq;
  std::optional<GptqConfig> gptq;

  explicit QuantConfigs(const std::string& dir)
      : w8a8(read_w8a8_config(dir)), qqq(read_qqq_config(dir)), qoq(read_qoq_config(dir)) {
    if (!w8a8 && !qqq && !qoq) gptq = read_gptq_config(dir);  // unknown methods are errors there
  }
};

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
    w.data = aligned(*t);
    return w;
  }

  // The linear PREFIX: PREFIX.weight, or its GPTQ, int8 (W8A8), QQQ or QoQ (W4A8) tensors when
  // the checkpoint quantized it. The tensors decide, so partially quantized checkpoints load too.
  Weight take_linear(const std::string& prefix, int64_t n, int64_t k, const QuantConfigs& configs) {
    const TensorLookup lookup = aligned_lookup(), peek = peek_lookup();
    auto ptr = [](const auto& config) { return config ? &*config : nullptr; };
    if (has_qqq_linear(peek, prefix)) return load_qqq_linear(lookup, prefix, n, k, ptr(configs.qqq), dir_);
    if (has_qoq_linear(peek, prefix)) {
      SPECQ_CHECK(!configs.qqq && !configs.w8a8 && !configs.gptq,
                  "'{}': tensor {}.s1_scales is a QoQ (QServe W4A8) weight, but config.json's quantization_config "
                  "names another method", dir_, prefix);
      return load_qoq_linear(lookup, prefix, n, k, ptr(configs.qoq), dir_);
    }
    if (has_int8_linear(peek, prefix)) return load_int8_linear(lookup, prefix, n, k, ptr(configs.w8a8), dir_);
    if (!has_gptq_linear(peek, prefix)) return take(prefix + ".weight");
    SPECQ_CHECK(configs.gptq.has_value(), "'{}': tensor {}.qweight is GPTQ-quantized, but neither config.json's "
                "quantization_config nor quantize_config.json describes the quantization", dir_, prefix);
    return load_gptq_linear(lookup, prefix, n, k, *configs.gptq);
  }

  // The linears a (possibly fused) linear PREFIX splits into, along its outputs (`parts`): a Marlin
  // matrix of the seed's converted checkpoints (io/marlin_checkpoint.h), or else each part's own
  // PREFIXES[i] as take_linear loads it.
  std::vector<Weight> take_fused(const std::string& prefix, std::span<const int64_t> parts,
                                 std::span<const std::string> prefixes, int64_t k, const QuantConfigs& configs) {
    if (has_marlin_linear(peek_lookup(), prefix, parts, k)) {
      SPECQ_CHECK(configs.gptq.has_value(), "'{}': tensor {}.qweight is a Marlin W4A16 matrix, but config.json has "
                  "no GPTQ quantization_config", dir_, prefix);
      return load_marlin_linear(aligned_lookup(), prefix, parts, k, *configs.gptq, dir_);
    }
    std::vector<Weight> out;
    for (size_t i = 0; i < parts.size(); ++i) out.push_back(take_linear(prefixes[i], parts[i], k, configs));
    return out;
  }

 private:
  // The format does not promise alignment (a u8 tensor may precede a float one); backends read
  // whole elements, so such a tensor gets an aligned copy instead.
  const void* aligned(const SafetensorsTensor& t) {
    if (reinterpret_cast<uintptr_t>(t.data) % dtype_size(t.dtype) == 0) return t.data;
    std::shared_ptr<uint8_t[]> copy(new uint8_t[t.nbytes]);
    std::memcpy(copy.get(), t.data, t.nbytes);
    model_.storage.push_back(std::shared_ptr<const void>(copy, copy.get()));
    return copy.get();
  }

  TensorLookup aligned_lookup() {
    return [this](const std::string& name) -> std::optional<StoredTensor> {
      const SafetensorsTensor* t = checkpoint_.find(name);
      if (t == nullptr) return std::nullopt;
      return StoredTensor{t->dtype, t->shape, aligned(*t)};
    };
  }
  // The has_* checks only look at names, dtypes and shapes: no aligned copies for them.
  TensorLookup peek_lookup() const {
    return [this](const std::string& name) -> std::optional<StoredTensor> {
      const SafetensorsTensor* t = checkpoint_.find(name);
      if (t == nullptr) return std::nullopt;
      return StoredTensor{t->dtype, t->shape, t->data};
    };
  }

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
  // Quantized checkpoints load in place: each linear with a .qweight (GPTQ), an int8 .weight
  // (W8A8: compressed-tensors or QServe), a .B (QQQ) or a .s1_scales (QoQ) is quantized, the rest
  // dense.
  const QuantConfigs configs(dir);
  const int64_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), inter = c.intermediate_size;

  ModelWeights& w = m.weights;
  w.embed = tensors.take("model.embed_tokens.weight");
  w.layers.resize(size_t(c.num_layers));
  for (int i = 0; i < c.num_layers; ++i) {
    LayerWeights& l = w.layers[size_t(i)];
    const std::string p = fmt::format("model.layers.{}.", i);
    l.attn_norm = tensors.take(p + "input_layernorm.weight");
    const std::array<int64_t, 3> qkv_rows{q, kv, kv};
    const std::array<std::string, 3> qkv_names{p + "self_attn.q_proj", p + "self_attn.k_proj", p + "self_attn.v_proj"};
    std::vector<Weight> qkv = tensors.take_fused(p + "self_attn.qkv_proj", qkv_rows, qkv_names, h, configs);
    l.wq = qkv[0];
    l.wk = qkv[1];
    l.wv = qkv[2];
    const std::array<int64_t, 1> o_rows{h};
    const std::array<std::string, 1> o_name{p + "self_attn.o_proj"};
    l.wo = tensors.take_fused(o_name[0], o_rows, o_name, q, configs)[0];
    if (c.attention_bias) {
      l.bq = tensors.take(p + "self_attn.q_proj.bias");
      l.bk = tensors.take(p + "self_attn.k_proj.bias");
      l.bv = tensors.take(p + "self_attn.v_proj.bias");
    }
    // Llama with attention_bias also biases o_proj, which the forward has no slot for.
    SPECQ_CHECK(!tensors.has(p + "self_attn.o_proj.bias"), "'{}': tensor {} (an o_proj bias) is not supported", dir,
                p + "self_attn.o_proj.bias");
    l.ffn_norm = tensors.take(p + "post_attention_layernorm.weight");
    const std::array<int64_t, 2> gate_up_rows{inter, inter};
    const std::array<std::string, 2> gate_up_names{p + "mlp.gate_proj", p + "mlp.up_proj"};
    std::vector<Weight> gate_up = tensors.take_fused(p + "mlp.gate_up_proj", gate_up_rows, gate_up_names, h, configs);
    l.w_gate = gate_up[0];
    l.w_up = gate_up[1];
    const std::array<int64_t, 1> down_rows{h};
    const std::array<std::string, 1> down_name{p + "mlp.down_proj"};
    l.w_down = tensors.take_fused(down_name[0], down_rows, down_name, inter, configs)[0];
  }
  w.final_norm = tensors.take("model.norm.weight");
  // As in transformers, tied embeddings win over a stored lm_head.weight.
  w.lm_head = c.tie_word_embeddings ? w.embed : tensors.take_linear("lm_head", c.vocab_size, h, configs);
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
