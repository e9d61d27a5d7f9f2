// The GPTQ weight format: hand-built packed tensors dequantize to exactly (q - zero) * scale, the
// CPU linear on them equals the dense linear on the dequantized matrix, and bad inputs are errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>

#include "backend/cpu/ops.h"
#include "core/error.h"
#include "io/gptq_checkpoint.h"

namespace specq {
namespace {

// A [n, k] matrix in AutoGPTQ layout built from chosen codes, zeros and scales.
struct HandBuilt {
  int64_t n, k;
  int group;                      // inputs per group
  std::vector<int> codes;         // [k][n], 0..15
  std::vector<int> zeros;         // [groups][n], the real zero points
  std::vector<float> scales;      // [groups][n], fp16-exact
  std::vector<int32_t> g_idx;     // [k]
  std::map<std::string, std::pair<StoredTensor, std::shared_ptr<std::vector<uint8_t>>>> tensors;

  HandBuilt(int64_t n_, int64_t k_, int group_, bool sym, bool act_order, bool v2, uint32_t seed)
      : n(n_), k(k_), group(group_) {
    std::mt19937 rng(seed);
    const int64_t groups = k / group;
    codes.resize(size_t(k * n));
    for (int& c : codes) c = int(rng() % 16);
    zeros.resize(size_t(groups * n));
    scales.resize(size_t(groups * n));
    for (size_t i = 0; i < zeros.size(); ++i) {
      zeros[i] = sym ? 8 : int(v2 ? rng() % 16 : 1 + rng() % 15);  // v1 can hold 1..16; keep 1..15
      scales[i] = half_to_float(float_to_half(0.001f + float(rng() % 1000) * 1e-4f));
    }
    g_idx.resize(size_t(k));
    for (int64_t i = 0; i < k; ++i) g_idx[size_t(i)] = int32_t(i / group);
    if (act_order) std::shuffle(g_idx.begin(), g_idx.end(), rng);  // a true act-order permutation

    std::vector<int32_t> qweight(size_t(k / 8 * n), 0), qzeros(size_t(groups * n / 8), 0);
    for (int64_t kk = 0; kk < k; ++kk)
      for (int64_t o = 0; o < n; ++o)
        qweight[size_t(kk / 8 * n + o)] |= int32_t(uint32_t(codes[size_t(kk * n + o)]) << (4 * (kk % 8)));
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t o = 0; o < n; ++o) {
        const uint32_t stored = uint32_t(zeros[size_t(g * n + o)] - (v2 ? 0 : 1)) & 15u;
        qzeros[size_t(g * (n / 8) + o / 8)] |= int32_t(stored << (4 * (o % 8)));
      }
    std::vector<uint16_t> half(scales.size());
    for (size_t i = 0; i < half.size(); ++i) half[i] = float_to_half(scales[i]);
    put("w.qweight", DType::I32, {k / 8, n}, qweight.data(), qweight.size() * 4);
    put("w.qzeros", DType::I32, {groups, n / 8}, qzeros.data(), qzeros.size() * 4);
    put("w.scales", DType::F16, {groups, n}, half.data(), half.size() * 2);
    put("w.g_idx", DType::I32, {k}, g_idx.data(), g_idx.size() * 4);
  }

  void put(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* src, size_t bytes) {
    auto buf = std::make_shared<std::vector<uint8_t>>(bytes);
    std::memcpy(buf->data(), src, bytes);
    tensors[name] = {StoredTensor{dtype, std::move(shape), buf->data()}, buf};
  }

  TensorLookup lookup() const {
    return [this](const std::string& name) -> std::optional<StoredTensor> {
      auto it = tensors.find(name);
      if (it == tensors.end()) return std::nullopt;
      return it->second.first;
    };
  }

