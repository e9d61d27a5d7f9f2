#include "model/weights.h"

#include <fmt/ranges.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "model/qoq_format.h"
#include "model/qqq_format.h"

namespace specq {
namespace {

template <typename F>
void for_each_weight(const Model& m, F&& f) {
  const ModelWeights& w = m.weights;
  f("embed", w.embed);
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& l = w.layers[i];
    const std::string p = fmt::format("layers.{}.", i);
    f(p + "attn_norm", l.attn_norm);
    f(p + "wq", l.wq);
    f(p + "wk", l.wk);
    f(p + "wv", l.wv);
    f(p + "wo", l.wo);
    f(p + "bq", l.bq);
    f(p + "bk", l.bk);
    f(p + "bv", l.bv);
    f(p + "ffn_norm", l.ffn_norm);
    f(p + "w_gate", l.w_gate);
    f(p + "w_up", l.w_up);
    f(p + "w_down", l.w_down);
  }
  f("final_norm", w.final_norm);
  if (w.lm_head.data != w.embed.data) f("lm_head", w.lm_head);
}

void expect(const std::string& name, const Weight& w, std::vector<int64_t> shape) {
  SPECQ_CHECK(w.present(), "tensor '{}' is missing", name);
  if (w.quantized()) {
    SPECQ_CHECK(shape.size() == 2, "tensor '{}' is quantized ({}), but only matrices of linear layers may be", name,
                weight_format_name(w.format));
    SPECQ_CHECK(w.shape == shape, "tensor '{}' has shape [{}], expected [{}]", name, fmt::join(w.shape, ", "),
                fmt::join(shape, ", "));
    validate_quantized(name, w, shape[0], shape[1]);
    return;
  }
  SPECQ_CHECK(w.shape == shape, "tensor '{}' has shape [{}], expected [{}]", name, fmt::join(w.shape, ", "),
              fmt::join(shape, ", "));
  SPECQ_CHECK(w.dtype == DType::F32 || w.dtype == DType::F16 || w.dtype == DType::BF16,
              "tensor '{}' has dtype {}, expected a floating-point dtype (f32, f16, bf16)", name,
              dtype_name(w.dtype));
}

void expect_part(const std::string& name, const char* part, const StoredTensor& t, DType dtype,
                 std::vector<int64_t> shape) {
  SPECQ_CHECK(t.present(), "quantized tensor '{}' has no {}", name, part);
  SPECQ_CHECK(t.dtype == dtype, "quantized tensor '{}': {} has dtype {}, expected {}", name, part, dtype_name(t.dtype),
              dtype_name(dtype));
  SPECQ_CHECK(t.shape == shape, "quantized tensor '{}': {} has shape [{}], expected [{}]", name, part,
              fmt::join(t.shape, ", "), fmt::join(shape, ", "));
}

void validate_gptq(const std::string& name, const QuantizedWeight& q, int64_t n, int64_t k) {
  SPECQ_CHECK(q.bits == 4, "quantized tensor '{}': {} bits is not supported (GPTQ weights must be 4-bit)", name,
              q.bits);
  SPECQ_CHECK(k % 8 == 0 && n % 8 == 0,
              "quantized tensor '{}' [{}, {}]: 4-bit packing needs both dimensions to be multiples of 8", name, n, k);
  SPECQ_CHECK(q.group_size > 0 && k % q.group_size == 0,
              "quantized tensor '{}': group size {} does not divide its {} inputs", name, q.group_size, k);
  SPECQ_CHECK(q.zero_offset == 0 || q.zero_offset == 1, "quantized tensor '{}': zero offset {} is neither 0 nor 1",
              name, q.zero_offset);
  const int64_t groups = k / q.group_size;
  expect_part(name, "qweight", q.qweight, DType::I32, {k / 8, n});
  expect_part(name, "qzeros", q.qzeros, DType::I32, {groups, n / 8});
  SPECQ_CHECK(q.scales.present(), "quantized tensor '{}' has no scales", name);
  SPECQ_CHECK(q.scales.dtype == DType::F16 || q.scales.dtype == DType::BF16,
              "quantized tensor '{}': scales have dtype {}, expected f16 (or bf16)", name, dtype_name(q.scales.dtype));
  expect_part(name, "scales", q.scales, q.scales.dtype, {groups, n});
  if (q.g_idx.present()) {
    expect_part(name, "g_idx", q.g_idx, DType::I32, {k});
    const auto* g_idx = static_cast<const int32_t*>(q.g_idx.data);
    for (int64_t i = 0; i < k; ++i) {
      SPECQ_CHECK(g_idx[i] >= 0 && g_idx[i] < groups, "quantized tensor '{}': g_idx[{}] = {} is outside [0, {})", name,
                  i, g_idx[i], groups);
      SPECQ_CHECK(q.act_order || g_idx[i] == i / q.group_size,
                  "quantized tensor '{}': g_idx[{}] = {} but the weight is not marked act-order (expected {})", name, i,
                  g_idx[i], i / q.group_size);
    }
  } else {
    SPECQ_CHECK(!q.act_order, "quantized tensor '{}' is act-order but has no g_idx", name);
  }
  if (q.sym) {
    // Kernels for symmetric weights use the fixed zero 2^(bits-1); the stored zeros must agree.
    const auto* zeros = static_cast<const uint32_t*>(q.qzeros.data);
    const int64_t words = groups * (n / 8);
    for (int64_t i = 0; i < words; ++i) {
      for (int j = 0; j < 8; ++j) {
        const int zero = int((zeros[i] >> (4 * j)) & 15u) + q.zero_offset;
        SPECQ_CHECK(zero == 8, "quantized tensor '{}' is symmetric, but the zero point of group {}, output {} is {} "
                    "(expected 8)", name, i / (n / 8), (i % (n / 8)) * 8 + j, zero);
      }
    }
  }
}

void validate_int8(const std::string& name, const QuantizedWeight& q, int64_t n, int64_t k) {
  SPECQ_CHECK(q.bits == 8, "quantized tensor '{}': {} bits is not supported (int8 per-channel weights are 8-bit)",
              name, q.bits);
  SPECQ_CHECK(k <= kMaxInt8Inputs, "quantized tensor '{}' has {} inputs; int32 accumulation allows at most {}", name,
              k, kMaxInt8Inputs);
  expect_part(name, "weight", q.qweight, DType::I8, {n, k});
  SPECQ_CHECK(q.scales.present(), "quantized tensor '{}' has no scales", name);
  SPECQ_CHECK(q.scales.dtype == DType::F16 || q.scales.dtype == DType::BF16 || q.scales.dtype == DType::F32,
              "quantized tensor '{}': scales have dtype {}, expected f16, bf16 or f32", name,
              dtype_name(q.scales.dtype));
  SPECQ_CHECK(q.scales.shape == std::vector<int64_t>{n} || q.scales.shape == (std::vector<int64_t>{n, 1}),
              "quantized tensor '{}': scales have shape [{}], expected [{}] or [{}, 1] (one per output channel)", name,
              fmt::join(q.scales.shape, ", "), n, n);
  for (int64_t i = 0; i < n; ++i) {
    const float s = load_as_float(q.scales.data, q.scales.dtype, size_t(i));
    SPECQ_CHECK(std::isfinite(s) && s >= 0.0f,
                "quantized tensor '{}': the scale of output {} is {} (expected finite and >= 0)", name, i, s);
  }
}

}  // namespace

