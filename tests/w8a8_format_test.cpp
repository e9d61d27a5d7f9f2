// The W8A8 weight format (Int8PerChannel) and its two checkpoint layouts: hand-built tiny
// checkpoints (QServe: .weight i8 + .dequant_scale f16 [N]; compressed-tensors: .weight i8 +
// .weight_scale [N, 1] and a quantization_config) dequantize to exactly code * scale, load to the
// same logits, and those logits are the model's with dequantized weights and per-token int8
// activations. The activation rule and the int32 linear are checked exactly; bad input is an error.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <random>

#include "backend/cpu/ops.h"
#include "core/dtype.h"
#include "io/loader.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "io/w8a8_checkpoint.h"
#include "model/runner.h"
#include "test_files.h"
#include "test_util.h"

namespace specq {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

const char* kLinears[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                          "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

enum class Layout { QServe, CompressedTensors };

// llm-compressor's W8A8 preset as it appears in config.json.
nlohmann::json compressed_tensors_config() {
  return nlohmann::json::parse(R"({
    "quant_method": "compressed-tensors", "format": "int-quantized", "quantization_status": "compressed",
    "global_compression_ratio": null, "ignore": ["lm_head"], "kv_cache_scheme": null, "sparsity_config": {},
    "config_groups": {"group_0": {"targets": ["Linear"], "output_activations": null,
      "weights": {"num_bits": 8, "type": "int", "symmetric": true, "strategy": "channel", "dynamic": false,
                  "group_size": null, "actorder": null, "block_structure": null, "observer": "minmax",
                  "observer_kwargs": {}},
      "input_activations": {"num_bits": 8, "type": "int", "symmetric": true, "strategy": "token",
                  "dynamic": true, "group_size": null, "actorder": null, "block_structure": null,
                  "observer": null, "observer_kwargs": {}}}}})");
}

// What a test changes in layer 0's q_proj (to make bad input) or in the config.
struct Knobs {
  DType scale_dtype = DType::F16;
  bool flat_scale = false;            // compressed-tensors scale as [N] instead of [N, 1]
  bool no_scale = false;
  bool float_weight = false;          // q_proj.weight stored as f16 beside its scale
  int zero_point = -1;                // >= 0: write q_proj.weight_zero_point filled with it
  bool input_scale = false;           // a static activation scale
  std::function<void(nlohmann::json&)> edit_config;
};

Knobs knobs_with(const std::function<void(Knobs&)>& set) {
  Knobs k;
  set(k);
  return k;
}

// A tiny int8 checkpoint from fixture llama3_gqa_f32: every block linear's rows quantized with
// scale = (fp16 or bf16 of) max|row| / 127 and codes round(w / scale) (the test's own rule, so
// the loader is checked against values it did not make). Remembers codes and scales per linear.
struct Checkpoint {
  fs::path dir;
  std::map<std::string, std::vector<int8_t>> codes;
  std::map<std::string, std::vector<float>> scales;
};

Checkpoint build(const fs::path& dir, Layout layout, const Knobs& knobs = {}) {
  const fs::path fixture = testing::kHfFixtures / "llama3_gqa_f32";
  fs::create_directories(dir);
  SafetensorsFile source((fixture / "model.safetensors").string());
  SafetensorsWriter st;
  Checkpoint cp;
  cp.dir = dir;
  for (const SafetensorsTensor& t : source.header().tensors) {
    bool linear = false;
    for (const char* l : kLinears) linear = linear || t.name.find(std::string(l) + ".weight") != std::string::npos;
    if (!linear) {
      st.add(t.name, t.dtype, t.shape, t.data);
      continue;
    }
    const std::string prefix = t.name.substr(0, t.name.size() - std::string(".weight").size());
    const int64_t n = t.shape[0], k = t.shape[1];
    const auto* w = reinterpret_cast<const float*>(t.data);
    std::vector<int8_t>& q = cp.codes[prefix];
    std::vector<float>& s = cp.scales[prefix];
    q.resize(size_t(n * k));
    s.resize(size_t(n));
    std::vector<uint8_t> scale_bytes(size_t(n) * dtype_size(knobs.scale_dtype));
    for (int64_t r = 0; r < n; ++r) {
      float amax = 0.0f;
      for (int64_t c = 0; c < k; ++c) amax = std::max(amax, std::fabs(w[r * k + c]));
      float scale = amax / 127.0f;
      if (knobs.scale_dtype == DType::F16) {
        const uint16_t h = float_to_half(scale);
        scale = half_to_float(h);
        std::memcpy(scale_bytes.data() + 2 * r, &h, 2);
      } else if (knobs.scale_dtype == DType::BF16) {
        uint32_t bits;
        std::memcpy(&bits, &scale, 4);
        const uint16_t b = uint16_t(bits >> 16);  // truncation: any bf16 value will do
        bits = uint32_t(b) << 16;
        std::memcpy(&scale, &bits, 4);
        std::memcpy(scale_bytes.data() + 2 * r, &b, 2);
      } else {
        std::memcpy(scale_bytes.data() + 4 * r, &scale, 4);
      }
      s[size_t(r)] = scale;
      for (int64_t c = 0; c < k; ++c)
        q[size_t(r * k + c)] = int8_t(std::clamp(std::lround(w[r * k + c] / scale), -128L, 127L));
    }
    const bool bad = prefix == "model.layers.0.self_attn.q_proj";
    if (bad && knobs.float_weight) {
      std::vector<uint8_t> half(size_t(n * k) * 2);
      for (int64_t i = 0; i < n * k; ++i) {
        const uint16_t h = float_to_half(w[i]);
        std::memcpy(half.data() + 2 * i, &h, 2);
      }
      st.add_copy(t.name, DType::F16, t.shape, std::move(half));
    } else {
      st.add_copy(t.name, DType::I8, t.shape, std::vector<uint8_t>(q.begin(), q.end()));
    }
    if (bad && knobs.no_scale) continue;
    if (layout == Layout::QServe) {
      st.add_copy(prefix + ".dequant_scale", knobs.scale_dtype, {n}, std::move(scale_bytes));
    } else {
      std::vector<int64_t> shape = bad && knobs.flat_scale ? std::vector<int64_t>{n} : std::vector<int64_t>{n, 1};
      st.add_copy(prefix + ".weight_scale", knobs.scale_dtype, shape, std::move(scale_bytes));
      if (bad && knobs.zero_point >= 0)
        st.add_copy(prefix + ".weight_zero_point", DType::I8, {n, 1},
                    std::vector<uint8_t>(size_t(n), uint8_t(knobs.zero_point)));
      if (bad && knobs.input_scale) st.add_copy(prefix + ".input_scale", DType::F32, {1}, std::vector<uint8_t>(4, 0));
    }
  }
  st.write((dir / "model.safetensors").string());
  nlohmann::json config = nlohmann::json::parse(testing::read_file(fixture / "config.json"));
  if (layout == Layout::CompressedTensors) config["quantization_config"] = compressed_tensors_config();
  if (knobs.edit_config) knobs.edit_config(config);
  testing::write_file(dir / "config.json", config.dump(2));
  return cp;
}

std::vector<Weight*> block_weights(Model& m) {
  std::vector<Weight*> out;
  for (LayerWeights& l : m.weights.layers)
    for (Weight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) out.push_back(w);
  return out;
}

TEST(W8A8Format, ActivationQuantizationRule) {
  // scale = 127 / 127 = 1: codes are the values rounded half to even, clamped to [-127, 127].
  const std::vector<float> x = {127.0f, 2.5f, 3.5f, -2.5f, 0.49f, -127.0f, 1.5f, 0.0f};
  std::vector<int8_t> q(x.size());
  EXPECT_EQ(cpu::quantize_row_int8(x.data(), int64_t(x.size()), q.data()), 1.0f);
  EXPECT_EQ(q, (std::vector<int8_t>{127, 2, 4, -2, 0, -127, 2, 0}));
  const std::vector<float> y = {0.3f, -0.6f, 0.1f};
  EXPECT_EQ(cpu::quantize_row_int8(y.data(), 3, q.data()), 0.6f / 127.0f);
  EXPECT_EQ(q[1], -127);
  EXPECT_EQ(q[0], int8_t(std::nearbyint(0.3f / (0.6f / 127.0f))));
  const std::vector<float> zeros(5, 0.0f);
  EXPECT_EQ(cpu::quantize_row_int8(zeros.data(), 5, q.data()), 0.0f);
  EXPECT_EQ(q[0], 0);
  const std::vector<float> bad = {1.0f, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_TRUE(std::isnan(cpu::quantize_row_int8(bad.data(), 2, q.data())));
}

// The CPU linear equals the definition computed independently: exact integer sum, then
// float(acc) * s_x * s_w + bias.
TEST(W8A8Format, LinearIsTheInt32Definition) {
  TempDir tmp;
  const Checkpoint cp =
      build(tmp / "ct", Layout::CompressedTensors, knobs_with([](Knobs& k) { k.scale_dtype = DType::BF16; }));
  Model m = load_model(cp.dir.string());
  const Weight& w = m.weights.layers[1].w_down;  // [32, 64]
  ASSERT_EQ(w.format, WeightFormat::Int8PerChannel);
  const int64_t n = w.rows(), k = w.cols();
  const int tokens = 6;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(tokens * k)), bias(static_cast<size_t>(n));
  std::vector<float> out(static_cast<size_t>(tokens * n)), scratch(static_cast<size_t>(64 * k));
  for (float& v : x) v = normal(rng);
  for (float& v : bias) v = normal(rng);
  x[5] = 40.0f;  // an outlier channel in token 0
  cpu::linear(x.data(), tokens, w, bias.data(), out.data(), n, scratch.data());
  const std::vector<int8_t>& codes = cp.codes.at("model.layers.1.mlp.down_proj");
  const std::vector<float>& scales = cp.scales.at("model.layers.1.mlp.down_proj");
  for (int t = 0; t < tokens; ++t) {
    float amax = 0.0f;
    for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(x[size_t(t * k + i)]));
    const float sx = amax / 127.0f;
    for (int64_t o = 0; o < n; ++o) {
      int64_t acc = 0;
      for (int64_t i = 0; i < k; ++i) {
        const long qx = std::clamp(std::lround(std::nearbyint(x[size_t(t * k + i)] / sx)), -127L, 127L);
        acc += qx * codes[size_t(o * k + i)];
      }
      // Exact up to the one rounding a compiler may save by fusing the bias add (an FMA).
      // volatile: these roundings happen here as written, whatever this file's compiler fuses.
      const volatile float p = float(acc) * sx;
      const volatile float y = p * scales[size_t(o)];
      const float b = bias[size_t(o)];
      const volatile float separate = y + b;
      const float fused = std::fma(p, scales[size_t(o)], b);
      const float got = out[size_t(t * n + o)];
      ASSERT_TRUE(got == separate || got == fused)
          << t << " " << o << ": " << got << " vs " << separate << " / " << fused << " acc " << acc << " sx " << sx;
    }
  }
}

