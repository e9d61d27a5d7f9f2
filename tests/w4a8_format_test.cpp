// The W4A8 formats (QqqInt4, QoqInt4) and their checkpoint layouts, four variants: QQQ per-channel
// and grouped (QQQ's export: .B / .s_channel / .s_group), QoQ per-channel and grouped (QServe:
// .qweight / .s1_scales / .s1_szeros or .s2_scales / .s2_zeros). The tests pack random codes and
// scales with their own transcription of QQQ's and QServe's packing code (reshape and permute, as
// the Python does it), load the checkpoint, and check that every dequantized weight equals the
// format's definition exactly; that the CPU linear is the integer definition and close to fp32 on
// the dequantized weights; and that bad input is one clear error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <numeric>
#include <random>

#include "backend/cpu/ops.h"
#include "core/dtype.h"
#include "io/loader.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "test_files.h"
#include "test_util.h"

namespace specq {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

enum class Variant { QqqChannel, QqqGroup, QoqChannel, QoqGroup };
const Variant kVariants[] = {Variant::QqqChannel, Variant::QqqGroup, Variant::QoqChannel, Variant::QoqGroup};
constexpr int kGroup = 32;  // the fixture's 64- and 96-input linears: 2 or 3 groups

bool is_qqq(Variant v) { return v == Variant::QqqChannel || v == Variant::QqqGroup; }
bool grouped(Variant v) { return v == Variant::QqqGroup || v == Variant::QoqGroup; }
const char* name_of(Variant v) {
  switch (v) {
    case Variant::QqqChannel: return "qqq-channel";
    case Variant::QqqGroup: return "qqq-g32";
    case Variant::QoqChannel: return "qoq-channel";
    case Variant::QoqGroup: return "qoq-g32";
  }
  return "?";
}

// A generic permute of a row-major tensor (torch's x.reshape(shape).permute(axes).contiguous()).
template <class T>
std::vector<T> permute(const std::vector<T>& x, const std::vector<int64_t>& shape, const std::vector<int>& axes) {
  const size_t d = shape.size();
  std::vector<int64_t> stride(d, 1), out_shape(d), index(d, 0);
  for (size_t i = d - 1; i > 0; --i) stride[i - 1] = stride[i] * shape[i];
  for (size_t i = 0; i < d; ++i) out_shape[i] = shape[size_t(axes[i])];
  std::vector<T> out(x.size());
  for (size_t o = 0; o < x.size(); ++o) {
    int64_t src = 0;
    for (size_t i = 0; i < d; ++i) src += index[i] * stride[size_t(axes[i])];
    out[o] = x[size_t(src)];
    for (size_t i = d; i-- > 0;) {  // next output index
      if (++index[i] < out_shape[i]) break;
      index[i] = 0;
    }
  }
  return out;
}

// QQQ's _get_perms (QQQ/gptq/qlinear/qlinear_marlin.py), transcribed.
std::vector<int> qqq_perm(bool group) {
  std::vector<int> perm;
  for (int i = 0; i < 32; ++i) {
    std::vector<int> perm1;
    const int col = i / 4;
    for (int block : {0, 1})
      for (int row : {4 * (i % 4), 4 * (i % 4) + 1, 4 * (i % 4) + 2, 4 * (i % 4) + 3})
        perm1.push_back(16 * row + col + 8 * block);
    for (int j = 0; j < 4; ++j)
      for (int p : perm1) perm.push_back(p + 256 * j);
  }
  const std::vector<int> interleave = group ? std::vector<int>{0, 2, 4, 6, 1, 3, 5, 7}
                                            : std::vector<int>{4, 0, 5, 1, 6, 2, 7, 3};
  std::vector<int> out(perm.size());
  for (size_t r = 0; r < perm.size() / 8; ++r)
    for (size_t c = 0; c < 8; ++c) out[r * 8 + c] = perm[r * 8 + size_t(interleave[c])];
  return out;
}

// QuantLinear.pack's tail: w is the python [K, N] (infeatures x outfeatures) int matrix.
std::vector<int32_t> qqq_pack_python(const std::vector<int>& w, int64_t K, int64_t N, bool group) {
  std::vector<int> res = permute(w, {K / 16, 16, N / 16, 16}, {0, 2, 1, 3});  // [K/16, 16N]
  const std::vector<int> perm = qqq_perm(group);
  std::vector<int> permuted(res.size());
  for (size_t r = 0; r < res.size() / 1024; ++r)
    for (size_t c = 0; c < 1024; ++c) permuted[r * 1024 + c] = res[r * 1024 + size_t(perm[c])];
  std::vector<int32_t> q(res.size() / 8, 0);
  for (size_t j = 0; j < q.size(); ++j)
    for (int i = 0; i < 8; ++i) q[j] = int32_t(uint32_t(q[j]) | (uint32_t(permuted[j * 8 + size_t(i)] & 0xF) << (4 * i)));
  return q;
}

template <class T>
std::vector<T> qqq_scale_permute(const std::vector<T>& s, bool single) {
  std::vector<int> perm;
  if (single) {
    for (int i = 0; i < 4; ++i)
      for (int j : {0, 1, 8, 9, 16, 17, 24, 25}) perm.push_back(2 * i + j);
  } else {
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 8; ++j) perm.push_back(i + 8 * j);
  }
  std::vector<T> out(s.size());
  for (size_t r = 0; r < s.size() / perm.size(); ++r)
    for (size_t c = 0; c < perm.size(); ++c) out[r * perm.size() + c] = s[r * perm.size() + size_t(perm[c])];
  return out;
}

