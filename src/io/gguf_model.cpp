#include "io/gguf_model.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <span>

#include "core/error.h"
#include "io/gguf_dequant.h"
#include "io/rope_layout.h"

namespace specq {
namespace {

// An integer key in [lo, hi] (ModelConfig's ints), or nullopt when absent.
std::optional<int> int_key(const GgufHeader& h, const std::string& key, int64_t lo, int64_t hi) {
  const std::optional<int64_t> v = h.integer(key);
  if (!v) return std::nullopt;
  SPECQ_CHECK(*v >= lo && *v <= hi, "'{}': metadata '{}' = {} is outside [{}, {}]", h.source, key, *v, lo, hi);
  return int(*v);
}

int required_int(const GgufHeader& h, const std::string& key, int64_t lo, int64_t hi) {
  const std::optional<int> v = int_key(h, key, lo, hi);
  SPECQ_CHECK(v.has_value(), "'{}' has no metadata '{}'", h.source, key);
  return *v;
}

constexpr int64_t kMaxDim = int64_t(1) << 20;

// Builds the Model's weights from the tensors of one GGUF file.
class TensorLoader {
 public:
  TensorLoader(const GgufHeader& h, Model& m) : h_(h), m_(m) {}

  const GgufTensor* find(const std::string& name) const { return h_.find(name); }

  // A dense tensor of logical shape `shape` (ggml dims reversed). Float tensors stay in the map
  // (copied only to reorder rows); quantized ones are dequantized to fp32.
  Weight dense(const std::string& name, std::vector<int64_t> shape, std::span<const int64_t> source_rows = {}) {
    const GgufTensor& t = tensor(name, shape);
    const GgmlType type = t.ggml_type();
    Weight w;
    w.shape = std::move(shape);
    if ((type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16) && source_rows.empty()) {
      w.dtype = type == GgmlType::F32 ? DType::F32 : type == GgmlType::F16 ? DType::F16 : DType::BF16;
      w.data = aligned(t, dtype_size(w.dtype));
      return w;
    }
    if (type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16) {
      // Reordering rows keeps the dtype: whole rows are copied.
      w.dtype = type == GgmlType::F32 ? DType::F32 : type == GgmlType::F16 ? DType::F16 : DType::BF16;
      const size_t row_bytes = t.nbytes / size_t(w.rows());
      std::shared_ptr<uint8_t[]> copy(new uint8_t[t.nbytes]);
      for (size_t r = 0; r < source_rows.size(); ++r)
        std::memcpy(copy.get() + r * row_bytes, t.data + size_t(source_rows[r]) * row_bytes, row_bytes);
      keep(copy);
      w.data = copy.get();
      return w;
    }
    SPECQ_CHECK(ggml_type_dequantizable(type), "'{}': tensor '{}' has type {}, which specq does not load (supported: "
                "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)", h_.source, name, type_name(t));
    w.dtype = DType::F32;
    std::shared_ptr<float[]> values(new float[size_t(w.numel())]);
    if (w.shape.size() == 1) {
      // A vector is one ggml row: decode it whole, then reorder elements.
      std::vector<float> decoded(size_t(w.numel()));
      dequantize_ggml(type, t.data, w.numel(), decoded.data());
      for (int64_t i = 0; i < w.numel(); ++i)
        values[size_t(i)] = decoded[size_t(source_rows.empty() ? i : source_rows[size_t(i)])];
    } else {
      const int64_t rows = w.rows(), cols = w.cols();
      const size_t row_bytes = t.nbytes / size_t(rows);
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t src = source_rows.empty() ? r : source_rows[size_t(r)];
        dequantize_ggml(type, t.data + size_t(src) * row_bytes, cols, values.get() + r * cols);
      }
    }
    keep(values);
    w.data = values.get();
    return w;
  }

  // A linear [n, k]: Q4_0 becomes GptqInt4 when the packing allows (n % 8 == 0), else as dense().
  Weight linear(const std::string& name, int64_t n, int64_t k, std::span<const int64_t> source_rows = {}) {
    const GgufTensor& t = tensor(name, {n, k});
    if (t.ggml_type() != GgmlType::Q4_0 || n % 8 != 0) return dense(name, {n, k}, source_rows);
    RepackedQ4_0 packed = repack_q4_0_as_gptq(t.data, n, k, source_rows);
    for (const auto& part : {packed.qweight, packed.qzeros, packed.scales}) m_.storage.push_back(part);
    Weight w;
    w.format = WeightFormat::GptqInt4;
    w.dtype = DType::F16;  // what its values dequantize through (the fp16 scales), as the HF GPTQ loader says
    w.shape = {n, k};
    w.quant = std::move(packed.quant);
    return w;
  }

 private:
  static std::string_view type_name(const GgufTensor& t) {
    const auto traits = ggml_type_traits(t.type);
    return traits ? traits->name : std::string_view("?");
  }