class W8A8Layouts : public ::testing::TestWithParam<std::pair<Layout, DType>> {};

TEST_P(W8A8Layouts, DequantizesToTheDefinition) {
  const auto [layout, scale_dtype] = GetParam();
  TempDir tmp;
  const Checkpoint cp = build(tmp / "m", layout, knobs_with([d = scale_dtype](Knobs& k) { k.scale_dtype = d; }));
  Model m = load_model(cp.dir.string());
  std::vector<float> row;
  for (int l = 0; l < m.config.num_layers; ++l) {
    const LayerWeights& lw = m.weights.layers[size_t(l)];
    const Weight* weights[] = {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down};
    for (int i = 0; i < 7; ++i) {
      const std::string prefix = fmt::format("model.layers.{}.{}", l, kLinears[i]);
      const Weight& w = *weights[i];
      ASSERT_EQ(w.format, WeightFormat::Int8PerChannel) << prefix;
      EXPECT_EQ(w.quant->scales.dtype, scale_dtype);
      row.resize(size_t(w.cols()));
      for (int64_t o = 0; o < w.rows(); ++o) {
        dequantize_row(w, o, row.data());
        for (int64_t c = 0; c < w.cols(); ++c)
          ASSERT_EQ(row[size_t(c)],
                    float(cp.codes.at(prefix)[size_t(o * w.cols() + c)]) * cp.scales.at(prefix)[size_t(o)])
              << prefix << " " << o << " " << c;
      }
    }
  }
  EXPECT_EQ(m.weights.lm_head.format, WeightFormat::Dense);
}