std::string_view weight_format_name(WeightFormat format) {
  switch (format) {
    case WeightFormat::Dense: return "dense";
    case WeightFormat::GptqInt4: return "gptq-int4";
    case WeightFormat::Int8PerChannel: return "int8-per-channel";
    case WeightFormat::QqqInt4: return "w4a8-qqq";
    case WeightFormat::QoqInt4: return "w4a8-qoq";
  }
  return "?";
}

size_t Weight::nbytes() const {
  if (quant == nullptr) return size_t(numel()) * dtype_size(dtype);
  if (synthetic && !quant->qweight.present() && format == WeightFormat::GptqInt4) {
    // Not made yet: the bytes its AutoGPTQ tensors will take (fp16 scales, no g_idx).
    const size_t groups = size_t(cols() / quant->group_size);
    return size_t(rows()) * size_t(cols()) / 2 + groups * size_t(rows()) * 2 + groups * size_t(rows()) / 2;
  }
  return quant->qweight.nbytes() + quant->qzeros.nbytes() + quant->scales.nbytes() + quant->g_idx.nbytes() +
         quant->group_scales.nbytes();
}

void validate_quantized(const std::string& name, const Weight& w, int64_t n, int64_t k) {
  SPECQ_CHECK(w.quant != nullptr, "quantized tensor '{}' ({}) has no quantized parts", name,
              weight_format_name(w.format));
  switch (w.format) {
    case WeightFormat::GptqInt4:
      if (w.synthetic && !w.quant->qweight.present()) {  // tensors made on demand (synthetic_gptq_parts)
        SPECQ_CHECK(n % 8 == 0 && k % 8 == 0 && w.quant->group_size > 0 && k % w.quant->group_size == 0,
                    "synthetic 4-bit tensor '{}' [{}, {}] with group size {} cannot be packed", name, n, k,
                    w.quant->group_size);
        return;
      }
      validate_gptq(name, *w.quant, n, k);
      return;
    case WeightFormat::Int8PerChannel:
      validate_int8(name, *w.quant, n, k);
      return;
    case WeightFormat::QqqInt4:
      qqq::validate(name, *w.quant, n, k);
      return;
    case WeightFormat::QoqInt4:
      qoq::validate(name, *w.quant, n, k);
      return;
    case WeightFormat::Dense:
      break;
  }
  fail("tensor '{}' has format {}, which is not a quantized format", name, weight_format_name(w.format));
}