  const GgufTensor& tensor(const std::string& name, const std::vector<int64_t>& shape) const {
    const GgufTensor* t = h_.find(name);
    SPECQ_CHECK(t != nullptr, "'{}': missing tensor '{}'", h_.source, name);
    // ggml lists dims fastest first: a [rows, cols] matrix is stored as dims {cols, rows}.
    const std::vector<int64_t> expected(shape.rbegin(), shape.rend());
    SPECQ_CHECK(t->dims == expected, "'{}': tensor '{}' has ggml dims [{}], expected [{}]", h_.source, name,
                fmt::join(t->dims, ", "), fmt::join(expected, ", "));
    return *t;
  }

  // Tensor data is aligned to general.alignment within the file, which need not be a multiple of
  // the element size; such a tensor gets an aligned copy.
  const void* aligned(const GgufTensor& t, size_t element) {
    if (reinterpret_cast<uintptr_t>(t.data) % element == 0) return t.data;
    std::shared_ptr<uint8_t[]> copy(new uint8_t[t.nbytes]);
    std::memcpy(copy.get(), t.data, t.nbytes);
    keep(copy);
    return copy.get();
  }

  template <typename T>
  void keep(const std::shared_ptr<T[]>& buffer) {
    m_.storage.push_back(std::shared_ptr<const void>(buffer, buffer.get()));
  }

  const GgufHeader& h_;
  Model& m_;
};

}  // namespace

ModelConfig gguf_model_config(const GgufHeader& h) {
  ModelConfig c;
  const std::optional<std::string> arch = h.string("general.architecture");
  SPECQ_CHECK(arch.has_value(), "'{}' has no metadata 'general.architecture'", h.source);
  if (*arch == "llama") {
    c.arch = Arch::Llama;
    c.arch_name = "LlamaForCausalLM";
  } else if (*arch == "qwen2") {
    c.arch = Arch::Qwen2;
    c.arch_name = "Qwen2ForCausalLM";
  } else {
    fail("'{}': unsupported GGUF architecture '{}' (supported: llama, qwen2)", h.source, *arch);
  }
  const std::string p = *arch + ".";
  c.num_layers = required_int(h, p + "block_count", 1, 4096);
  c.hidden_size = required_int(h, p + "embedding_length", 1, kMaxDim);
  c.intermediate_size = required_int(h, p + "feed_forward_length", 1, kMaxDim);
  c.num_heads = required_int(h, p + "attention.head_count", 1, 4096);
  c.num_kv_heads = int_key(h, p + "attention.head_count_kv", 1, 4096).value_or(c.num_heads);
  c.head_dim = int_key(h, p + "attention.key_length", 1, kMaxDim).value_or(c.hidden_size / c.num_heads);
  const std::optional<int> value_length = int_key(h, p + "attention.value_length", 1, kMaxDim);
  SPECQ_CHECK(!value_length || *value_length == c.head_dim, "'{}': attention.value_length {} differs from the key "
              "length {}, which specq does not support", h.source, value_length.value_or(0), c.head_dim);
  const std::optional<int> rope_dims = int_key(h, p + "rope.dimension_count", 1, kMaxDim);
  SPECQ_CHECK(!rope_dims || *rope_dims == c.head_dim, "'{}': rope.dimension_count {} is not the head dimension {} "
              "(partial rotary embeddings are not supported)", h.source, rope_dims.value_or(0), c.head_dim);
  c.max_position_embeddings = required_int(h, p + "context_length", 1, int64_t(1) << 30);
  const std::optional<double> eps = h.number(p + "attention.layer_norm_rms_epsilon");
  SPECQ_CHECK(eps.has_value(), "'{}' has no metadata '{}'", h.source, p + "attention.layer_norm_rms_epsilon");
  c.rms_norm_eps = float(*eps);
  c.rope_theta = float(h.number(p + "rope.freq_base").value_or(10000.0));

  // RoPE scaling: "none" and "linear" are what ModelConfig reproduces; llama.cpp writes Llama 3.1's
  // scaling as a rope_freqs tensor of per-frequency factors instead, which specq does not read.
  std::string scaling = h.string(p + "rope.scaling.type").value_or("none");
  double factor = h.number(p + "rope.scaling.factor").value_or(1.0);
  if (const std::optional<double> legacy = h.number(p + "rope.scale_linear"); legacy && scaling == "none") {
    scaling = "linear";
    factor = *legacy;
  }
  if (scaling == "linear" && factor != 1.0) {
    SPECQ_CHECK(factor > 0.0, "'{}': rope scaling factor {} must be positive", h.source, factor);
    c.rope_scaling.type = RopeScaling::Type::Linear;
    c.rope_scaling.factor = float(factor);
  } else {
    SPECQ_CHECK(scaling == "none" || scaling == "linear", "'{}': RoPE scaling '{}' is not supported (supported: none, "
                "linear)", h.source, scaling);
  }
  // Llama 3.x: llama.cpp's converter turns the llama3 scaling into per-frequency divisors.
  if (const GgufTensor* freqs = h.find("rope_freqs.weight")) {
    SPECQ_CHECK(c.rope_scaling.type == RopeScaling::Type::None, "'{}' has both RoPE scaling '{}' and a rope_freqs "
                "tensor", h.source, scaling);
    SPECQ_CHECK(freqs->ggml_type() == GgmlType::F32 && freqs->dims == std::vector<int64_t>{c.head_dim / 2},
                "'{}': tensor 'rope_freqs.weight' must be F32 with {} values (half the head dimension)", h.source,
                c.head_dim / 2);
    c.rope_scaling.type = RopeScaling::Type::Factors;
    c.rope_scaling.freq_factors.resize(size_t(c.head_dim / 2));
    std::memcpy(c.rope_scaling.freq_factors.data(), freqs->data, freqs->nbytes);
  }

  // Vocabulary: the metadata key when present, else the embedding's row count.
  if (const std::optional<int> vocab = int_key(h, p + "vocab_size", 1, int64_t(1) << 24)) {
    c.vocab_size = *vocab;
  } else {
    const GgufTensor* embd = h.find("token_embd.weight");
    SPECQ_CHECK(embd != nullptr && embd->dims.size() == 2, "'{}' has neither '{}' nor a 2-D token_embd.weight",
                h.source, p + "vocab_size");
    SPECQ_CHECK(embd->dims[1] > 0 && embd->dims[1] <= (int64_t(1) << 24), "'{}': token_embd.weight has {} rows",
                h.source, embd->dims[1]);
    c.vocab_size = int(embd->dims[1]);
  }
  c.tie_word_embeddings = h.find("output.weight") == nullptr;
  c.attention_bias = h.find("blk.0.attn_q.bias") != nullptr;
  c.bos_token_id = int_key(h, "tokenizer.ggml.bos_token_id", 0, c.vocab_size - 1).value_or(-1);
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"}) {
    const std::optional<int> id = int_key(h, key, 0, c.vocab_size - 1);
    if (id && std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), *id) == c.eos_token_ids.end())
      c.eos_token_ids.push_back(*id);
  }
  c.validate();
  return c;
}