INSTANTIATE_TEST_SUITE_P(All, W8A8Layouts,
                         ::testing::Values(std::pair{Layout::QServe, DType::F16},
                                           std::pair{Layout::CompressedTensors, DType::F16},
                                           std::pair{Layout::CompressedTensors, DType::BF16},
                                           std::pair{Layout::CompressedTensors, DType::F32}),
                         [](const auto& param_info) {
                           const bool qserve = param_info.param.first == Layout::QServe;
                           return std::string(qserve ? "QServe_" : "CompressedTensors_") +
                                  std::string(dtype_name(param_info.param.second));
                         });

// Both layouts give the same logits, and they are the logits of the model whose linears hold the
// dequantized weights (dense f32) and whose linear inputs are quantized per token and dequantized.
TEST(W8A8Format, ModelLogitsAreDequantizedWeightsWithInt8Activations) {
  TempDir tmp;
  build(tmp / "qserve", Layout::QServe);
  build(tmp / "ct", Layout::CompressedTensors);
  Model qserve = load_model((tmp / "qserve").string());
  Model ct = load_model((tmp / "ct").string());
  std::vector<int32_t> ids = {1};
  std::mt19937 rng(11);
  while (ids.size() < 24) ids.push_back(int32_t(rng() % 256));
  const std::vector<float> a = test::all_logits(qserve, ids), b = test::all_logits(ct, ids);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << i;

  // The reference: dequantized dense weights; every block linear's input replaced in place by its
  // int8 round trip q * s (the observer sees the buffer the linear reads next).
  Model ref = load_model((tmp / "ct").string());
  std::vector<std::vector<float>> dense;
  for (Weight* w : block_weights(ref)) {
    dense.emplace_back(size_t(w->numel()));
    for (int64_t o = 0; o < w->rows(); ++o) dequantize_row(*w, o, dense.back().data() + o * w->cols());
    Weight d;
    d.dtype = DType::F32;
    d.shape = w->shape;
    d.data = dense.back().data();
    *w = d;
  }
  std::vector<int8_t> q;
  const std::vector<float> r = test::all_logits(ref, ids, [&](const LinearInput& in) {
    auto* rows = const_cast<float*>(in.rows);
    q.resize(size_t(in.dim));
    for (int t = 0; t < in.n; ++t) {
      float* x = rows + int64_t(t) * in.dim;
      const float s = cpu::quantize_row_int8(x, in.dim, q.data());
      for (int64_t i = 0; i < in.dim; ++i) x[i] = float(q[size_t(i)]) * s;
    }
  });
  // Only fp32 summation order differs (int32 sum vs fp32 dot of the same products).
  EXPECT_LT(test::relative_l2(a, r), 1e-5);
  // And int8 activations matter: the dense model without them is measurably different.
  Model plain = load_model((tmp / "ct").string());
  std::vector<std::vector<float>> dense2 = dense;
  size_t i = 0;
  for (Weight* w : block_weights(plain)) {
    Weight d;
    d.dtype = DType::F32;
    d.shape = w->shape;
    d.data = dense2[i++].data();
    *w = d;
  }
  EXPECT_GT(test::relative_l2(a, test::all_logits(plain, ids)), 1e-4);
}