void dequantize_row(const Weight& w, int64_t n, float* out) {
  const QuantizedWeight& q = *w.quant;
  const int64_t N = w.rows(), K = w.cols();
  if (w.format == WeightFormat::Int8PerChannel) {
    // i8 (8 significant bits) times an f16/bf16 scale (11/8 bits) is exact in fp32; with an f32
    // scale the product rounds once, the same in every backend.
    const auto* row = static_cast<const int8_t*>(q.qweight.data) + n * K;
    const float scale = load_as_float(q.scales.data, q.scales.dtype, size_t(n));
    for (int64_t k = 0; k < K; ++k) out[k] = float(row[k]) * scale;
    return;
  }
  if (is_w4a8(w.format)) {
    // int8 times an f32 (QQQ) or f16 (QoQ) scale rounds at most once; QoQ per-channel then
    // subtracts the scaled zero (a second rounding).
    std::vector<int8_t> row(static_cast<size_t>(K));
    w4a8_int8_row(w, n, row.data());
    const float scale = w4a8_output_scale(w, n), szero = w4a8_output_szero(w, n);
    for (int64_t k = 0; k < K; ++k) out[k] = float(row[size_t(k)]) * scale - szero;
    return;
  }
  const auto* qweight = static_cast<const uint32_t*>(q.qweight.data);
  const auto* qzeros = static_cast<const uint32_t*>(q.qzeros.data);
  const int zero_shift = int(4 * (n % 8));
  const int64_t zero_word = n / 8, zero_words_per_group = N / 8;
  auto group_params = [&](int64_t g, int& zero, float& scale) {
    zero = int((qzeros[g * zero_words_per_group + zero_word] >> zero_shift) & 15u) + q.zero_offset;
    scale = load_as_float(q.scales.data, q.scales.dtype, size_t(g * N + n));
  };
  auto value = [&](int64_t k) { return int((qweight[(k / 8) * N + n] >> (4 * (k % 8))) & 15u); };
  int zero = 0;
  float scale = 0.0f;
  if (!q.act_order) {
    for (int64_t g = 0; g < K / q.group_size; ++g) {
      group_params(g, zero, scale);
      for (int64_t k = g * q.group_size; k < (g + 1) * q.group_size; ++k) out[k] = float(value(k) - zero) * scale;
    }
    return;
  }
  const auto* g_idx = static_cast<const int32_t*>(q.g_idx.data);
  for (int64_t k = 0; k < K; ++k) {
    group_params(g_idx[k], zero, scale);
    out[k] = float(value(k) - zero) * scale;
  }
}