Model load_gguf(const std::string& path) {
  auto file = std::make_shared<GgufFile>(path);
  const GgufHeader& h = file->header();
  Model m;
  m.source = path;
  m.config = gguf_model_config(h);
  m.storage.push_back(file->mapping());
  const ModelConfig& c = m.config;
  const int64_t hd = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), inter = c.intermediate_size;

  // llama.cpp's converter interleaves the RoPE pairs of llama q/k (for its rotary kernel); qwen2 is
  // converted as is. Biases are rows too and follow their matrix.
  std::vector<int64_t> q_rows, k_rows;
  if (c.arch == Arch::Llama) {
    q_rows = rotate_half_source_rows(c.num_heads, c.head_dim);
    k_rows = rotate_half_source_rows(c.num_kv_heads, c.head_dim);
  }
  TensorLoader tensors(h, m);
  ModelWeights& w = m.weights;
  w.embed = tensors.dense("token_embd.weight", {c.vocab_size, hd});
  w.layers.resize(size_t(c.num_layers));
  for (int i = 0; i < c.num_layers; ++i) {
    LayerWeights& l = w.layers[size_t(i)];
    const std::string b = fmt::format("blk.{}.", i);
    l.attn_norm = tensors.dense(b + "attn_norm.weight", {hd});
    l.wq = tensors.linear(b + "attn_q.weight", q, hd, q_rows);
    l.wk = tensors.linear(b + "attn_k.weight", kv, hd, k_rows);
    l.wv = tensors.linear(b + "attn_v.weight", kv, hd);
    l.wo = tensors.linear(b + "attn_output.weight", hd, q);
    if (c.attention_bias) {
      l.bq = tensors.dense(b + "attn_q.bias", {q}, q_rows);
      l.bk = tensors.dense(b + "attn_k.bias", {kv}, k_rows);
      l.bv = tensors.dense(b + "attn_v.bias", {kv});
    }
    SPECQ_CHECK(tensors.find(b + "attn_output.bias") == nullptr, "'{}': tensor '{}' (an output projection bias) is "
                "not supported", path, b + "attn_output.bias");
    l.ffn_norm = tensors.dense(b + "ffn_norm.weight", {hd});
    l.w_gate = tensors.linear(b + "ffn_gate.weight", inter, hd);
    l.w_up = tensors.linear(b + "ffn_up.weight", inter, hd);
    l.w_down = tensors.linear(b + "ffn_down.weight", hd, inter);
  }
  w.final_norm = tensors.dense("output_norm.weight", {hd});
  w.lm_head = c.tie_word_embeddings ? w.embed : tensors.linear("output.weight", c.vocab_size, hd);
  m.config.dtype = w.embed.dtype;

  try {
    validate_weights(m);
  } catch (const Error& e) {
    fail("'{}': {}", path, e.what());
  }
  if (h.value("tokenizer.ggml.model") != nullptr) m.tokenizer_path = path;
  return m;
}

}  // namespace specq