TEST(W8A8Format, WrittenConfigParses) {
  const nlohmann::json j = w8a8_config_json({"lm_head", "model.layers.0.mlp.down_proj"});
  const W8A8Config c = parse_compressed_tensors_config(j, "written");
  EXPECT_EQ(c.ignore, (std::vector<std::string>{"lm_head", "model.layers.0.mlp.down_proj"}));
  EXPECT_NO_THROW(parse_compressed_tensors_config(compressed_tensors_config(), "preset"));
}

std::string load_error(const fs::path& dir, Layout layout, const Knobs& knobs) {
  build(dir, layout, knobs);
  return testing::error_of([&] { load_model(dir.string()); });
}

TEST(W8A8Format, BadInputIsAClearError) {
  TempDir tmp;
  int case_number = 0;
  auto expect = [&](Layout layout, const Knobs& knobs, const std::string& needle) {
    const std::string e = load_error(tmp / std::to_string(case_number++), layout, knobs);
    EXPECT_NE(e.find(needle), std::string::npos) << "expected '" << needle << "' in: " << e;
  };
  auto config_edit = [](std::function<void(nlohmann::json&)> f) {
    Knobs k;
    k.edit_config = [f](nlohmann::json& c) { f(c["quantization_config"]); };
    return k;
  };
  auto weights = [](nlohmann::json& q) -> nlohmann::json& { return q["config_groups"]["group_0"]["weights"]; };
  auto acts = [](nlohmann::json& q) -> nlohmann::json& {
    return q["config_groups"]["group_0"]["input_activations"];
  };
  const Layout ct = Layout::CompressedTensors;
  expect(ct, config_edit([&](nlohmann::json& q) { weights(q)["num_bits"] = 4; }),
         "config_groups.group_0.weights.num_bits is 4");
  expect(ct, config_edit([&](nlohmann::json& q) { weights(q)["symmetric"] = false; }), "asymmetric");
  expect(ct, config_edit([&](nlohmann::json& q) {
           weights(q)["strategy"] = "group";
           weights(q)["group_size"] = 128;
         }),
         "weights.strategy is 'group', expected 'channel'");
  expect(ct, config_edit([&](nlohmann::json& q) { weights(q)["type"] = "float"; }), "weights.type is 'float'");
  expect(ct, config_edit([&](nlohmann::json& q) { acts(q)["dynamic"] = false; }),
         "input_activations.dynamic is false; static activation scales");
  expect(ct, config_edit([&](nlohmann::json& q) { acts(q)["strategy"] = "tensor"; }),
         "input_activations.strategy is 'tensor', expected 'token'");
  expect(ct, config_edit([&](nlohmann::json& q) { q["config_groups"]["group_0"].erase("input_activations"); }),
         "W8A16");
  expect(ct, config_edit([&](nlohmann::json& q) { q["format"] = "pack-quantized"; }), "format 'pack-quantized'");
  expect(ct, config_edit([&](nlohmann::json& q) { q["kv_cache_scheme"] = {{"num_bits", 8}}; }), "kv_cache_scheme");
  expect(ct, knobs_with([](Knobs& k) { k.flat_scale = true; }), "q_proj.weight_scale has shape [64], expected [64, 1]");
  expect(ct, knobs_with([](Knobs& k) { k.scale_dtype = DType::I32; }), "scales have dtype i32");
  expect(ct, knobs_with([](Knobs& k) { k.no_scale = true; }), "q_proj.weight is int8 but has no");
  expect(ct, knobs_with([](Knobs& k) { k.float_weight = true; }), "weight has dtype f16, expected i8");
  expect(ct, knobs_with([](Knobs& k) { k.zero_point = 3; }), "weight_zero_point[0] is 3; asymmetric");
  expect(ct, knobs_with([](Knobs& k) { k.input_scale = true; }), "q_proj.input_scale holds a static activation scale");
  Knobs no_config;
  no_config.edit_config = [](nlohmann::json& c) { c.erase("quantization_config"); };
  expect(ct, no_config, "no quantization_config with quant_method \"compressed-tensors\"");
  expect(Layout::QServe, knobs_with([](Knobs& k) { k.scale_dtype = DType::F32; }),
         "q_proj.dequant_scale is f32 [64], expected f16 [64]");
  Knobs qserve_with_ct;
  qserve_with_ct.edit_config = [](nlohmann::json& c) { c["quantization_config"] = compressed_tensors_config(); };
  expect(Layout::QServe, qserve_with_ct, "dequant_scale is a QServe W8A8 tensor");
  // A symmetric checkpoint that stores all-zero zero points loads.
  build(tmp / "zp0", ct, knobs_with([](Knobs& k) { k.zero_point = 0; }));
  EXPECT_EQ(load_model((tmp / "zp0").string()).weights.layers[0].wq.format, WeightFormat::Int8PerChannel);
}

}  // namespace
}  // namespace specq