Weight quantized_weight(WeightFormat format, std::shared_ptr<const QuantizedWeight> q, DType dtype, int64_t n,
                        int64_t k) {
  Weight w;
  w.format = format;
  w.quant = std::move(q);
  w.dtype = dtype;
  w.shape = {n, k};
  return w;
}

bool is_w4a8(WeightFormat format) { return format == WeightFormat::QqqInt4 || format == WeightFormat::QoqInt4; }

void w4a8_int8_row(const Weight& w, int64_t n, int8_t* out) {
  if (w.format == WeightFormat::QqqInt4) return qqq::int8_row(w, n, out);
  qoq::int8_row(w, n, out);
}

float w4a8_output_scale(const Weight& w, int64_t n) {
  return w.format == WeightFormat::QqqInt4 ? qqq::channel_scale(w, n) : qoq::channel_scale(w, n);
}

float w4a8_output_szero(const Weight& w, int64_t n) {
  return w.format == WeightFormat::QoqInt4 ? qoq::channel_szero(w, n) : 0.0f;
}

size_t Model::weight_bytes() const {
  size_t total = 0;
  for_each_weight(*this, [&](const std::string&, const Weight& w) { total += w.present() ? w.nbytes() : 0; });
  return total;
}

int64_t Model::parameter_count() const {
  int64_t total = 0;
  for_each_weight(*this, [&](const std::string&, const Weight& w) { total += w.present() ? w.numel() : 0; });
  return total;
}

void validate_weights(const Model& model) {
  const ModelConfig& c = model.config;
  c.validate();
  const ModelWeights& w = model.weights;
  const int64_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), inter = c.intermediate_size;
  expect("model.embed_tokens.weight", w.embed, {c.vocab_size, h});
  SPECQ_CHECK(int(w.layers.size()) == c.num_layers, "model has {} layers, config says {}", w.layers.size(),
              c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) {
    const LayerWeights& l = w.layers[size_t(i)];
    const std::string p = fmt::format("model.layers.{}.", i);
    expect(p + "input_layernorm.weight", l.attn_norm, {h});
    expect(p + "self_attn.q_proj.weight", l.wq, {q, h});
    expect(p + "self_attn.k_proj.weight", l.wk, {kv, h});
    expect(p + "self_attn.v_proj.weight", l.wv, {kv, h});
    expect(p + "self_attn.o_proj.weight", l.wo, {h, q});
    if (c.attention_bias) {
      expect(p + "self_attn.q_proj.bias", l.bq, {q});
      expect(p + "self_attn.k_proj.bias", l.bk, {kv});
      expect(p + "self_attn.v_proj.bias", l.bv, {kv});
    }
    expect(p + "post_attention_layernorm.weight", l.ffn_norm, {h});
    expect(p + "mlp.gate_proj.weight", l.w_gate, {inter, h});
    expect(p + "mlp.up_proj.weight", l.w_up, {inter, h});
    expect(p + "mlp.down_proj.weight", l.w_down, {h, inter});
  }
  expect("model.norm.weight", w.final_norm, {h});
  expect("lm_head.weight", w.lm_head, {c.vocab_size, h});
}

}  // namespace specq