// DeepCompressor's pack_w4 (release version, the seed's QServe kernels): q is [N, K] uint4.
std::vector<uint8_t> qoq_pack_python(const std::vector<int>& q, int64_t N, int64_t K) {
  const std::vector<int> p = permute(q, {N / 32, 2, 2, 8, K / 32, 2, 4, 4}, {1, 0, 4, 3, 6, 5, 2, 7});
  std::vector<uint8_t> out(p.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) out[i] = uint8_t((p[out.size() + i] << 4) + p[i]);
  return out;
}

// s2 [N, G] natural -> view(N/32, 4, 8, G).permute(3, 0, 2, 1) -> [G, N].
std::vector<int8_t> qoq_group_permute(const std::vector<int8_t>& s, int64_t N, int64_t G) {
  return permute(s, {N / 32, 4, 8, G}, {3, 0, 2, 1});
}

template <class T>
std::vector<uint8_t> bytes_of(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

bool fits(Variant v, int64_t n, int64_t k) {
  return is_qqq(v) ? (n % 64 == 0 && k % 16 == 0) : (n % 32 == 0 && k % 32 == 0);
}

struct Tensor {
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// A checkpoint from fixture llama_tied_bf16 (hidden 64, intermediate 96) whose block linears that
// the variant can hold are replaced by random codes and scales; `expected` is each such linear's
// dequantized [N, K] by the format's definition, computed here from the natural-order values.
struct Checkpoint {
  fs::path dir;
  std::map<std::string, std::vector<float>> expected;
};

using TensorEdit = std::function<void(std::map<std::string, Tensor>&)>;
using ConfigEdit = std::function<void(nlohmann::json&)>;

Checkpoint build(const fs::path& dir, Variant v, const TensorEdit& edit = nullptr, const ConfigEdit& config_edit = nullptr,
                 bool write_config = true) {
  const fs::path fixture = testing::kHfFixtures / "llama_tied_bf16";
  fs::create_directories(dir);
  SafetensorsFile source((fixture / "model.safetensors").string());
  std::map<std::string, Tensor> tensors;
  Checkpoint cp;
  cp.dir = dir;
  std::mt19937 rng(11);
  auto uniform = [&](float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng); };
  auto randint = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (const SafetensorsTensor& t : source.header().tensors) {
    const bool linear = t.name.find("layers.") != std::string::npos && t.name.find("_proj.weight") != std::string::npos;
    const int64_t n = linear ? t.shape[0] : 0, k = linear ? t.shape[1] : 0;
    if (!linear || !fits(v, n, k)) {
      const auto* p = static_cast<const uint8_t*>(t.data);
      tensors[t.name] = {t.dtype, t.shape, std::vector<uint8_t>(p, p + t.nbytes)};
      continue;
    }
    const std::string prefix = t.name.substr(0, t.name.size() - std::string(".weight").size());
    const int64_t G = grouped(v) ? k / kGroup : 1;
    std::vector<float>& expected = cp.expected[prefix];
    expected.resize(size_t(n * k));
    std::vector<int> codes(static_cast<size_t>(n * k));  // [N][K]
    if (is_qqq(v)) {
      std::vector<float> s_channel(static_cast<size_t>(n));
      std::vector<uint16_t> s_group(static_cast<size_t>(G * n));
      for (float& s : s_channel) s = uniform(1e-4f, 2e-3f);
      // Group scales across the whole valid range, integers and fractions, both signs.
      for (uint16_t& s : s_group) s = float_to_half(randint(0, 3) == 0 ? float(randint(-15, 16)) : uniform(-15.8f, 15.9f));
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t c = 0; c < k; ++c) {
          const int q = grouped(v) ? randint(0, 15) : randint(-8, 7);
          codes[size_t(r * k + c)] = q;
          const float i8 = grouped(v) ? std::nearbyint(float(q - 8) * half_to_float(s_group[size_t((c / kGroup) * n + r)]))
                                      : float(16 * q);
          expected[size_t(r * k + c)] = i8 * s_channel[size_t(r)];
        }
      }
      // QQQ packs the transposed [K, N] matrix.
      std::vector<int> wt(codes.size());
      for (int64_t r = 0; r < n; ++r)
        for (int64_t c = 0; c < k; ++c) wt[size_t(c * n + r)] = codes[size_t(r * k + c)];
      tensors[prefix + ".B"] = {DType::I32, {k / 16, 2 * n}, bytes_of(qqq_pack_python(wt, k, n, grouped(v)))};
      tensors[prefix + ".s_channel"] = {DType::F32, {1, n}, bytes_of(qqq_scale_permute(s_channel, true))};
      if (grouped(v)) tensors[prefix + ".s_group"] = {DType::F16, {G, n}, bytes_of(qqq_scale_permute(s_group, false))};
      else tensors[prefix + ".s_group"] = {DType::F16, {0}, {}};  // QQQ's empty buffer
    } else {
      std::vector<uint16_t> s1(static_cast<size_t>(n)), szero(static_cast<size_t>(n));
      std::vector<int8_t> s2(static_cast<size_t>(n * G)), z2(static_cast<size_t>(n * G));  // [N, G] natural
      for (int64_t r = 0; r < n; ++r) {
        s1[size_t(r)] = float_to_half(uniform(1e-4f, 2e-3f));
        szero[size_t(r)] = float_to_half(uniform(-0.02f, 0.02f));
        for (int64_t g = 0; g < G; ++g) {
          s2[size_t(r * G + g)] = int8_t(randint(0, 17));
          z2[size_t(r * G + g)] = int8_t(randint(-128, 127));
        }
      }
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t c = 0; c < k; ++c) {
          const int q = randint(0, 15);
          codes[size_t(r * k + c)] = q;
          const float s = half_to_float(s1[size_t(r)]);
          if (grouped(v)) {
            const int lane = q * int(uint8_t(s2[size_t(r * G + c / kGroup)])) + int(uint8_t(z2[size_t(r * G + c / kGroup)]));
            expected[size_t(r * k + c)] = float(int8_t(uint8_t(lane & 0xFF))) * s;
          } else {
            expected[size_t(r * k + c)] = float(q) * s - half_to_float(szero[size_t(r)]);
          }
        }
      }
      tensors[prefix + ".qweight"] = {DType::I8, {n, k / 2}, qoq_pack_python(codes, n, k)};
      tensors[prefix + ".s1_scales"] = {DType::F16, {n}, bytes_of(s1)};
      if (grouped(v)) {
        tensors[prefix + ".s2_scales"] = {DType::I8, {G, n}, bytes_of(qoq_group_permute(s2, n, G))};
        tensors[prefix + ".s2_zeros"] = {DType::I8, {G, n}, bytes_of(qoq_group_permute(z2, n, G))};
      } else {
        tensors[prefix + ".s1_szeros"] = {DType::F16, {n}, bytes_of(szero)};
      }
    }
  }
  if (edit) edit(tensors);
  SafetensorsWriter st;
  for (auto& [name, t] : tensors) st.add_copy(name, t.dtype, t.shape, std::move(t.bytes));
  st.write((dir / "model.safetensors").string());
  nlohmann::json config = nlohmann::json::parse(testing::read_file(fixture / "config.json"));
  if (write_config) {
    if (is_qqq(v)) config["quantization_config"] = {{"quant_method", "qqq"}, {"wbits", 4},
                                                    {"group_size", grouped(v) ? kGroup : -1}};
    else config["quantization_config"] = {{"quant_method", "qoq"}, {"bits", 4}, {"group_size", grouped(v) ? kGroup : -1}};
  }
  if (config_edit) config_edit(config);
  testing::write_file(dir / "config.json", config.dump(2));
  return cp;
}

