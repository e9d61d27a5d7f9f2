// The weights of a Llama-family model as host-side views. Loaders fill these; backends read them
// (the CPU backend in place, the CUDA backend by uploading once).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "model/config.h"

namespace specq {

// How a Weight's values are stored. The format picks the kernel; the forward never branches on it.
// Dense is the only format of non-matrix tensors (norms, biases, embeddings). docs/FORMATS.md
// describes each format exactly, and which formats are planned.
enum class WeightFormat : uint8_t {
  Dense,          // dtype/data hold the matrix itself
  GptqInt4,       // AutoGPTQ 4-bit groups with fp16 scales and 4-bit zero points (QuantizedWeight)
  Int8PerChannel,  // W8A8: symmetric i8 [N, K], one scale per output row; the linear quantizes its
                   // input per token to int8 and multiplies in int32 (QuantizedWeight)
  QqqInt4,         // W4A8-QQQ: 4-bit in QQQ's Marlin-style tiles, fp32 channel scales (+ fp16
                   // int8-domain group scales); int8 x int8 products (model/qqq_format.h)
  QoqInt4          // W4A8-QoQ: uint4 in QServe's packing; per-channel scale and scaled zero, or
                   // progressive int8 group level; int8 x int8 products (model/qoq_format.h)
};
std::string_view weight_format_name(WeightFormat format);

// Int8PerChannel: int8 x int8 products summed over K inputs stay below 2^31 (the int32
// accumulator every backend uses) up to this K.
constexpr int64_t kMaxInt8Inputs = (int64_t(1) << 31) / (128 * 128);

// One stored tensor of a quantized matrix, used in place (owned by Model::storage).
struct StoredTensor {
  DType dtype = DType::I32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  bool present() const { return data != nullptr; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
};

// The parts of a quantized [N, K] matrix, in the checkpoint's own layout (no conversion at load).
// GptqInt4: value of W[n, k] = (q[k, n] - zero[g, n]) * scale[g, n], g = g_idx[k], where
//   q[k, n]    = (qweight[k / 8, n] >> 4 * (k % 8)) & 15
//   zero[g, n] = ((qzeros[g, n / 8] >> 4 * (n % 8)) & 15) + zero_offset
// Int8PerChannel: value of W[n, k] = qweight[n, k] * scales[n] (qweight i8 [N, K]; scales f16,
//   bf16 or f32, [N] as QServe stores them or [N, 1] as compressed-tensors does; group_size = K).
// QqqInt4 / QoqInt4: see docs/FORMATS.md and model/qqq_format.h, model/qoq_format.h; grouped iff
//   group_scales is present (group_size = K otherwise).
struct QuantizedWeight {
  int bits = 4;
  int group_size = 0;      // inputs per group; K for per-channel (the checkpoint's -1)
  bool sym = true;         // symmetric: every zero point is 2^(bits-1) (checked at load)
  int zero_offset = 0;     // 1 for checkpoint_format "gptq" (v1 stores zero - 1), 0 for "gptq_v2"
  bool act_order = false;  // desc_act: g_idx is a permutation of groups, not k / group_size
  StoredTensor qweight;    // GptqInt4: i32 [K / 8, N], 8 values along K per word, lowest nibble first;
                           // Int8PerChannel: i8 [N, K]; QqqInt4: B i32 [K / 16, 2N]; QoqInt4: i8 [N, K / 2]
  StoredTensor qzeros;     // GptqInt4: i32 [G, N / 8], 8 zero points along N per word;
                           // QoqInt4: s1_szeros f16 [N] (per-channel) or s2_zeros i8 [G, N] (grouped)
  StoredTensor scales;     // GptqInt4: f16 [G, N]; Int8PerChannel: [N] or [N, 1];
                           // QqqInt4: s_channel f32 [1, N]; QoqInt4: s1_scales f16 [N]
  StoredTensor group_scales;  // QqqInt4: s_group f16 [G, N]; QoqInt4: s2_scales i8 [G, N]
  StoredTensor g_idx;      // i32 [K], group of each input; absent means k / group_size
  int64_t groups() const { return scales.shape.empty() ? 0 : scales.shape[0]; }  // GptqInt4
  int32_t group_of(int64_t k) const {
    return g_idx.present() ? static_cast<const int32_t*>(g_idx.data)[k] : int32_t(k / group_size);
  }
};

// A QuantizedWeight (parts to be filled in) that keeps `owner`, the buffer its parts point into,
// alive: how quantizers hand out views of the matrices they make.
template <class T>
std::shared_ptr<QuantizedWeight> quantized_parts_owning(std::shared_ptr<const T> owner) {
  struct Owning : QuantizedWeight {
    std::shared_ptr<const T> owner;
  };
  auto q = std::make_shared<Owning>();
  q->owner = std::move(owner);
  return q;
}

struct Weight;
// A quantized Weight of logical shape [n, k] in `format` whose parts are `q` (values dequantize to
// `dtype`).
Weight quantized_weight(WeightFormat format, std::shared_ptr<const QuantizedWeight> q, DType dtype, int64_t n,
                        int64_t k);

// A tensor view. Matrices are nn.Linear layout: shape {out_features, in_features}, row-major.
// A quantized matrix keeps that logical shape; its bytes are in `quant`, `data` is null.
struct Weight {
  WeightFormat format = WeightFormat::Dense;
  std::shared_ptr<const QuantizedWeight> quant;  // set iff format != Dense
  DType dtype = DType::F32;  // Dense: element type; quantized: the dtype its values dequantize to
  std::vector<int64_t> shape;
  const void* data = nullptr;  // host memory owned by Model::storage (mmap or buffer)
  // synthetic: models: no bytes yet, values are synthetic_value(seed, i, offset, scale) (core/synthetic_rng.h),
  // made on the device that uses them; materialize_synthetic() makes host bytes for the CPU.
  bool synthetic = false;
  uint64_t seed = 0;
  float offset = 0.0f, scale = 0.0f;

