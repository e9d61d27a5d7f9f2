// specq quantize --method qqq / qoq: held-out perplexity on a real model (stories260K) and the
// tiny HF fixtures within a recorded delta of fp32 (numbers in docs/PERF.md), checkpoints that
// reload to the same logits in QQQ's and QServe's layouts, and the CLI with its bad flags.
#include <gtest/gtest.h>

#include <cstdio>

#include "io/safetensors.h"
#include "quantize_test_util.h"
#include "test_files.h"

namespace specq {
namespace {

using quant::Method;
using quant::QuantOptions;

QuantOptions w4a8(Method method, int group_size) {
  QuantOptions o;
  o.method = method;
  o.bits = 4;
  o.group_size = group_size;
  return o;
}

struct Variant {
  Method method;
  int group_size;
  const char* name;
};
// stories260K (dim 64, hidden 172) and the fixtures (32 / 64 / 96) have no 128-input group: g32.
const Variant kVariants[] = {{Method::Qqq, -1, "qqq chn"},
                             {Method::Qqq, 32, "qqq g32"},
                             {Method::Qoq, -1, "qoq chn"},
                             {Method::Qoq, 32, "qoq g32"}};

int count_format(const Model& m, WeightFormat format) {
  int count = 0;
  for (const LayerWeights& l : m.weights.layers)
    for (const Weight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) count += w->format == format;
  return count;
}

// Acceptance: stories260K held-out perplexity within a small delta of fp32. QQQ tiles need 64
// outputs, so only q_proj and o_proj ([64, 64]) are QQQ; QoQ packs q/k/v/o; the 172-wide MLP stays
// dense in both (listed as kept dense).
TEST(W4A8Quantize, StoriesPerplexityCloseToFp32) {
  const auto calibration = test::samples(test::stories_bin(), {1, 2, 3, 4, 5, 6, 7, 8}, 256);
  const auto held_out = test::stories_held_out();
  Model fp = load_model(test::stories_bin());
  const double ppl_fp = test::perplexity_of(fp, held_out);
  for (const Variant& v : kVariants) {
    testing::TempDir tmp;
    Model q = test::quantize_and_reload(test::stories_bin(), w4a8(v.method, v.group_size), calibration, tmp / "q");
    const WeightFormat format = v.method == Method::Qqq ? WeightFormat::QqqInt4 : WeightFormat::QoqInt4;
    EXPECT_EQ(count_format(q, format), v.method == Method::Qqq ? 10 : 20) << v.name;
    const double ppl = test::perplexity_of(q, held_out);
    std::printf("stories260K W4A8 %s: fp32 %.4f quantized %.4f (%+.2f%%)\n", v.name, ppl_fp, ppl,
                100.0 * (ppl / ppl_fp - 1.0));
    EXPECT_NE(ppl, ppl_fp) << v.name;
    EXPECT_LT(std::fabs(ppl / ppl_fp - 1.0), 0.04) << v.name;  // measured: +0.3% to +2.3%
  }
}

// The random-weight fixtures: perplexity of random held-out ids, as for W8A8 (docs/PERF.md). Their
// logits are huge (perplexities of 1e5..3e10), which magnifies any weight change: measured
// -5%..+29% (llama_tied_bf16, whose 64-wide linears are all 4-bit, is the worst); the bound is
// the recorded worst case with a margin. stories260K above is the meaningful number.
TEST(W4A8Quantize, HfFixturesPerplexityCloseToFp32) {
  for (const char* name : {"llama3_gqa_f32", "llama_mqa_f16", "llama_tied_bf16", "qwen2_bias_sharded"}) {
    const std::string fixture = (testing::kHfFixtures / name).string();
    std::vector<std::vector<int32_t>> calibration, held_out;
    for (uint32_t s = 1; s <= 8; ++s) calibration.push_back(test::random_ids(s, 128, 256));
    for (uint32_t s = 90; s <= 93; ++s) held_out.push_back(test::random_ids(s, 128, 256));
    Model fp = load_model(fixture);
    const double ppl_fp = test::perplexity_of(fp, held_out);
    for (const Variant& v : kVariants) {
      testing::TempDir tmp;
      Model q = test::quantize_and_reload(fixture, w4a8(v.method, v.group_size), calibration, tmp / "q");
      const WeightFormat format = v.method == Method::Qqq ? WeightFormat::QqqInt4 : WeightFormat::QoqInt4;
      const int quantized = count_format(q, format);
      const double ppl = test::perplexity_of(q, held_out);
      std::printf("%s W4A8 %s: %d linears, fp32 %.4f quantized %.4f (%+.2f%%)\n", name, v.name, quantized, ppl_fp,
                  ppl, 100.0 * (ppl / ppl_fp - 1.0));
      if (quantized == 0) continue;  // 32-wide QQQ fixtures: no linear has 64 outputs
      EXPECT_NE(ppl, ppl_fp) << name << " " << v.name;
      EXPECT_LT(std::fabs(ppl / ppl_fp - 1.0), 0.35) << name << " " << v.name;
    }
  }
}

// What is written is what was quantized: identical logits after reloading, QQQ's and QServe's
// tensor names, and the quantization_config each method writes.
TEST(W4A8Quantize, CheckpointsReloadExactly) {
  const std::string fixture = (testing::kHfFixtures / "llama_tied_bf16").string();
  const std::vector<std::vector<int32_t>> calibration = {test::random_ids(5, 96, 256), test::random_ids(6, 96, 256)};
  for (const Variant& v : kVariants) {
    testing::TempDir tmp;
    Model in_memory;
    Model reloaded =
        test::quantize_and_reload(fixture, w4a8(v.method, v.group_size), calibration, tmp / "q", &in_memory);
    const std::vector<int32_t> ids = test::random_ids(9, 40, 256);
    const std::vector<float> a = test::all_logits(in_memory, ids), b = test::all_logits(reloaded, ids);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << v.name << " " << i;
    const nlohmann::json config = nlohmann::json::parse(testing::read_file(tmp / "q" / "config.json"));
    const nlohmann::json& q = config["quantization_config"];
    EXPECT_EQ(q["quant_method"], v.method == Method::Qqq ? "qqq" : "qoq");
    EXPECT_EQ(q["group_size"], v.group_size);
    SafetensorsFile st((tmp / "q" / "model.safetensors").string());
    const std::string p = "model.layers.1.self_attn.q_proj";
    if (v.method == Method::Qqq) {
      EXPECT_EQ(st.find(p + ".B")->shape, (std::vector<int64_t>{4, 128}));
      EXPECT_EQ(st.find(p + ".s_channel")->dtype, DType::F32);
      EXPECT_EQ(st.find(p + ".s_group") != nullptr, v.group_size > 0);
      EXPECT_EQ(st.find("model.layers.1.mlp.gate_proj.weight")->shape, (std::vector<int64_t>{96, 64}));  // dense
    } else {
      EXPECT_EQ(st.find(p + ".qweight")->dtype, DType::I8);
      EXPECT_EQ(st.find(p + ".s1_scales")->shape, (std::vector<int64_t>{64}));
      EXPECT_EQ(st.find(p + (v.group_size > 0 ? ".s2_zeros" : ".s1_szeros")) != nullptr, true);
    }
  }
}

TEST(W4A8Quantize, CliRunsAndBadFlagsAreErrors) {
  testing::TempDir tmp;
  const std::string base =
      "quantize --model " + test::stories_bin() + " --out " + (tmp / "out").string() + " --threads 1";
  const std::string ids = " --calib-ids 1,403,407,261,378,432,300,270,280,290,301,302 --eval-ids 1,403,407,261,378,432";
  for (const char* method : {"qqq", "qoq"}) {
    const auto ok = test::run_specq(base + " --method " + method + " --group-size -1" + ids);
    ASSERT_EQ(ok.exit_code, 0) << ok.err;
    const nlohmann::json report = nlohmann::json::parse(ok.out);
    EXPECT_EQ(report["quantized_linears"], std::string(method) == "qqq" ? 10 : 20);
    EXPECT_EQ(report["group_size"], -1);
    EXPECT_LT(std::fabs(report["perplexity_output"].get<double>() / report["perplexity_input"].get<double>() - 1.0),
              0.2);
    EXPECT_NE(ok.err.find("kept dense: model.layers.0.mlp.down_proj"), std::string::npos) << ok.err;
    const auto info = test::run_specq("info --json --model " + (tmp / "out").string());
    ASSERT_EQ(info.exit_code, 0) << info.err;
    EXPECT_EQ(nlohmann::json::parse(info.out)["linear_formats"][std::string("w4a8-") + method],
              std::string(method) == "qqq" ? 10 : 20);
  }
  const std::pair<std::string, std::string> bad[] = {
      {" --method qqq --group-size -1", "--method qqq needs calibration tokens"},
      {" --method qoq --group-size 48" + ids, "--group-size 48: QoQ groups must be a multiple of 32"},
      {" --method qqq --bits 8" + ids, "--method qqq writes 4-bit W4A8 weights"},
      {" --method qqq --act-order" + ids, "--act-order is not supported by the W4A8 formats"},
      {" --method awq" + ids, "--method must be rtn, gptq, smoothquant, qqq or qoq"},
      {" --method qqq --group-size 128" + ids, "no linear layer of"},
  };
  for (const auto& [flags, message] : bad) {
    const auto r = test::run_specq(base + flags);
    EXPECT_EQ(r.exit_code, 1) << flags;
    EXPECT_NE(r.err.find(message), std::string::npos) << flags << ": " << r.err;
  }
}

}  // namespace
}  // namespace specq