const Weight& linear_of(const Model& m, const std::string& prefix) {
  const int layer = prefix[13] - '0';  // model.layers.L.
  const LayerWeights& l = m.weights.layers[size_t(layer)];
  const std::map<std::string, const Weight*> by_name = {
      {"self_attn.q_proj", &l.wq}, {"self_attn.k_proj", &l.wk},   {"self_attn.v_proj", &l.wv},
      {"self_attn.o_proj", &l.wo}, {"mlp.gate_proj", &l.w_gate}, {"mlp.up_proj", &l.w_up},
      {"mlp.down_proj", &l.w_down}};
  return *by_name.at(prefix.substr(prefix.find('.', 13) + 1));
}

TEST(W4A8Format, DequantizedWeightsEqualTheDefinitionExactly) {
  for (Variant v : kVariants) {
    TempDir tmp;
    const Checkpoint cp = build(tmp / "ckpt", v);
    // QQQ: q/k/v/o [64, 64] and down [64, 96]; QoQ: every linear (gate/up are [96, 64]).
    ASSERT_EQ(cp.expected.size(), is_qqq(v) ? 10u : 14u) << name_of(v);
    Model m = load_model(cp.dir.string());
    for (const auto& [prefix, expected] : cp.expected) {
      const Weight& w = linear_of(m, prefix);
      ASSERT_EQ(w.format, is_qqq(v) ? WeightFormat::QqqInt4 : WeightFormat::QoqInt4) << prefix;
      ASSERT_EQ(w.quant->group_size, grouped(v) ? kGroup : w.cols()) << prefix;
      std::vector<float> row(static_cast<size_t>(w.cols()));
      int64_t mismatches = 0;
      for (int64_t r = 0; r < w.rows(); ++r) {
        dequantize_row(w, r, row.data());
        for (int64_t c = 0; c < w.cols(); ++c) mismatches += row[size_t(c)] != expected[size_t(r * w.cols() + c)];
      }
      EXPECT_EQ(mismatches, 0) << name_of(v) << " " << prefix;
    }
    if (is_qqq(v)) {
      EXPECT_EQ(m.weights.layers[0].w_gate.format, WeightFormat::Dense);  // 96 outputs: not 64-aligned
    }
  }
}