  bool present() const { return data != nullptr || synthetic || quant != nullptr; }
  bool quantized() const { return format != WeightFormat::Dense; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  // Bytes stored (for a quantized matrix: all its parts).
  size_t nbytes() const;
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

// Checks a quantized matrix of logical shape [n, k]: its format's parameters and the shapes and
// dtypes of its parts; throws Error naming `name` and what is inconsistent.
void validate_quantized(const std::string& name, const Weight& w, int64_t n, int64_t k);

// Dequantizes row n (output feature n) of a quantized matrix into k fp32 values, exactly.
void dequantize_row(const Weight& w, int64_t n, float* out);

// W4A8 formats (QqqInt4, QoqInt4) as the kernels compute them: row n in the int8 domain (k values),
// and the per-output epilogue y = acc * s_x * scale - szero * sum_k x (szero: QoQ per-channel only).
bool is_w4a8(WeightFormat format);

// A 4-bit quantized Weight ([n, k], dequantizing to f16 values) whose parts, set by fill(parts),
// point into `owner`, which the Weight keeps alive: how the W4A8 quantizers hand out their matrices.
template <class T, class Fill>
Weight owning_4bit_weight(WeightFormat format, std::shared_ptr<const T> owner, int64_t n, int64_t k, int group_size,
                          Fill&& fill) {
  auto q = quantized_parts_owning(std::move(owner));
  q->bits = 4;
  q->group_size = group_size;
  fill(*q);
  return quantized_weight(format, q, DType::F16, n, k);
}
// For W4A8 validation: for every group g and output `out` whose scale_of(g, out) is not
// always_fits, checks fits(code_of(out, k), scale) for each input k of the group; a code that does
// not fit is an Error naming tensor `name`, the weight, its code and scale, and `why`.
template <class ScaleOf, class AlwaysFits, class CodeOf, class Fits>
void check_group_codes(const std::string& name, int64_t groups, int64_t n, int group_size, ScaleOf&& scale_of,
                       AlwaysFits&& always_fits, CodeOf&& code_of, Fits&& fits, const char* why) {
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t out = 0; out < n; ++out) {
      const auto s = scale_of(g, out);
      if (always_fits(s)) continue;
      for (int64_t k = g * group_size; k < (g + 1) * group_size; ++k) {
        const int c = code_of(out, k);
        SPECQ_CHECK(fits(c, s), "quantized tensor '{}': weight [{}, {}] is code {} with group scale {}: {}", name, out,
                    k, c, s, why);
      }
    }
  }
}
void w4a8_int8_row(const Weight& w, int64_t n, int8_t* out);
float w4a8_output_scale(const Weight& w, int64_t n);
float w4a8_output_szero(const Weight& w, int64_t n);

}  // namespace specq