  float expected(int64_t o, int64_t kk) const {
    const int64_t g = g_idx[size_t(kk)];
    return float(codes[size_t(kk * n + o)] - zeros[size_t(g * n + o)]) * scales[size_t(g * n + o)];
  }
};

GptqConfig config(int group_size, bool sym, bool desc_act, bool v2) {
  GptqConfig c;
  c.group_size = group_size;
  c.sym = sym;
  c.desc_act = desc_act;
  c.v2 = v2;
  c.source = "test config";
  return c;
}

struct Case {
  int group;  // -1 = per-channel
  bool sym, act_order, v2;
};

class GptqFormat : public ::testing::TestWithParam<Case> {};

TEST_P(GptqFormat, DequantizesToTheDefinitionAndLinearMatchesDense) {
  const Case c = GetParam();
  const int64_t n = 48, k = 256;
  HandBuilt hb(n, k, c.group < 0 ? int(k) : c.group, c.sym, c.act_order, c.v2, 1234u + uint32_t(c.group));
  const Weight w = load_gptq_linear(hb.lookup(), "w", n, k, config(c.group, c.sym, c.act_order, c.v2));
  ASSERT_EQ(w.format, WeightFormat::GptqInt4);
  EXPECT_EQ(w.quant->act_order, c.act_order);
  std::vector<float> dense(size_t(n * k)), row(static_cast<size_t>(k));
  for (int64_t o = 0; o < n; ++o) {
    dequantize_row(w, o, row.data());
    for (int64_t kk = 0; kk < k; ++kk) ASSERT_EQ(row[size_t(kk)], hb.expected(o, kk)) << "row " << o << " k " << kk;
    std::copy(row.begin(), row.end(), dense.begin() + o * k);
  }
  Weight dense_w;
  dense_w.dtype = DType::F32;
  dense_w.shape = {n, k};
  dense_w.data = dense.data();
  const int tokens = 5;
  std::vector<float> x(size_t(tokens * k));
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  for (float& v : x) v = normal(rng);
  std::vector<float> scratch(size_t(64 * k)), out_q(size_t(tokens * n)), out_d(size_t(tokens * n));
  cpu::linear(x.data(), tokens, w, nullptr, out_q.data(), n, scratch.data());
  cpu::linear(x.data(), tokens, dense_w, nullptr, out_d.data(), n, scratch.data());
  for (size_t i = 0; i < out_q.size(); ++i) EXPECT_EQ(out_q[i], out_d[i]) << i;
}

INSTANTIATE_TEST_SUITE_P(Layouts, GptqFormat,
                         ::testing::Values(Case{32, true, false, false}, Case{64, false, false, false},
                                           Case{128, true, false, true}, Case{128, false, false, true},
                                           Case{-1, true, false, false}, Case{-1, false, false, true},
                                           Case{32, true, true, false}, Case{64, false, true, true},
                                           Case{128, false, true, false}));

// Act-order is honoured: the same codes read with g_idx ignored would give other values.
TEST(GptqFormat, ActOrderUsesGIdx) {
  HandBuilt hb(16, 128, 32, false, true, false, 99);
  const Weight w = load_gptq_linear(hb.lookup(), "w", 16, 128, config(32, false, true, false));
  std::vector<float> row(128);
  int differ = 0;
  for (int64_t o = 0; o < 16; ++o) {
    dequantize_row(w, o, row.data());
    for (int64_t kk = 0; kk < 128; ++kk) {
      const int64_t plain = kk / 32;
      const float ignoring = float(hb.codes[size_t(kk * 16 + o)] - hb.zeros[size_t(plain * 16 + o)]) *
                             hb.scales[size_t(plain * 16 + o)];
      differ += row[size_t(kk)] != ignoring;
    }
  }
  EXPECT_GT(differ, 100);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(GptqFormat, InconsistentTensorsAreClearErrors) {
  const GptqConfig c32 = config(32, true, false, false);
  {
    HandBuilt hb(16, 64, 32, true, false, false, 1);
    hb.tensors["w.scales"].first.shape = {3, 16};
    EXPECT_NE(error_of([&] { load_gptq_linear(hb.lookup(), "w", 16, 64, c32); }).find("groups"), std::string::npos);
  }
  {
    HandBuilt hb(16, 64, 32, true, false, false, 1);
    hb.tensors["w.qweight"].first.dtype = DType::F32;
    EXPECT_NE(error_of([&] { load_gptq_linear(hb.lookup(), "w", 16, 64, c32); }).find("qweight has dtype f32"),
              std::string::npos);
  }
  {
    HandBuilt hb(16, 64, 32, true, false, false, 1);
    hb.tensors["w.qzeros"].first.shape = {2, 4};
    EXPECT_NE(error_of([&] { load_gptq_linear(hb.lookup(), "w", 16, 64, c32); }).find("qzeros has shape [2, 4]"),
              std::string::npos);
  }
  {
    HandBuilt hb(16, 64, 32, true, false, false, 1);
    hb.tensors.erase("w.scales");
    EXPECT_NE(error_of([&] { load_gptq_linear(hb.lookup(), "w", 16, 64, c32); }).find("w.scales"), std::string::npos);
  }
  {  // logical shape disagrees with qweight
    HandBuilt hb(16, 64, 32, true, false, false, 1);
    EXPECT_NE(error_of([&] { load_gptq_linear(hb.lookup(), "w", 24, 64, c32); }).find("expected"), std::string::npos);
  }
  {  // group size not dividing K
    HandBuilt hb(16, 96, 32, true, false, false, 1);
    EXPECT_NE(error_of([&] { load_gptq_linear(hb.lookup(), "w", 16, 96, config(64, true, false, false)); })
                  .find("does not divide"),
              std::string::npos);
  }
  {  // g_idx out of range
    HandBuilt hb(16, 64, 32, false, true, false, 1);
    reinterpret_cast<int32_t*>(hb.tensors["w.g_idx"].second->data())[5] = 7;
    EXPECT_NE(error_of([&] { load_gptq_linear(hb.lookup(), "w", 16, 64, config(32, false, true, false)); })
                  .find("g_idx[5] = 7"),
              std::string::npos);
  }
  {  // sym but a zero point other than 8
    HandBuilt hb(16, 64, 32, false, false, false, 1);
    EXPECT_NE(error_of([&] { load_gptq_linear(hb.lookup(), "w", 16, 64, c32); }).find("symmetric"),
              std::string::npos);
  }
  {  // act-order without g_idx
    HandBuilt hb(16, 64, 32, false, true, false, 1);
    hb.tensors.erase("w.g_idx");
    EXPECT_NE(error_of([&] { load_gptq_linear(hb.lookup(), "w", 16, 64, config(32, false, true, false)); })
                  .find("no g_idx"),
              std::string::npos);
  }
}

TEST(GptqFormat, PackingNeedsMultiplesOfEight) {
  Weight w;
  w.format = WeightFormat::GptqInt4;
  w.shape = {16, 172};
  auto q = std::make_shared<QuantizedWeight>();
  q->group_size = 172;
  w.quant = q;
  EXPECT_NE(error_of([&] { validate_quantized("down", w, 16, 172); }).find("multiples of 8"), std::string::npos);
}

TEST(GptqConfigParse, AcceptsKnownFormsAndRejectsOthers) {
  const nlohmann::json transformers = {{"quant_method", "gptq"}, {"bits", 4},        {"group_size", 128},
                                       {"desc_act", true},       {"sym", false},     {"static_groups", false},
                                       {"checkpoint_format", "gptq_v2"}};
  const GptqConfig c = parse_gptq_config(transformers, "t");
  EXPECT_EQ(c.group_size, 128);
  EXPECT_TRUE(c.desc_act);
  EXPECT_FALSE(c.sym);
  EXPECT_TRUE(c.v2);
  const nlohmann::json autogptq = {{"bits", 4}, {"group_size", -1}, {"desc_act", false}};  // quantize_config.json
  EXPECT_FALSE(parse_gptq_config(autogptq, "a").v2);
  EXPECT_EQ(parse_gptq_config(autogptq, "a").group_size, -1);

  auto with = [&](const char* key, nlohmann::json value) {
    nlohmann::json j = transformers;
    j[key] = std::move(value);
    return error_of([&] { parse_gptq_config(j, "cfg"); });
  };
  EXPECT_NE(with("bits", 3).find("3-bit GPTQ is not supported"), std::string::npos);
  EXPECT_NE(with("bits", 8).find("bits must be 4"), std::string::npos);
  EXPECT_NE(with("quant_method", "awq").find("'awq' is not supported"), std::string::npos);
  EXPECT_NE(with("checkpoint_format", "marlin").find("'marlin' is not supported"), std::string::npos);
  EXPECT_NE(with("group_size", 0).find("group_size 0"), std::string::npos);
  EXPECT_NE(with("bits", "four").find("wrong type"), std::string::npos);
  EXPECT_NE(with("is_marlin_format", true).find("Marlin"), std::string::npos);
}

}  // namespace
}  // namespace specq
