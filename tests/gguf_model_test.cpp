// GGUF models against the Hugging Face fixtures they are converted from. The conversion here does
// what llama.cpp's converter does (llama q/k rows interleaved per RoPE pair, ggml dims reversed,
// metadata keys): loading it back must give the HF weights exactly and the same logits; quantized
// conversions (Q4_0 linears, Q8_0 embeddings) must load as their exact dequantized values.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>

#include "core/dtype.h"
#include "gguf_writer.h"
#include "io/gguf_dequant.h"
#include "io/gguf_model.h"
#include "io/loader.h"
#include "model/runner.h"
#include "test_files.h"
#include "test_util.h"

namespace specq {
namespace {

using testing::error_of;
using testing::GgufWriter;
using testing::kHfFixtures;
using testing::TempDir;

enum class Encoding { AsStored, Quantized };

// The row of an interleaved (llama.cpp) q/k matrix that holds rotate-half row r: within a head,
// rotate-half row j * d/2 + i is pair i, element j, stored at 2i + j.
int64_t interleaved_row(int64_t r, int head_dim) {
  const int64_t head = r / head_dim, within = r % head_dim, half = head_dim / 2;
  return head * head_dim + 2 * (within % half) + within / half;
}

std::vector<float> values_of(const Weight& w) {
  std::vector<float> out(static_cast<size_t>(w.numel()));
  for (size_t i = 0; i < out.size(); ++i) out[i] = load_as_float(w.data, w.dtype, i);
  return out;
}

GgmlType ggml_type_of(DType t) { return t == DType::F32 ? GgmlType::F32 : t == DType::F16 ? GgmlType::F16 : GgmlType::BF16; }

// Q4_0 / Q8_0 encodings of rows of `cols` values (a simple round-to-nearest quantizer: any valid
// blocks will do, the loader must reproduce whatever they hold).
std::string quantize_q4_0(const float* x, int64_t count) {
  std::string out;
  for (int64_t b = 0; b < count / 32; ++b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    const uint16_t d = float_to_half(amax / 7.0f);
    const float scale = half_to_float(d);
    std::string block = GgufWriter::pod(d) + std::string(16, '\0');
    for (int j = 0; j < 32; ++j) {
      const int q = std::clamp(int(std::lround(scale > 0 ? x[b * 32 + j] / scale : 0.0f)) + 8, 0, 15);
      block[size_t(2 + j % 16)] = char(uint8_t(block[size_t(2 + j % 16)]) | (j < 16 ? q : q << 4));
    }
    out += block;
  }
  return out;
}

std::string quantize_q8_0(const float* x, int64_t count) {
  std::string out;
  for (int64_t b = 0; b < count / 32; ++b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    const uint16_t d = float_to_half(amax / 127.0f);
    const float scale = half_to_float(d);
    out += GgufWriter::pod(d);
    for (int j = 0; j < 32; ++j) out += char(int8_t(scale > 0 ? std::lround(x[b * 32 + j] / scale) : 0));
  }
  return out;
}

struct Converted {
  std::string bytes;
  // What each loaded weight must hold, in HF row order, by HF name (quantized: the dequantized blocks).
  std::map<std::string, std::vector<float>> expected;
};

// Writes `m` as llama.cpp would: q/k rows interleaved (llama only), dims fastest first.
Converted convert(const Model& m, Encoding encoding) {
  const ModelConfig& c = m.config;
  const bool llama = c.arch == Arch::Llama;
  const std::string arch = llama ? "llama" : "qwen2";
  GgufWriter w;
  w.string("general.architecture", arch);
  w.u32(arch + ".block_count", uint32_t(c.num_layers));
  w.u32(arch + ".context_length", uint32_t(c.max_position_embeddings));
  w.u32(arch + ".embedding_length", uint32_t(c.hidden_size));
  w.u32(arch + ".feed_forward_length", uint32_t(c.intermediate_size));
  w.u32(arch + ".attention.head_count", uint32_t(c.num_heads));
  w.u32(arch + ".attention.head_count_kv", uint32_t(c.num_kv_heads));
  w.u32(arch + ".attention.key_length", uint32_t(c.head_dim));
  w.u32(arch + ".rope.dimension_count", uint32_t(c.head_dim));
  w.f32(arch + ".rope.freq_base", c.rope_theta);
  w.f32(arch + ".attention.layer_norm_rms_epsilon", c.rms_norm_eps);
  const RopeScaling& rope = c.rope_scaling;
  if (rope.type == RopeScaling::Type::Linear) {
    w.string(arch + ".rope.scaling.type", "linear");
    w.f32(arch + ".rope.scaling.factor", rope.factor);
  }
  if (rope.type == RopeScaling::Type::Llama3) {
    // llama.cpp's converter: the llama3 scaling as one divisor per frequency (rope_freqs).
    std::vector<float> factors;
    const double low_wavelen = rope.original_max_position / rope.low_freq_factor;
    const double high_wavelen = rope.original_max_position / rope.high_freq_factor;
    for (int i = 0; i < c.head_dim / 2; ++i) {
      const double wavelen = 2.0 * M_PI * std::pow(double(c.rope_theta), 2.0 * i / c.head_dim);
      const double smooth = (rope.original_max_position / wavelen - rope.low_freq_factor) /
                            (rope.high_freq_factor - rope.low_freq_factor);
      factors.push_back(wavelen < high_wavelen  ? 1.0f
                        : wavelen > low_wavelen ? rope.factor
                                                : float(1.0 / ((1.0 - smooth) / rope.factor + smooth)));
    }
    std::string data(factors.size() * 4, '\0');
    std::memcpy(data.data(), factors.data(), data.size());
    w.tensor("rope_freqs.weight", {factors.size()}, GgmlType::F32, data);
  }
  if (c.bos_token_id >= 0) w.u32("tokenizer.ggml.bos_token_id", uint32_t(c.bos_token_id));
  if (!c.eos_token_ids.empty()) w.u32("tokenizer.ggml.eos_token_id", uint32_t(c.eos_token_ids[0]));

  Converted out;
  auto add = [&](const std::string& gguf_name, const std::string& hf_name, const Weight& weight, int head_dim,
                 bool quantize) {
    const std::vector<float> values = values_of(weight);
    const int64_t rows = weight.rows(), cols = weight.cols();
    std::vector<int64_t> source(static_cast<size_t>(rows));
    std::iota(source.begin(), source.end(), 0);
    if (head_dim > 0)  // GGUF row interleaved_row(r) holds HF row r
      for (int64_t r = 0; r < rows; ++r) source[size_t(interleaved_row(r, head_dim))] = r;
    std::vector<float> stored(values.size());
    for (int64_t r = 0; r < rows; ++r)
      std::copy_n(values.begin() + source[size_t(r)] * cols, cols, stored.begin() + r * cols);
    std::vector<uint64_t> dims(weight.shape.rbegin(), weight.shape.rend());
    std::vector<float> expected(values.size());
    if (quantize && weight.shape.size() == 2) {
      const bool q8 = gguf_name == "token_embd.weight";
      const GgmlType type = q8 ? GgmlType::Q8_0 : GgmlType::Q4_0;
      std::string data = q8 ? quantize_q8_0(stored.data(), rows * cols) : quantize_q4_0(stored.data(), rows * cols);
      std::vector<float> decoded(values.size());
      dequantize_ggml(type, reinterpret_cast<const uint8_t*>(data.data()), rows * cols, decoded.data());
      for (int64_t r = 0; r < rows; ++r)  // back to HF row order
        std::copy_n(decoded.begin() + r * cols, cols, expected.begin() + source[size_t(r)] * cols);
      w.tensor(gguf_name, dims, type, std::move(data));
    } else {
      std::string data(size_t(weight.numel()) * dtype_size(weight.dtype), '\0');
      const size_t row_bytes = size_t(cols) * dtype_size(weight.dtype);
      for (int64_t r = 0; r < rows; ++r)
        std::memcpy(data.data() + size_t(r) * row_bytes,
                    static_cast<const uint8_t*>(weight.data) + size_t(source[size_t(r)]) * row_bytes, row_bytes);
      expected = values;
      w.tensor(gguf_name, dims, ggml_type_of(weight.dtype), std::move(data));
    }
    out.expected[hf_name] = std::move(expected);
  };
  const bool q = encoding == Encoding::Quantized;
  const ModelWeights& mw = m.weights;
  add("token_embd.weight", "embed", mw.embed, 0, q);
  for (int i = 0; i < c.num_layers; ++i) {
    const LayerWeights& l = mw.layers[size_t(i)];
    const std::string b = fmt::format("blk.{}.", i), p = fmt::format("layers.{}.", i);
    add(b + "attn_norm.weight", p + "attn_norm", l.attn_norm, 0, false);
    add(b + "attn_q.weight", p + "wq", l.wq, llama ? c.head_dim : 0, q);
    add(b + "attn_k.weight", p + "wk", l.wk, llama ? c.head_dim : 0, q);
    add(b + "attn_v.weight", p + "wv", l.wv, 0, q);
    add(b + "attn_output.weight", p + "wo", l.wo, 0, q);
    if (c.attention_bias) {
      add(b + "attn_q.bias", p + "bq", l.bq, 0, false);
      add(b + "attn_k.bias", p + "bk", l.bk, 0, false);
      add(b + "attn_v.bias", p + "bv", l.bv, 0, false);
    }
    add(b + "ffn_norm.weight", p + "ffn_norm", l.ffn_norm, 0, false);
    add(b + "ffn_gate.weight", p + "w_gate", l.w_gate, 0, q);
    add(b + "ffn_up.weight", p + "w_up", l.w_up, 0, q);
    add(b + "ffn_down.weight", p + "w_down", l.w_down, 0, q);
  }
  add("output_norm.weight", "final_norm", mw.final_norm, 0, false);
  if (!c.tie_word_embeddings) add("output.weight", "lm_head", mw.lm_head, 0, q);
  out.bytes = w.bytes();
  return out;
}

// A weight's values in fp32, dense or quantized.
std::vector<float> loaded_values(const Weight& w) {
  if (!w.quantized()) return values_of(w);
  std::vector<float> out(static_cast<size_t>(w.numel()));
  for (int64_t r = 0; r < w.rows(); ++r) dequantize_row(w, r, out.data() + r * w.cols());
  return out;
}

std::map<std::string, const Weight*> weights_by_name(const Model& m) {
  std::map<std::string, const Weight*> out{{"embed", &m.weights.embed}, {"final_norm", &m.weights.final_norm}};
  if (!m.config.tie_word_embeddings) out["lm_head"] = &m.weights.lm_head;
  for (size_t i = 0; i < m.weights.layers.size(); ++i) {
    const LayerWeights& l = m.weights.layers[i];
    const std::string p = fmt::format("layers.{}.", i);
    for (const auto& [name, w] : std::initializer_list<std::pair<const char*, const Weight*>>{
             {"attn_norm", &l.attn_norm}, {"wq", &l.wq}, {"wk", &l.wk}, {"wv", &l.wv}, {"wo", &l.wo}, {"bq", &l.bq},
             {"bk", &l.bk}, {"bv", &l.bv}, {"ffn_norm", &l.ffn_norm}, {"w_gate", &l.w_gate}, {"w_up", &l.w_up},
             {"w_down", &l.w_down}})
      if (w->present()) out[p + name] = w;
  }
  return out;
}

std::vector<float> prompt_logits(Model& m, const std::vector<int32_t>& prompt) {
  auto runner = make_cpu_runner(m, RunnerOptions{});
  std::vector<int32_t> positions(prompt.size());
  std::iota(positions.begin(), positions.end(), 0);
  ForwardRequest request;
  request.tokens = prompt;
  request.positions = positions;
  request.logits_rows = ForwardRequest::Rows::All;
  const ForwardResult result = runner->forward(request);
  return std::vector<float>(result.logits.begin(), result.logits.end());
}

class GgufFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(GgufFixture, LoadsAsTheHfModel) {
  Model hf = load_model((kHfFixtures / GetParam()).string());
  TempDir tmp;
  const Converted converted = convert(hf, Encoding::AsStored);
  testing::write_file(tmp / "model.gguf", converted.bytes);
  Model g = load_model(tmp.path().string());  // a directory holding one .gguf
  EXPECT_EQ(g.config.arch, hf.config.arch);
  EXPECT_EQ(g.config.vocab_size, hf.config.vocab_size);
  EXPECT_EQ(g.config.num_kv_heads, hf.config.num_kv_heads);
  EXPECT_EQ(g.config.tie_word_embeddings, hf.config.tie_word_embeddings);
  EXPECT_EQ(g.config.attention_bias, hf.config.attention_bias);
  EXPECT_EQ(g.config.rope_theta, hf.config.rope_theta);
  const bool llama3_rope = hf.config.rope_scaling.type == RopeScaling::Type::Llama3;
  if (llama3_rope) {
    // Converted to per-frequency factors; the frequencies agree to fp32 rounding.
    EXPECT_EQ(g.config.rope_scaling.type, RopeScaling::Type::Factors);
    const std::vector<float> expected = rope_inv_freq(hf.config), got = rope_inv_freq(g.config);
    ASSERT_EQ(got.size(), expected.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expected[i], 1e-6f * expected[i]) << i;
  } else {
    EXPECT_EQ(g.config.rope_scaling.type, hf.config.rope_scaling.type);
    EXPECT_EQ(g.config.rope_scaling.factor, hf.config.rope_scaling.factor);
  }
  EXPECT_EQ(g.config.dtype, hf.config.dtype);
  EXPECT_TRUE(g.tokenizer_path.empty());  // no tokenizer metadata
  const auto loaded = weights_by_name(g);
  ASSERT_EQ(loaded.size(), converted.expected.size());
  for (const auto& [name, expected] : converted.expected) {
    ASSERT_TRUE(loaded.contains(name)) << name;
    EXPECT_EQ(loaded.at(name)->dtype, weights_by_name(hf).at(name)->dtype) << name;
    EXPECT_EQ(loaded_values(*loaded.at(name)), expected) << name;
  }
  const std::vector<int32_t> prompt = {1, 17, 200, 45, 3, 99, 128, 7};
  const std::vector<float> got = prompt_logits(g, prompt), expected = prompt_logits(hf, prompt);
  if (llama3_rope) {
    EXPECT_LT(test::relative_l2(got, expected), 1e-5);
  } else {
    EXPECT_EQ(got, expected);  // the same weights and config: the same arithmetic
  }
}

TEST_P(GgufFixture, QuantizedTensorsLoadExactly) {
  Model hf = load_model((kHfFixtures / GetParam()).string());
  TempDir tmp;
  const Converted converted = convert(hf, Encoding::Quantized);
  testing::write_file(tmp / "q.gguf", converted.bytes);
  Model g = load_model((tmp / "q.gguf").string());
  EXPECT_EQ(g.weights.embed.dtype, DType::F32);  // Q8_0, dequantized
  const auto loaded = weights_by_name(g);
  for (const auto& [name, expected] : converted.expected) {
    ASSERT_TRUE(loaded.contains(name)) << name;
    const Weight& w = *loaded.at(name);
    // Q4_0 linears whose outputs pack in eights are GptqInt4, the others were dequantized.
    if (w.shape.size() == 2 && name != "embed") {
      EXPECT_EQ(w.format, w.rows() % 8 == 0 ? WeightFormat::GptqInt4 : WeightFormat::Dense) << name;
    }
    EXPECT_EQ(loaded_values(w), expected) << name;
  }
  const std::vector<float> logits = prompt_logits(g, {1, 2, 3});
  EXPECT_TRUE(std::all_of(logits.begin(), logits.end(), [](float v) { return std::isfinite(v); }));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GgufFixture,
                         ::testing::Values("llama3_gqa_f32", "llama_mqa_f16", "llama_tied_bf16", "qwen2_bias_sharded"));

// The metadata errors a user can meet, each naming the file and key.
TEST(GgufModel, BadMetadata) {
  auto config_error = [](const std::function<void(GgufWriter&)>& add) {
    GgufWriter w;
    add(w);
    const std::string bytes = w.bytes();
    const GgufHeader h = parse_gguf({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, "m.gguf");
    return error_of([&] { gguf_model_config(h); });
  };
  auto llama = [](GgufWriter& w) {
    w.string("general.architecture", "llama");
    w.u32("llama.block_count", 2);
    w.u32("llama.embedding_length", 64);
    w.u32("llama.feed_forward_length", 128);
    w.u32("llama.attention.head_count", 4);
    w.u32("llama.context_length", 256);
    w.f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    w.u32("llama.vocab_size", 100);
  };
  EXPECT_EQ(config_error(llama), "");
  EXPECT_NE(config_error([](GgufWriter& w) { w.string("general.architecture", "gemma"); })
                .find("unsupported GGUF architecture 'gemma' (supported: llama, qwen2)"), std::string::npos);
  EXPECT_NE(config_error([](GgufWriter& w) { w.u32("x", 1); }).find("no metadata 'general.architecture'"),
            std::string::npos);
  EXPECT_NE(config_error([](GgufWriter& w) { w.string("general.architecture", "llama"); })
                .find("'m.gguf' has no metadata 'llama.block_count'"), std::string::npos);
  EXPECT_NE(config_error([&](GgufWriter& w) {
              llama(w);
              w.string("llama.rope.scaling.type", "yarn");
            }).find("RoPE scaling 'yarn' is not supported"), std::string::npos);
  EXPECT_NE(config_error([&](GgufWriter& w) {
              llama(w);
              w.u32("llama.rope.dimension_count", 8);
            }).find("partial rotary"), std::string::npos);
  EXPECT_NE(config_error([&](GgufWriter& w) {
              llama(w);
              w.u32("llama.attention.head_count_kv", 3);
            }).find("must divide"), std::string::npos);
  EXPECT_NE(config_error([&](GgufWriter& w) {
              llama(w);
              w.u32("tokenizer.ggml.eos_token_id", 100);
            }).find("tokenizer.ggml.eos_token_id' = 100 is outside [0, 99]"), std::string::npos);
  // head_dim 16: rope_freqs needs 8 values.
  EXPECT_NE(config_error([&](GgufWriter& w) {
              llama(w);
              w.tensor("rope_freqs.weight", {16}, GgmlType::F32, std::string(64, '\0'));
            }).find("'rope_freqs.weight' must be F32 with 8 values"), std::string::npos);
  EXPECT_NE(config_error([&](GgufWriter& w) {
              llama(w);
              w.tensor("rope_freqs.weight", {8}, GgmlType::F32, std::string(32, '\0'));
            }).find("RoPE frequency factor 0 is not a positive number"), std::string::npos);
}

TEST(GgufModel, MissingAndUnsupportedTensors) {
  const Model hf = load_model((kHfFixtures / "llama3_gqa_f32").string());
  const std::string good = convert(hf, Encoding::AsStored).bytes;
  TempDir tmp;
  // Rename a tensor: the loader names what is missing.
  std::string renamed = good;
  const size_t at = renamed.find("blk.1.ffn_up.weight");
  ASSERT_NE(at, std::string::npos);
  renamed[at + 10] = 'X';
  testing::write_file(tmp / "renamed.gguf", renamed);
  EXPECT_NE(error_of([&] { load_model((tmp / "renamed.gguf").string()); }).find("missing tensor 'blk.1.ffn_up.weight'"),
            std::string::npos);
  // Two .gguf files in one directory: ambiguous.
  testing::write_file(tmp / "other.gguf", good);
  EXPECT_NE(error_of([&] { load_model(tmp.path().string()); }).find("holds 2 .gguf files"), std::string::npos);
  // Truncated file.
  testing::write_file(tmp / "short.gguf", good.substr(0, good.size() / 2));
  EXPECT_NE(error_of([&] { load_model((tmp / "short.gguf").string()); }).find("truncated"), std::string::npos);
}

}  // namespace
}  // namespace specq
