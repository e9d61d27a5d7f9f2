#include "io/synthetic.h"

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "core/error.h"
#include "core/synthetic_rng.h"

namespace specq {
namespace {

ModelConfig llama_shape(int vocab, int hidden, int inter, int layers, int heads, int kv_heads, float theta,
                        int max_pos) {
  ModelConfig c;
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.rope_theta = theta;
  c.max_position_embeddings = max_pos;
  return c;
}

const std::map<std::string, ModelConfig>& shapes() {
  static const std::map<std::string, ModelConfig> table = [] {
    std::map<std::string, ModelConfig> t;
    ModelConfig l3 = llama_shape(128256, 4096, 14336, 32, 32, 8, 500000.0f, 8192);
    l3.bos_token_id = 128000;
    l3.eos_token_ids = {128001, 128009};
    t["llama3-8b"] = l3;
    ModelConfig l70 = llama_shape(128256, 8192, 28672, 80, 64, 8, 500000.0f, 8192);
    l70.bos_token_id = 128000;
    l70.eos_token_ids = {128001, 128009};
    t["llama3-70b"] = l70;
    ModelConfig l1 = llama_shape(128256, 2048, 8192, 16, 32, 8, 500000.0f, 131072);
    l1.head_dim = 64;
    l1.tie_word_embeddings = true;
    l1.rope_scaling = {RopeScaling::Type::Llama3, 32.0f, 1.0f, 4.0f, 8192, {}};
    l1.bos_token_id = 128000;
    l1.eos_token_ids = {128001, 128008, 128009};
    t["llama3.2-1b"] = l1;
    ModelConfig q05 = llama_shape(151936, 896, 4864, 24, 14, 2, 1000000.0f, 32768);
    q05.arch = Arch::Qwen2;
    q05.arch_name = "Qwen2ForCausalLM";
    q05.attention_bias = true;
    q05.tie_word_embeddings = true;
    q05.rms_norm_eps = 1e-6f;
    q05.eos_token_ids = {151645, 151643};
    t["qwen2.5-0.5b"] = q05;
    ModelConfig q15 = llama_shape(151936, 1536, 8960, 28, 12, 2, 1000000.0f, 32768);
    q15.arch = Arch::Qwen2;
    q15.arch_name = "Qwen2ForCausalLM";
    q15.attention_bias = true;
    q15.tie_word_embeddings = true;
    q15.rms_norm_eps = 1e-6f;
    q15.eos_token_ids = {151645, 151643};
    t["qwen2.5-1.5b"] = q15;
    ModelConfig s15 = llama_shape(32000, 288, 768, 6, 6, 6, 10000.0f, 256);
    s15.tie_word_embeddings = true;
    s15.bos_token_id = 1;
    s15.eos_token_ids = {2};
    t["stories15m"] = s15;
    ModelConfig tiny = llama_shape(512, 64, 172, 2, 4, 2, 10000.0f, 512);
    tiny.bos_token_id = 1;
    tiny.eos_token_ids = {2};
    t["tiny"] = tiny;
    return t;
  }();
  return table;
}

}  // namespace

std::vector<std::string> synthetic_model_names() {
  std::vector<std::string> names;
  for (const auto& [name, config] : shapes()) names.push_back(name);
  return names;
}

Model make_synthetic_model(const std::string& spec) {
  std::string name = spec;
  DType dtype = DType::F16;
  int w4_group = 0;  // > 0: linears are GptqInt4 with this group size (the layer's K for "-ch")
  if (const size_t at = spec.find('@'); at != std::string::npos) {
    name = spec.substr(0, at);
    const std::string d = spec.substr(at + 1);
    if (d == "f32") dtype = DType::F32;
    else if (d == "f16") dtype = DType::F16;
    else if (d == "bf16") dtype = DType::BF16;
    else if (d == "w4a16" || d == "w4a16-g128") w4_group = 128;
    else if (d == "w4a16-g64") w4_group = 64;
    else if (d == "w4a16-g32") w4_group = 32;
    else if (d == "w4a16-ch") w4_group = -1;
    else fail("synthetic model '{}': unknown variant '{}' (f32, f16, bf16, w4a16[-g32|-g64|-g128|-ch])", spec, d);
  }
  const auto it = shapes().find(name);
  if (it == shapes().end()) {
    std::string known;
    for (const std::string& n : synthetic_model_names()) known += (known.empty() ? "" : ", ") + n;
    fail("unknown synthetic model '{}' (known: {})", name, known);
  }
  Model m;
  m.config = it->second;
  m.config.dtype = dtype;
  m.source = "synthetic:" + spec;
  const ModelConfig& c = m.config;
  uint64_t seed = 0x5eed0000;
  // Linear weights scaled so activations keep unit size (uniform variance 1/3 -> scale sqrt(3/K)).
  auto make = [&](std::vector<int64_t> shape, float offset, float scale) {
    Weight w;
    w.dtype = dtype;
    w.shape = std::move(shape);
    w.synthetic = true;
    w.seed = ++seed;
    w.offset = offset;
    w.scale = scale;
    return w;
  };
  auto linear = [&](int64_t out, int64_t in) {
    Weight w = make({out, in}, 0.0f, std::sqrt(3.0f / float(in)));
    if (w4_group != 0) {
      // 4-bit: symmetric GPTQ parameters now, the tensors when a backend asks (synthetic_gptq_parts).
      auto q = std::make_shared<QuantizedWeight>();
      q->bits = 4;
      q->group_size = w4_group > 0 ? w4_group : int(in);
      q->sym = true;
      q->zero_offset = 0;
      w.format = WeightFormat::GptqInt4;
      w.quant = q;
    }
    return w;
  };
  auto norm = [&](int64_t dim) { return make({dim}, 1.0f, 0.1f); };
  const int64_t h = c.hidden_size;
  m.weights.embed = make({c.vocab_size, h}, 0.0f, 1.0f);
  for (int l = 0; l < c.num_layers; ++l) {
    LayerWeights lw;
    lw.attn_norm = norm(h);
    lw.wq = linear(c.q_dim(), h);
    lw.wk = linear(c.kv_dim(), h);
    lw.wv = linear(c.kv_dim(), h);
    if (c.attention_bias) {
      lw.bq = make({c.q_dim()}, 0.0f, 0.1f);
      lw.bk = make({c.kv_dim()}, 0.0f, 0.1f);
      lw.bv = make({c.kv_dim()}, 0.0f, 0.1f);
    }
    lw.wo = linear(h, c.q_dim());
    lw.ffn_norm = norm(h);
    lw.w_gate = linear(c.intermediate_size, h);
    lw.w_up = linear(c.intermediate_size, h);
    lw.w_down = linear(h, c.intermediate_size);
    m.weights.layers.push_back(std::move(lw));
  }
  m.weights.final_norm = norm(h);
  // The LM head stays dense in the 4-bit variants, as GPTQ checkpoints keep it.
  m.weights.lm_head = c.tie_word_embeddings ? m.weights.embed : make({c.vocab_size, h}, 0.0f, std::sqrt(3.0f / float(h)));
  return m;
}

std::shared_ptr<const QuantizedWeight> synthetic_gptq_parts(const Weight& w) {
  SPECQ_CHECK(w.synthetic && w.format == WeightFormat::GptqInt4 && w.quant != nullptr && w.shape.size() == 2,
              "synthetic_gptq_parts: not a synthetic GptqInt4 matrix");
  const int64_t n = w.rows(), k = w.cols(), group = w.quant->group_size, groups = k / group;
  SPECQ_CHECK(n % 8 == 0 && k % 8 == 0 && group > 0 && k % group == 0,
              "synthetic 4-bit matrix [{}, {}] with group size {} cannot be packed", n, k, group);
  struct Buffers {
    std::vector<uint32_t> qweight, qzeros;
    std::vector<uint16_t> scales;
  };
  auto b = std::make_shared<Buffers>();
  b->qweight.resize(size_t(k / 8) * n);
  b->qzeros.assign(size_t(groups) * (n / 8), 0x88888888u);  // gptq_v2 zeros: 8 everywhere
  b->scales.resize(size_t(groups) * n);
  uint32_t* qw = b->qweight.data();
#pragma omp parallel for schedule(static) if (n * k > (int64_t(1) << 20))
  for (int64_t i = 0; i < (k / 8) * n; ++i) qw[i] = synthetic_word(w.seed, uint64_t(i));
  // (q - 8) is uniform on [-8, 7] (standard deviation ~4.61): scales around w.scale / sqrt(3) / 4.61
  // keep the layer's output variance that of the dense synthetic weight (uniform on +-w.scale).
  const float base = w.scale / std::sqrt(3.0f) / 4.61f;
  for (int64_t i = 0; i < groups * n; ++i)
    b->scales[size_t(i)] = float_to_half(synthetic_value(w.seed ^ 0x5ca1e5ull, uint64_t(i), base, 0.25f * base));
  auto q = quantized_parts_owning(std::shared_ptr<const Buffers>(b));
  *static_cast<QuantizedWeight*>(q.get()) = *w.quant;
  q->qweight = {DType::I32, {k / 8, n}, b->qweight.data()};
  q->qzeros = {DType::I32, {groups, n / 8}, b->qzeros.data()};
  q->scales = {DType::F16, {groups, n}, b->scales.data()};
  q->g_idx = {};
  return q;
}

void materialize_synthetic(Model& model) {
  std::map<uint64_t, const void*> made;  // seed -> bytes, so a tied lm_head shares the embedding's
  auto fill = [&](Weight& w) {
    if (w.synthetic && w.quantized()) {
      if (!w.quant->qweight.present()) w.quant = synthetic_gptq_parts(w);
      return;
    }
    if (!w.synthetic || w.data != nullptr) return;
    if (const auto it = made.find(w.seed); it != made.end()) {
      w.data = it->second;
      return;
    }
    const int64_t n = w.numel();
    auto bytes = std::shared_ptr<uint8_t[]>(new uint8_t[size_t(n) * dtype_size(w.dtype)]);
    uint8_t* p = bytes.get();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) {
      const float v = synthetic_value(w.seed, uint64_t(i), w.offset, w.scale);
      if (w.dtype == DType::F32) {
        std::memcpy(p + 4 * i, &v, 4);
      } else {
        const uint16_t b = w.dtype == DType::F16 ? float_to_half(v) : float_to_bf16(v);
        std::memcpy(p + 2 * i, &b, 2);
      }
    }
    w.data = p;
    made[w.seed] = p;
    model.storage.push_back(std::shared_ptr<const void>(bytes, p));
  };
  ModelWeights& mw = model.weights;
  fill(mw.embed);
  for (LayerWeights& l : mw.layers)
    for (Weight* w : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.bq, &l.bk, &l.bv, &l.ffn_norm, &l.w_gate, &l.w_up,
                      &l.w_down})
      fill(*w);
  fill(mw.final_norm);
  fill(mw.lm_head);
}

}  // namespace specq
