// EAGLE head checkpoints and the --spec CLI flags.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "core/error.h"
#include "spec/eagle_loader.h"
#include "spec_test_util.h"

namespace specq {
namespace {

namespace fs = std::filesystem;

// Writes the head as the EAGLE repository names it (fc.weight = [fc1 | fc2] side by side).
void write_safetensors(const EagleWeights& w, const ModelConfig& c, const fs::path& dir) {
  const int64_t h = c.hidden_size;
  std::vector<std::pair<std::string, std::vector<float>>> tensors;
  std::vector<std::vector<int64_t>> shapes;
  auto values = [](const Weight& t) {
    const float* p = static_cast<const float*>(t.data);
    return std::vector<float>(p, p + t.numel());
  };
  std::vector<float> fc(size_t(2 * h * h));
  const std::vector<float> fc1 = values(w.fc1), fc2 = values(w.fc2);
  for (int64_t r = 0; r < h; ++r) {
    std::copy_n(fc1.begin() + r * h, h, fc.begin() + r * 2 * h);
    std::copy_n(fc2.begin() + r * h, h, fc.begin() + r * 2 * h + h);
  }
  auto add = [&](const std::string& name, std::vector<float> v, std::vector<int64_t> shape) {
    tensors.emplace_back(name, std::move(v));
    shapes.push_back(std::move(shape));
  };
  add("fc.weight", fc, {h, 2 * h});
  add("fc.bias", w.fc_bias, {h});
  add("embed_tokens.weight", std::vector<float>(size_t(c.vocab_size * h), 0.5f), {c.vocab_size, h});  // unused
  const std::string l = "layers.0.";
  add(l + "self_attn.q_proj.weight", values(w.wq), w.wq.shape);
  add(l + "self_attn.k_proj.weight", values(w.wk), w.wk.shape);
  add(l + "self_attn.v_proj.weight", values(w.wv), w.wv.shape);
  add(l + "self_attn.o_proj.weight", values(w.wo), w.wo.shape);
  add(l + "post_attention_layernorm.weight", w.ffn_norm, {h});
  add(l + "mlp.gate_proj.weight", values(w.w_gate), w.w_gate.shape);
  add(l + "mlp.up_proj.weight", values(w.w_up), w.w_up.shape);
  add(l + "mlp.down_proj.weight", values(w.w_down), w.w_down.shape);
  nlohmann::json header = nlohmann::json::object();
  size_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const size_t bytes = tensors[i].second.size() * 4;
    header[tensors[i].first] = {{"dtype", "F32"}, {"shape", shapes[i]}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text += ' ';
  fs::create_directories(dir);
  std::ofstream out(dir / "model.safetensors", std::ios::binary);
  const uint64_t length = text.size();
  out.write(reinterpret_cast<const char*>(&length), 8);
  out.write(text.data(), std::streamsize(text.size()));
  for (const auto& [name, v] : tensors)
    out.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * 4));
}

// Two heads with the same weights give bit-identical logits on the same inputs.
void expect_same_head(Model& base, EagleWeights a_weights, EagleWeights b_weights) {
  CpuEagleHead a(base, std::move(a_weights), 64, 16), b(base, std::move(b_weights), 64, 16);
  const std::vector<int32_t> tokens{5, 77, 300, 2};
  const std::vector<int32_t> positions{0, 1, 2, 3};
  std::vector<float> features(4 * size_t(base.config.hidden_size));
  for (size_t i = 0; i < features.size(); ++i) features[i] = synthetic_value(9, i, 0.0f, 1.0f);
  EagleStep step;
  step.tokens = tokens;
  step.features = positions;  // the features stored for positions 0..3
  step.positions = positions;
  for (CpuEagleHead* head : {&a, &b}) {
    head->set_features(0, HiddenRows{4, {}, features, nullptr, nullptr});
    head->forward(step);
  }
  for (int t = 0; t < 4; ++t)
    for (int v = 0; v < base.config.vocab_size; ++v) ASSERT_EQ(a.logits(t)[size_t(v)], b.logits(t)[size_t(v)]);
}

// The reference top-k (which the CUDA kernel is tested against): a full sort by (value desc, id asc)
// and log-probabilities from a double log-sum-exp; ties at the cut take the smaller ids.
TEST(EagleTopK, MatchesAFullSort) {
  std::mt19937 rng(5);
  for (const int n : {1, 7, 1000, 32000}) {
    std::vector<float> logits(static_cast<size_t>(n));
    for (float& v : logits) v = float(int(rng() % 64)) * 0.125f - 4.0f;  // many exact ties
    double total = 0.0;
    const float top = *std::max_element(logits.begin(), logits.end());
    for (float v : logits) total += std::exp(double(v) - double(top));
    std::vector<int32_t> sorted(static_cast<size_t>(n)), scratch(static_cast<size_t>(n));
    std::iota(sorted.begin(), sorted.end(), 0);
    std::stable_sort(sorted.begin(), sorted.end(),
                     [&](int32_t a, int32_t b) { return logits[size_t(a)] > logits[size_t(b)]; });
    for (const int k : {1, 3, 10, 32}) {
      if (k > n) continue;
      std::vector<int32_t> ids(static_cast<size_t>(k));
      std::vector<float> logp(static_cast<size_t>(k));
      cpu::top_k_logprobs(logits.data(), n, k, ids.data(), logp.data(), scratch.data());
      for (int i = 0; i < k; ++i) {
        ASSERT_EQ(ids[size_t(i)], sorted[size_t(i)]) << "n " << n << " k " << k << " rank " << i;
        const double want = double(logits[size_t(sorted[size_t(i)])]) - double(top) - std::log(total);
        ASSERT_NEAR(logp[size_t(i)], want, 1e-5);
        ASSERT_LE(logp[size_t(i)], 0.0f);
      }
    }
  }
  std::vector<int32_t> ids(2), scratch(1);
  std::vector<float> logp(2), one{0.5f};
  EXPECT_THROW(cpu::top_k_logprobs(one.data(), 1, 2, ids.data(), logp.data(), scratch.data()), Error);
}

TEST(EagleLoader, SafetensorsRoundTripGivesTheSameHead) {
  Model base = load_model(test::stories260k_path());
  const EagleWeights random = random_eagle_weights(base.config, 42);
  const fs::path dir = fs::temp_directory_path() / ("specq_eagle_" + std::to_string(::getpid()));
  write_safetensors(random, base.config, dir);
  expect_same_head(base, random_eagle_weights(base.config, 42), load_eagle_weights(dir.string(), base.config));
  fs::remove_all(dir);
  EXPECT_THROW(load_eagle_weights(dir.string(), base.config), Error);
}

// The fixture (tests/fixtures/eagle/make_fixture.py) holds the same head as torch.save's zip+pickle and as
// safetensors; both must load to identical weights, and a pickle that calls anything else is refused.
TEST(EagleLoader, TorchPickleAndSafetensorsAgree) {
  Model base = load_model(test::stories260k_path());
  const std::string fixtures = std::string(SPECQ_FIXTURE_DIR) + "/eagle/";
  const EagleWeights from_torch = load_eagle_weights(fixtures + "torch", base.config);
  const EagleWeights from_safetensors = load_eagle_weights(fixtures + "safetensors", base.config);
  // fc.weight[0, 64] is element 64 of tensor 0: 0.1 * sin(0.37 * 64), stored as fp16; it opens fc2.
  const float expected = half_to_float(float_to_half(float(0.1 * std::sin(0.37 * 64))));
  EXPECT_EQ(from_torch.fc2.dtype, DType::F16);
  EXPECT_EQ(half_to_float(static_cast<const uint16_t*>(from_torch.fc2.data)[0]), expected);
  EXPECT_EQ(from_torch.fc_bias, from_safetensors.fc_bias);
  EXPECT_EQ(from_torch.ffn_norm, from_safetensors.ffn_norm);
  expect_same_head(base, load_eagle_weights(fixtures + "torch", base.config),
                   load_eagle_weights(fixtures + "safetensors", base.config));
  try {
    load_eagle_weights(fixtures + "evil", base.config);
    ADD_FAILURE() << "a pickle calling os.system was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("refuses"), std::string::npos) << e.what();
  }
}

std::string run(const std::string& args) {
  const std::string command = std::string(SPECQ_BINARY) + " " + args + " 2>&1";
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  std::array<char, 4096> buffer{};
  while (fgets(buffer.data(), int(buffer.size()), pipe) != nullptr) output += buffer.data();
  EXPECT_EQ(pclose(pipe), 0) << output;
  return output;
}

TEST(SpecCli, EveryMethodMatchesPlainGreedyAndReportsStatistics) {
  const std::string model = test::stories260k_path();
  const std::string common = "generate --model " + model + " --prompt-ids \"\" --max-new-tokens 40 --json --threads 1";
  const auto plain = nlohmann::json::parse(run(common));
  EXPECT_FALSE(plain.contains("mean_accepted_length"));
  const std::vector<std::string> methods{"--spec eagle --eagle random:3", "--spec eagle --tree-topk 4 --tree-size 90",
                                        "--spec draft --draft " + model, "--spec cascade --draft " + model};
  for (const std::string& spec : methods) {
    const auto out = nlohmann::json::parse(run(common + " " + spec));
    EXPECT_EQ(out["token_ids"], plain["token_ids"]) << spec;
    EXPECT_GE(out["mean_accepted_length"].get<double>(), 1.0) << spec;
    EXPECT_GT(out["target_steps"].get<int>(), 0) << spec;
    for (const char* phase : {"draft", "verify", "bookkeeping"}) EXPECT_TRUE(out["phase_seconds"].contains(phase));
  }
}

}  // namespace
}  // namespace specq
