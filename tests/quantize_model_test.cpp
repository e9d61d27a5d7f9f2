// specq quantize end to end: quality on a real model (stories260K), exact round trip through the
// written checkpoint, GPTQ checkpoints with bad configs, and the CLI; the same for W8A8 (int8 RTN
// and SmoothQuant, compressed-tensors checkpoints).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>
#include <nlohmann/json.hpp>

#include "gen/generate.h"
#include "io/hf_writer.h"
#include "io/loader.h"
#include "io/safetensors.h"
#include "quant/quantize_model.h"
#include "quant/smoothquant.h"
#include "test_files.h"
#include "quantize_test_util.h"
#include "test_util.h"

namespace specq {
namespace {

using quant::Method;
using quant::QuantOptions;
using test::perplexity_of;
using test::quantize_and_reload;
using test::random_ids;
using test::samples;
using test::stories_bin;
using test::stories_held_out;


TEST(QuantizeModel, StoriesGptqBeatsRtnAndStaysCloseToFp32) {
  const auto calibration = samples(stories_bin(), {1, 2, 3, 4, 5, 6, 7, 8}, 256);
  const auto held_out = stories_held_out();

  Model fp = load_model(stories_bin());
  const double ppl_fp = perplexity_of(fp, held_out);
  testing::TempDir tmp;
  for (bool sym : {false, true}) {
    for (int group : {32, -1}) {
      QuantOptions o;
      o.group_size = group;
      o.sym = sym;
      o.method = Method::Rtn;
      Model rtn = quantize_and_reload(stories_bin(), o, {}, tmp / "rtn");
      o.method = Method::Gptq;
      Model gptq = quantize_and_reload(stories_bin(), o, calibration, tmp / "gptq");
      ASSERT_EQ(gptq.weights.layers[0].wq.format, WeightFormat::GptqInt4);
      ASSERT_EQ(gptq.weights.layers[0].w_down.format, WeightFormat::Dense);  // K = 172 cannot be packed
      const double ppl_rtn = perplexity_of(rtn, held_out), ppl_gptq = perplexity_of(gptq, held_out);
      std::printf("stories260K group %d sym %d: fp32 %.4f rtn %.4f gptq %.4f\n", group, int(sym), ppl_fp, ppl_rtn,
                  ppl_gptq);
      EXPECT_GT(ppl_rtn, ppl_fp);               // 4 bits cost something
      EXPECT_LT(ppl_gptq, ppl_rtn);             // GPTQ recovers part of it
      EXPECT_LT(ppl_gptq, ppl_fp * 1.04);       // measured: +1.5% to +2.6%
    }
  }
}

TEST(QuantizeModel, WrittenCheckpointReloadsToTheSameLogits) {
  const auto calibration = samples(stories_bin(), {7, 8}, 128);
  testing::TempDir tmp;
  for (bool act_order : {false, true}) {
    QuantOptions o;
    o.group_size = 32;
    o.act_order = act_order;
    Model in_memory;
    Model reloaded = quantize_and_reload(stories_bin(), o, calibration, tmp / "q", &in_memory);
    EXPECT_EQ(reloaded.weights.layers[2].wv.quant->act_order, act_order);
    const std::vector<float> la = test::all_logits(in_memory, calibration[0]);
    const std::vector<float> lb = test::all_logits(reloaded, calibration[0]);
    ASSERT_EQ(la.size(), lb.size());
    for (size_t i = 0; i < la.size(); ++i) ASSERT_EQ(la[i], lb[i]) << i;
  }
}

TEST(QuantizeModel, HfFixtureQuantizesEveryLinearAndReloads) {
  const std::string fixture = (testing::kHfFixtures / "llama3_gqa_f32").string();
  testing::TempDir tmp;
  QuantOptions o;
  o.method = Method::Rtn;
  o.group_size = 32;
  o.sym = true;
  Model q = quantize_and_reload(fixture, o, {}, tmp / "q");
  for (const LayerWeights& l : q.weights.layers)
    for (const Weight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
      EXPECT_EQ(w->format, WeightFormat::GptqInt4);
  const nlohmann::json config = nlohmann::json::parse(testing::read_file(tmp / "q" / "config.json"));
  EXPECT_EQ(config["quantization_config"]["quant_method"], "gptq");
  EXPECT_EQ(config["quantization_config"]["checkpoint_format"], "gptq");
  EXPECT_FALSE(config["quantization_config"].contains("modules_in_block_to_quantize"));
  // Tensor names, dtypes and shapes as AutoGPTQ writes them.
  SafetensorsFile st((tmp / "q" / "model.safetensors").string());
  const SafetensorsTensor* qweight = st.find("model.layers.0.mlp.down_proj.qweight");
  ASSERT_NE(qweight, nullptr);
  EXPECT_EQ(qweight->dtype, DType::I32);
  EXPECT_EQ(qweight->shape, (std::vector<int64_t>{64 / 8, 32}));
  EXPECT_EQ(st.find("model.layers.0.mlp.down_proj.scales")->dtype, DType::F16);
  EXPECT_EQ(st.find("model.layers.0.mlp.down_proj.scales")->shape, (std::vector<int64_t>{2, 32}));
  EXPECT_EQ(st.find("model.layers.0.mlp.down_proj.qzeros")->shape, (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(st.find("model.layers.0.mlp.down_proj.g_idx")->shape, (std::vector<int64_t>{64}));
  EXPECT_EQ(st.find("model.layers.0.mlp.down_proj.weight"), nullptr);
}

// On the random-weight fixtures perplexity is meaningless (their logits are huge), so GPTQ is
// judged by how close its logits stay to the fp32 model's on held-out tokens.
TEST(QuantizeModel, HfFixturesGptqLogitsCloserThanRtn) {
  double sum_rtn = 0.0, sum_gptq = 0.0;
  for (const char* name : {"llama3_gqa_f32", "llama_mqa_f16", "llama_tied_bf16", "qwen2_bias_sharded"}) {
    const std::string fixture = (testing::kHfFixtures / name).string();
    std::vector<std::vector<int32_t>> calibration;
    for (uint32_t s = 1; s <= 8; ++s) calibration.push_back(random_ids(s, 128, 256));
    const std::vector<int32_t> held_out = random_ids(99, 128, 256);
    Model fp = load_model(fixture);
    const std::vector<float> ref = test::all_logits(fp, held_out);
    testing::TempDir tmp;
    for (int group : {32, -1}) {
      QuantOptions o;
      o.group_size = group;
      o.sym = true;
      o.method = Method::Rtn;
      Model rtn = quantize_and_reload(fixture, o, {}, tmp / "rtn");
      o.method = Method::Gptq;
      Model gptq = quantize_and_reload(fixture, o, calibration, tmp / "gptq");
      const double e_rtn = test::relative_l2(test::all_logits(rtn, held_out), ref);
      const double e_gptq = test::relative_l2(test::all_logits(gptq, held_out), ref);
      std::printf("%s group %d: logits relative error rtn %.4f gptq %.4f\n", name, group, e_rtn, e_gptq);
      // Random weights and inputs give near-isotropic Hessians, where GPTQ can only gain a little
      // (measured 0.5-8%; qwen2 g32 is +0.5% worse): allow 2% per case, demand a gain overall.
      EXPECT_LT(e_gptq, e_rtn * 1.02) << name << " group " << group;
      sum_rtn += e_rtn;
      sum_gptq += e_gptq;
    }
  }
  EXPECT_LT(sum_gptq, 0.97 * sum_rtn);
}

// Rewrites config.json of a copied quantized checkpoint and returns the load error.
std::string load_error_with(const std::filesystem::path& dir, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json config = nlohmann::json::parse(testing::read_file(dir / "config.json"));
  edit(config);
  testing::write_file(dir / "config.json", config.dump());
  return testing::error_of([&] { load_model(dir.string()); });
}

TEST(QuantizeModel, BadQuantizationConfigsAreClearErrors) {
  testing::TempDir tmp;
  QuantOptions o;
  o.method = Method::Rtn;
  o.group_size = 32;
  quantize_and_reload(stories_bin(), o, {}, tmp / "q");
  const nlohmann::json original = nlohmann::json::parse(testing::read_file(tmp / "q" / "config.json"));
  auto with = [&](const std::function<void(nlohmann::json&)>& edit) {
    testing::write_file(tmp / "q" / "config.json", original.dump());
    return load_error_with(tmp / "q", edit);
  };
  EXPECT_NE(with([](nlohmann::json& c) { c["quantization_config"]["bits"] = 8; }).find("bits must be 4"),
            std::string::npos);
  EXPECT_NE(with([](nlohmann::json& c) { c["quantization_config"]["quant_method"] = "awq"; })
                .find("'awq' is not supported"),
            std::string::npos);
  EXPECT_NE(with([](nlohmann::json& c) { c["quantization_config"]["group_size"] = 64; }).find("group_size 64"),
            std::string::npos);
  EXPECT_NE(with([](nlohmann::json& c) { c.erase("quantization_config"); }).find("describes the quantization"),
            std::string::npos);
  // quantize_config.json (AutoGPTQ's separate file) is read when config.json has none.
  testing::write_file(tmp / "q" / "quantize_config.json", R"({"bits": 3, "group_size": 32})");
  EXPECT_NE(with([](nlohmann::json& c) { c.erase("quantization_config"); }).find("quantize_config.json"),
            std::string::npos);
}

TEST(QuantizeCli, RtnRunsAndBadFlagsAreErrors) {
  testing::TempDir tmp;
  const std::string base = "quantize --model " + stories_bin() + " --out " + (tmp / "out").string() + " --threads 1";
  const auto ok = test::run_specq(base + " --method rtn --group-size 32 --eval-ids 1,403,407,261,378,432");
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  const nlohmann::json report = nlohmann::json::parse(ok.out);
  EXPECT_EQ(report["quantized_linears"], 20);
  EXPECT_EQ(report["dense_linears"], 15);
  EXPECT_GT(report["perplexity_output"].get<double>(), 1.0);
  EXPECT_NE(ok.err.find("kept dense: model.layers.0.mlp.down_proj: its 172 inputs"), std::string::npos);
  EXPECT_NE(ok.err.find("20/20"), std::string::npos);
  const auto info = test::run_specq("info --json --model " + (tmp / "out").string());
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_EQ(nlohmann::json::parse(info.out)["linear_formats"]["gptq-int4"], 20);

  const auto bits = test::run_specq(base + " --bits 3");
  EXPECT_EQ(bits.exit_code, 1);
  EXPECT_NE(bits.err.find("only 4-bit"), std::string::npos) << bits.err;
  const auto calib = test::run_specq(base + " --method gptq");
  EXPECT_EQ(calib.exit_code, 1);
  EXPECT_NE(calib.err.find("--calib-ids"), std::string::npos) << calib.err;
  const auto method = test::run_specq(base + " --method awq");
  EXPECT_EQ(method.exit_code, 1);
  EXPECT_NE(method.err.find("rtn, gptq, smoothquant, qqq or qoq"), std::string::npos) << method.err;
  const auto group = test::run_specq(base + " --method rtn --group-size 48");
  EXPECT_EQ(group.exit_code, 1);
  EXPECT_NE(group.err.find("no linear layer"), std::string::npos) << group.err;
}

TEST(QuantizeCli, CalibratesOnJsonlText) {
  testing::TempDir tmp;
  const std::string base = "quantize --model " + stories_bin() + " --out " + (tmp / "out").string() +
                           " --threads 1 --method gptq --group-size 32 --sym --act-order";
  const std::string gsm8k = test::shared_path("data/gsm8k/test.jsonl");
  const auto ok = test::run_specq(base + " --calib " + gsm8k + " --text-field question --calib-tokens 600");
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(nlohmann::json::parse(ok.out)["calibration_tokens"], 600);
  Model q = load_model((tmp / "out").string());
  EXPECT_TRUE(q.weights.layers[4].wo.quant->act_order);
  EXPECT_TRUE(std::filesystem::exists(tmp / "out" / "tok512.bin"));  // the tokenizer travels along

  testing::write_file(tmp / "bad.jsonl", "{\"text\": \"Once upon a time\"}\n{\"txt\": 1}\n");
  const auto bad = test::run_specq(base + " --calib " + (tmp / "bad.jsonl").string());
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("bad.jsonl:2: expected an object with a string field \"text\""), std::string::npos)
      << bad.err;
}

// ---- W8A8 (int8 per-channel weights, per-token int8 activations) ----

QuantOptions w8a8(Method method) {
  QuantOptions o;
  o.method = method;
  o.bits = 8;
  o.group_size = -1;
  return o;
}

// Acceptance: held-out perplexity of W8A8 within 3% of fp32 (numbers in docs/PERF.md).
TEST(QuantizeModel, StoriesW8A8WithinThreePercentOfFp32) {
  const auto calibration = samples(stories_bin(), {1, 2, 3, 4, 5, 6, 7, 8}, 256);
  const auto held_out = stories_held_out();
  Model fp = load_model(stories_bin());
  const double ppl_fp = perplexity_of(fp, held_out);
  testing::TempDir tmp;
  Model rtn = quantize_and_reload(stories_bin(), w8a8(Method::Rtn), {}, tmp / "rtn");
  Model sq = quantize_and_reload(stories_bin(), w8a8(Method::SmoothQuant), calibration, tmp / "sq");
  for (Model* m : {&rtn, &sq})
    for (const LayerWeights& l : m->weights.layers)
      for (const Weight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
        ASSERT_EQ(w->format, WeightFormat::Int8PerChannel);  // K = 172 is no obstacle for int8
  const double ppl_rtn = perplexity_of(rtn, held_out), ppl_sq = perplexity_of(sq, held_out);
  std::printf("stories260K W8A8: fp32 %.4f rtn %.4f (%+.2f%%) smoothquant %.4f (%+.2f%%)\n", ppl_fp, ppl_rtn,
              100.0 * (ppl_rtn / ppl_fp - 1.0), ppl_sq, 100.0 * (ppl_sq / ppl_fp - 1.0));
  EXPECT_NE(ppl_rtn, ppl_fp);  // int8 changes something
  EXPECT_LT(std::fabs(ppl_rtn / ppl_fp - 1.0), 0.03);
  EXPECT_LT(std::fabs(ppl_sq / ppl_fp - 1.0), 0.03);
}

// The random-weight fixtures: perplexity of random held-out ids. Their logits are huge, so the
// absolute values mean nothing; the ratio to fp32 still measures what W8A8 changes.
TEST(QuantizeModel, HfFixturesW8A8WithinThreePercentOfFp32) {
  for (const char* name : {"llama3_gqa_f32", "llama_mqa_f16", "llama_tied_bf16", "qwen2_bias_sharded"}) {
    const std::string fixture = (testing::kHfFixtures / name).string();
    std::vector<std::vector<int32_t>> calibration, held_out;
    for (uint32_t s = 1; s <= 8; ++s) calibration.push_back(random_ids(s, 128, 256));
    for (uint32_t s = 90; s <= 93; ++s) held_out.push_back(random_ids(s, 128, 256));
    Model fp = load_model(fixture);
    const double ppl_fp = perplexity_of(fp, held_out);
    testing::TempDir tmp;
    Model rtn = quantize_and_reload(fixture, w8a8(Method::Rtn), {}, tmp / "rtn");
    Model sq = quantize_and_reload(fixture, w8a8(Method::SmoothQuant), calibration, tmp / "sq");
    const double ppl_rtn = perplexity_of(rtn, held_out), ppl_sq = perplexity_of(sq, held_out);
    const std::vector<float> ref = test::all_logits(fp, held_out[0]);
    std::printf("%s W8A8: fp32 %.4f rtn %.4f (%+.2f%%) smoothquant %.4f (%+.2f%%); logits relative error rtn %.4f "
                "smoothquant %.4f\n",
                name, ppl_fp, ppl_rtn, 100.0 * (ppl_rtn / ppl_fp - 1.0), ppl_sq, 100.0 * (ppl_sq / ppl_fp - 1.0),
                test::relative_l2(test::all_logits(rtn, held_out[0]), ref),
                test::relative_l2(test::all_logits(sq, held_out[0]), ref));
    EXPECT_LT(std::fabs(ppl_rtn / ppl_fp - 1.0), 0.03) << name;
    EXPECT_LT(std::fabs(ppl_sq / ppl_fp - 1.0), 0.03) << name;
  }
}

// Smoothing alone (no quantization) is an exact rewrite: GQA (v_proj rows shared by two heads),
// MQA, biases (Qwen2's v bias), tied embeddings.
TEST(QuantizeModel, SmoothingKeepsTheFunction) {
  for (const char* name : {"llama3_gqa_f32", "llama_mqa_f16", "llama_tied_bf16", "qwen2_bias_sharded"}) {
    const std::string fixture = (testing::kHfFixtures / name).string();
    Model m = load_model(fixture);
    std::vector<quant::LayerRanges> ranges(size_t(m.config.num_layers));
    {
      RunnerOptions ro;
      ro.threads = 1;
      ro.observe_linear_input = [&](const LinearInput& in) { quant::observe_ranges(ranges, in); };
      auto runner = make_cpu_runner(m, ro);
      for (uint32_t s = 1; s <= 4; ++s) quant::perplexity(*runner, random_ids(s, 64, 256));
    }
    const std::vector<int32_t> ids = random_ids(77, 64, 256);
    const std::vector<float> before = test::all_logits(m, ids);
    const Weight& wv = m.weights.layers[0].wv;
    const float wv_before = load_as_float(wv.data, wv.dtype, 0);
    quant::smooth_model(m, ranges, 0.5);
    ASSERT_EQ(wv.dtype, DType::F32);
    EXPECT_NE(static_cast<const float*>(wv.data)[0], wv_before) << name;  // it did something
    const std::vector<float> after = test::all_logits(m, ids);
    EXPECT_LT(test::relative_l2(after, before), 2e-5) << name;
  }
}

TEST(QuantizeModel, SmoothingFactors) {
  const std::vector<float> s = quant::smoothing_factors({4.0f, 0.0f, 1.0f, 9.0f}, {1.0f, 2.0f, 0.0f, 1.0f}, 0.5);
  EXPECT_EQ(s, (std::vector<float>{2.0f, 1.0f, 1.0f, 3.0f}));
  const std::vector<float> t = quant::smoothing_factors({8.0f}, {2.0f}, 1.0);
  EXPECT_EQ(t[0], 8.0f);
}

TEST(QuantizeModel, W8A8CheckpointIsCompressedTensorsAndReloadsExactly) {
  const std::string fixture = (testing::kHfFixtures / "qwen2_bias_sharded").string();
  std::vector<std::vector<int32_t>> calibration = {random_ids(5, 96, 256), random_ids(6, 96, 256)};
  testing::TempDir tmp;
  Model in_memory;
  Model reloaded = quantize_and_reload(fixture, w8a8(Method::SmoothQuant), calibration, tmp / "q", &in_memory);
  const std::vector<int32_t> ids = random_ids(9, 40, 256);
  const std::vector<float> a = test::all_logits(in_memory, ids), b = test::all_logits(reloaded, ids);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << i;
  const nlohmann::json config = nlohmann::json::parse(testing::read_file(tmp / "q" / "config.json"));
  const nlohmann::json& q = config["quantization_config"];
  EXPECT_EQ(q["quant_method"], "compressed-tensors");
  EXPECT_EQ(q["format"], "int-quantized");
  EXPECT_EQ(q["config_groups"]["group_0"]["weights"]["strategy"], "channel");
  EXPECT_EQ(q["config_groups"]["group_0"]["input_activations"]["strategy"], "token");
  EXPECT_EQ(q["ignore"], nlohmann::json::array({"lm_head"}));
  SafetensorsFile st((tmp / "q" / "model.safetensors").string());
  const SafetensorsTensor* w = st.find("model.layers.1.mlp.down_proj.weight");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dtype, DType::I8);
  EXPECT_EQ(st.find("model.layers.1.mlp.down_proj.weight_scale")->shape,
            (std::vector<int64_t>{w->shape[0], 1}));
  EXPECT_EQ(st.find("model.layers.1.self_attn.v_proj.bias")->dtype, DType::F32);  // smoothed: an f32 copy
}

TEST(QuantizeCli, SmoothQuantRunsAndBadFlagsAreErrors) {
  testing::TempDir tmp;
  const std::string base = "quantize --model " + stories_bin() + " --out " + (tmp / "out").string() + " --threads 1";
  const std::string ids = " --calib-ids 1,403,407,261,378,432,300,270,280,290,301,302 --eval-ids 1,403,407,261,378,432";
  const auto ok = test::run_specq(base + " --method smoothquant --alpha 0.6" + ids);
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  const nlohmann::json report = nlohmann::json::parse(ok.out);
  EXPECT_EQ(report["quantized_linears"], 35);
  EXPECT_EQ(report["bits"], 8);
  EXPECT_EQ(report["alpha"], 0.6);
  EXPECT_NE(ok.err.find("35/35"), std::string::npos) << ok.err;
  EXPECT_LT(std::fabs(report["perplexity_output"].get<double>() / report["perplexity_input"].get<double>() - 1.0),
            0.1);
  const auto info = test::run_specq("info --json --model " + (tmp / "out").string());
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_EQ(nlohmann::json::parse(info.out)["linear_formats"]["int8-per-channel"], 35);

  const auto rtn8 = test::run_specq(base + " --method rtn --bits 8");
  ASSERT_EQ(rtn8.exit_code, 0) << rtn8.err;
  const auto calib = test::run_specq(base + " --method smoothquant");
  EXPECT_EQ(calib.exit_code, 1);
  EXPECT_NE(calib.err.find("--method smoothquant needs calibration tokens"), std::string::npos) << calib.err;
  const auto group = test::run_specq(base + " --method smoothquant --group-size 128" + ids);
  EXPECT_EQ(group.exit_code, 1);
  EXPECT_NE(group.err.find("one scale per output channel"), std::string::npos) << group.err;
  const auto gptq8 = test::run_specq(base + " --method gptq --bits 8" + ids);
  EXPECT_EQ(gptq8.exit_code, 1);
  EXPECT_NE(gptq8.err.find("--method gptq writes 4-bit"), std::string::npos) << gptq8.err;
  const auto alpha = test::run_specq(base + " --method smoothquant --alpha 1.5" + ids);
  EXPECT_EQ(alpha.exit_code, 1);
  EXPECT_NE(alpha.err.find("--alpha 1.5 must be in [0, 1]"), std::string::npos) << alpha.err;
}

}  // namespace
}  // namespace specq