// The CPU linear: exactly the integer definition (per-token int8 activations, int32 sums, the
// format's epilogue), and within the activation-rounding error of fp32 on the dequantized weights.
TEST(W4A8Format, LinearIsTheIntegerDefinitionAndCloseToFp32) {
  for (Variant v : kVariants) {
    TempDir tmp;
    const Checkpoint cp = build(tmp / "ckpt", v);
    Model m = load_model(cp.dir.string());
    const Weight& w = m.weights.layers[1].w_down;  // [64, 96]
    const int64_t n = w.rows(), k = w.cols();
    const int tokens = 5;
    std::mt19937 rng(5);
    std::normal_distribution<float> normal;
    std::vector<float> x(static_cast<size_t>(tokens * k)), bias(static_cast<size_t>(n));
    std::vector<float> out(static_cast<size_t>(tokens * n)), scratch(static_cast<size_t>(64 * k));
    for (float& f : x) f = normal(rng) + 0.3f;  // a mean, so QoQ's zero term matters
    for (float& f : bias) f = normal(rng);
    cpu::linear(x.data(), tokens, w, bias.data(), out.data(), n, scratch.data());
    const std::vector<float>& dq = cp.expected.at("model.layers.1.mlp.down_proj");
    std::vector<float> exact(out.size()), fp32(out.size());
    for (int t = 0; t < tokens; ++t) {
      const float* xt = x.data() + t * k;
      float amax = 0.0f;
      double sum = 0.0;
      for (int64_t i = 0; i < k; ++i) {
        amax = std::max(amax, std::fabs(xt[i]));
        sum += xt[i];
      }
      const float sx = amax / 127.0f;
      for (int64_t o = 0; o < n; ++o) {
        double acc = 0.0, ref = 0.0;
        std::vector<int8_t> w8(static_cast<size_t>(k));
        w4a8_int8_row(w, o, w8.data());
        const float scale = w4a8_output_scale(w, o), szero = w4a8_output_szero(w, o);
        for (int64_t i = 0; i < k; ++i) {
          const double qx = std::nearbyint(xt[i] / sx);
          acc += qx * w8[size_t(i)];
          ref += double(xt[i]) * dq[size_t(o * k + i)];
          // The int8 row and the scales reproduce the expected dequantized weight.
          ASSERT_EQ(float(w8[size_t(i)]) * scale - szero, dq[size_t(o * k + i)]) << name_of(v);
        }
        exact[size_t(t * n + o)] = float(acc * sx * scale - double(szero) * sum + bias[size_t(o)]);
        fp32[size_t(t * n + o)] = float(ref + bias[size_t(o)]);
      }
    }
    EXPECT_LT(test::relative_l2(out, exact), 1e-5) << name_of(v);
    const double err = test::relative_l2(out, fp32);
    EXPECT_LT(err, 0.02) << name_of(v);
    EXPECT_GT(err, 0.0) << name_of(v);  // activations really are quantized
  }
}

// A whole model loads and runs: logits close to the same model with the dequantized weights.
TEST(W4A8Format, ModelLogitsCloseToDequantizedModel) {
  for (Variant v : kVariants) {
    TempDir tmp;
    const Checkpoint cp = build(tmp / "ckpt", v);
    Model q = load_model(cp.dir.string());
    Model d = load_model(cp.dir.string());
    std::vector<std::vector<float>> rows;
    for (LayerWeights& l : d.weights.layers) {
      for (Weight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
        if (!w->quantized()) continue;
        rows.emplace_back(size_t(w->numel()));
        for (int64_t r = 0; r < w->rows(); ++r) dequantize_row(*w, r, rows.back().data() + r * w->cols());
        Weight dense;
        dense.dtype = DType::F32;
        dense.shape = w->shape;
        dense.data = rows.back().data();
        *w = dense;
      }
    }
    const std::vector<int32_t> ids = {1, 17, 99, 3, 250, 42, 7, 128};
    const std::vector<float> lq = test::all_logits(q, ids), ld = test::all_logits(d, ids);
    const double err = test::relative_l2(lq, ld);
    EXPECT_LT(err, 0.05) << name_of(v);
    EXPECT_GT(err, 0.0) << name_of(v);
  }
}

void expect_error(const fs::path& dir, const std::string& needle) {
  try {
    load_model(dir.string());
    ADD_FAILURE() << "loading " << dir << " did not fail (expected: " << needle << ")";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(W4A8Format, BadInputIsAClearError) {
  const std::string q = "model.layers.0.self_attn.q_proj";
  TempDir tmp;
  int i = 0;
  auto case_dir = [&] { return tmp / std::to_string(i++); };
  auto retype = [&](const std::string& name, DType dtype) {
    return [=](std::map<std::string, Tensor>& t) {
      Tensor& x = t[name];
      x.bytes.resize(x.bytes.size() / dtype_size(x.dtype) * dtype_size(dtype));
      x.dtype = dtype;
    };
  };
  // Mismatched shapes.
  build(case_dir(), Variant::QqqChannel, [&](auto& t) { t[q + ".B"].shape = {2, 256}; t[q + ".B"].bytes.resize(2048); });
  expect_error(tmp / "0", "B is i32 [2, 256], expected i32 [4, 128]");
  build(case_dir(), Variant::QqqGroup, [&](auto& t) { t[q + ".s_group"].shape = {1, 128}; });
  expect_error(tmp / "1", "s_group is f16 [1, 128], expected f16 [2, 64]");
  build(case_dir(), Variant::QoqGroup, [&](auto& t) { t[q + ".s2_zeros"].shape = {1, 128}; });
  expect_error(tmp / "2", "s2_zeros is i8 [1, 128], expected i8 [2, 64]");
  build(case_dir(), Variant::QoqChannel, [&](auto& t) { t[q + ".s1_szeros"].shape = {32}; t[q + ".s1_szeros"].bytes.resize(64); });
  expect_error(tmp / "3", "s1_szeros is f16 [32], expected f16 [64]");
  // Wrong dtypes.
  build(case_dir(), Variant::QqqChannel, retype(q + ".s_channel", DType::F16));
  expect_error(tmp / "4", "s_channel is f16 [1, 64], expected f32 [1, 64]");
  build(case_dir(), Variant::QoqChannel, retype(q + ".s1_scales", DType::F32));
  expect_error(tmp / "5", "s1_scales is f32 [64], expected f16 [64]");
  // Configs: unknown method, wrong bits, group size against the tensors, QQQ tensors without one.
  build(case_dir(), Variant::QqqGroup, nullptr, [](nlohmann::json& c) { c["quantization_config"]["quant_method"] = "awq"; });
  expect_error(tmp / "6", "quantization method 'awq' is not supported");
  build(case_dir(), Variant::QqqGroup, nullptr, [](nlohmann::json& c) { c["quantization_config"]["wbits"] = 8; });
  expect_error(tmp / "7", "wbits is 8; qqq checkpoints are 4-bit");
  build(case_dir(), Variant::QqqGroup, nullptr, [](nlohmann::json& c) { c["quantization_config"]["group_size"] = -1; });
  expect_error(tmp / "8", "is per-channel (group_size -1), but model.layers.0.self_attn.q_proj.s_group holds [2, 64]");
  build(case_dir(), Variant::QoqGroup, nullptr, [](nlohmann::json& c) { c["quantization_config"]["group_size"] = 64; });
  expect_error(tmp / "9", "has group_size 64, but the tensors of 'model.layers.0.self_attn.q_proj' are group size 32");
  build(case_dir(), Variant::QqqChannel, nullptr, nullptr, /*write_config=*/false);
  expect_error(tmp / "10", "tensor model.layers.0.self_attn.q_proj.B is a QQQ weight, but config.json has no");
  // QoQ with both variants' tensors; a group scale the kernel's packed multiply would overflow.
  build(case_dir(), Variant::QoqChannel, [&](auto& t) { t[q + ".s2_scales"] = {DType::I8, {2, 64}, std::vector<uint8_t>(128, 1)}; });
  expect_error(tmp / "11", "needs either model.layers.0.self_attn.q_proj.s1_szeros (per-channel) or");
  build(case_dir(), Variant::QoqGroup, [&](auto& t) { t[q + ".s2_scales"].bytes.assign(128, 40); });
  expect_error(tmp / "12", "code * scale exceeds 255");
  // QQQ group scales outside the int8 range for the codes present; a non-finite scale.
  build(case_dir(), Variant::QqqGroup, [&](auto& t) {
    std::vector<uint16_t> s(128, float_to_half(40.0f));
    t[q + ".s_group"].bytes = bytes_of(s);
  });
  expect_error(tmp / "13", "(code - 8) * scale leaves the int8 range");
  build(case_dir(), Variant::QqqChannel, [&](auto& t) {
    std::vector<float> s(64, std::nanf(""));
    t[q + ".s_channel"].bytes = bytes_of(s);
  });
  expect_error(tmp / "14", "s_channel[0] is nan");
  // QoQ tensors under a QQQ config.
  build(case_dir(), Variant::QoqChannel, nullptr, [](nlohmann::json& c) {
    c["quantization_config"] = {{"quant_method", "qqq"}, {"wbits", 4}, {"group_size", -1}};
  });
  expect_error(tmp / "15", "is a QoQ (QServe W4A8) weight, but config.json's quantization_config names another method");
}

// QServe writes no quantization_config: its tensors alone decide (variant and group size).
TEST(W4A8Format, QServeCheckpointWithoutConfigLoads) {
  for (Variant v : {Variant::QoqChannel, Variant::QoqGroup}) {
    TempDir tmp;
    const Checkpoint cp = build(tmp / "ckpt", v, nullptr, nullptr, /*write_config=*/false);
    Model m = load_model(cp.dir.string());
    EXPECT_EQ(m.weights.layers[1].w_up.format, WeightFormat::QoqInt4);
    EXPECT_EQ(m.weights.layers[1].w_up.quant->group_size, grouped(v) ? kGroup : 64);
  }
}

}  // namespace
}  // namespace specq
