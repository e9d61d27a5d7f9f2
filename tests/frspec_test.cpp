// FR-Spec: frequency-ranked token maps (building, files of specq, FR-Spec and SGLang), an EAGLE head
// whose draft LM head keeps only the mapped rows, and `specq frspec build` / `--frspec` end to end.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "backend/cpu/ops.h"
#include "core/error.h"
#include "io/loader.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "io/torch_checkpoint.h"
#include "spec/eagle_head.h"
#include "spec/frspec.h"
#include "spec_test_util.h"
#include "test_util.h"

namespace specq {
namespace {

namespace fs = std::filesystem;

std::string fixture(const std::string& name) { return std::string(SPECQ_FIXTURE_DIR) + "/frspec/" + name; }

fs::path scratch_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("specq_frspec_test_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

TokenFrequencies counts_of(std::vector<uint64_t> counts) {
  TokenFrequencies f;
  f.counts = std::move(counts);
  for (uint64_t c : f.counts) f.tokens += c;
  return f;
}

TEST(FrSpecBuild, RanksByCountThenId) {
  const TokenFrequencies f = counts_of({5, 9, 0, 9, 1, 0, 3});
  EXPECT_EQ(frequency_ranked_vocab(f, 4, {}), (std::vector<int32_t>{1, 3, 0, 6}));
  // More ids than the corpus saw: the unseen fill the tail in id order.
  EXPECT_EQ(frequency_ranked_vocab(f, 7, {}), (std::vector<int32_t>{1, 3, 0, 6, 4, 2, 5}));
}

TEST(FrSpecBuild, ForcesEndOfSequenceIds) {
  const TokenFrequencies f = counts_of({5, 9, 0, 9, 1, 0, 3});
  // EOS 5 (never seen) replaces the least frequent kept id; one already kept is not repeated.
  EXPECT_EQ(frequency_ranked_vocab(f, 4, std::vector<int32_t>{5, 3}), (std::vector<int32_t>{1, 3, 0, 5}));
  EXPECT_EQ(frequency_ranked_vocab(f, 4, std::vector<int32_t>{5, 2, 5}), (std::vector<int32_t>{1, 3, 5, 2}));
  EXPECT_THROW(frequency_ranked_vocab(f, 1, std::vector<int32_t>{5, 2}), Error);
  EXPECT_THROW(frequency_ranked_vocab(f, 0, {}), Error);
  EXPECT_THROW(frequency_ranked_vocab(f, 8, {}), Error);
  EXPECT_THROW(frequency_ranked_vocab(f, 3, std::vector<int32_t>{7}), Error);
}

TEST(FrSpecBuild, CountsRejectIdsOutsideTheVocabulary) {
  TokenFrequencies f;
  f.counts.assign(4, 0);
  const std::vector<int32_t> ids{0, 3, 3};
  f.add(ids);
  EXPECT_EQ(f.counts, (std::vector<uint64_t>{1, 0, 0, 2}));
  EXPECT_EQ(f.tokens, 3u);
  const std::vector<int32_t> bad{4};
  EXPECT_THROW(f.add(bad), Error);
}

TEST(FrSpecFiles, SafetensorsRoundTrip) {
  const fs::path dir = scratch_dir("roundtrip");
  const std::vector<int32_t> ids{7, 3, 500, 0};
  save_token_map((dir / "map.safetensors").string(), ids, {{"corpus", "x.txt"}});
  EXPECT_EQ(load_token_map((dir / "map.safetensors").string(), 512), ids);
  const SafetensorsFile file((dir / "map.safetensors").string());
  EXPECT_EQ(file.find("token_map")->dtype, DType::I64);
  EXPECT_EQ(file.header().metadata.at("corpus"), "x.txt");
  EXPECT_THROW(load_token_map((dir / "map.safetensors").string(), 500), Error);  // id 500 beyond the vocabulary
  EXPECT_THROW(save_token_map((dir / "map.txt").string(), ids, {}), Error);
  fs::remove_all(dir);
}

// Written by real torch.save (tests/fixtures/frspec/make_fixture.py), as FR-Spec and SGLang keep them.
TEST(FrSpecFiles, ReadsTorchSaveTensors) {
  const std::vector<int32_t> want{2, 13, 29, 1, 403, 0, 511, 77};
  EXPECT_EQ(load_token_map(fixture("freq_8.pt"), 512), want);
  EXPECT_EQ(load_token_map(fixture("freq_8_int32.pt"), 512), want);
  const TorchCheckpoint bare(fixture("freq_8.pt"));
  ASSERT_EQ(bare.tensors().size(), 1u);
  EXPECT_EQ(bare.tensors()[0].name, "");
  EXPECT_EQ(bare.tensors()[0].dtype, DType::I64);
}

TEST(FrSpecFiles, RejectsBadMaps) {
  EXPECT_THROW(load_token_map(fixture("freq_8.pt"), 500), Error);   // 511 outside the vocabulary
  EXPECT_THROW(load_token_map(fixture("not_a_map.pt"), 512), Error);  // two tensors
  EXPECT_THROW(load_token_map(fixture("two_dims.pt"), 512), Error);
  EXPECT_THROW(load_token_map(fixture("missing.pt"), 512), Error);
  EXPECT_THROW(load_token_map(fixture("make_fixture.py"), 512), Error);  // not a zip
  try {
    load_token_map(fixture("deep.pt"), 512);
    ADD_FAILURE() << "200 nested tuples were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nests deeper"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_token_map(fixture("wide.pt"), 512), Error);  // a tuple, read in linear time
  const std::vector<int32_t> twice{1, 2, 1}, empty;
  EXPECT_THROW(validate_token_map(twice, 512, "t"), Error);
  EXPECT_THROW(validate_token_map(empty, 512, "t"), Error);
  const fs::path dir = scratch_dir("bad");
  SafetensorsWriter w;
  const std::vector<float> values{1.0f, 2.0f};
  w.add("token_map", DType::F32, {2}, values.data());
  w.write((dir / "floats.safetensors").string());
  EXPECT_THROW(load_token_map((dir / "floats.safetensors").string(), 512), Error);
  fs::remove_all(dir);
}

// A draft vocabulary restricts the head's LM head: its logits are the full head's on the kept ids
// and -inf elsewhere; top-k is over the kept ids, renormalised among them, in target ids.
TEST(FrSpecHead, RestrictsTheFullHeadsLogits) {
  const Model base = load_model(test::stories260k_path());
  const int vocab = base.config.vocab_size, hidden = base.config.hidden_size;
  std::vector<int32_t> kept;
  for (int id = 0; id < vocab; id += 3) kept.push_back(id);
  std::shuffle(kept.begin(), kept.end(), std::mt19937(4));
  CpuEagleHead full(base, random_eagle_weights(base.config, 12), 64, 16);
  EagleWeights restricted_weights = random_eagle_weights(base.config, 12);
  restricted_weights.draft_vocab = kept;
  CpuEagleHead restricted(base, std::move(restricted_weights), 64, 16);
  EXPECT_EQ(restricted.max_top_k(), int(kept.size()));

  const int n = 6, k = 10;
  std::vector<float> features(size_t(n) * hidden);
  for (size_t i = 0; i < features.size(); ++i) features[i] = std::sin(0.1f * float(i));
  std::vector<int32_t> tokens{1, 40, 7, 300, 22, 9}, positions(n);
  std::iota(positions.begin(), positions.end(), 0);
  EagleStep step;
  step.tokens = tokens;
  step.features = positions;
  step.positions = positions;
  step.top_k = k;
  for (CpuEagleHead* head : {&full, &restricted}) {
    head->set_features(0, HiddenRows{n, {}, features, nullptr, nullptr});
    head->forward(step);
  }
  std::vector<bool> is_kept(size_t(vocab), false);
  for (int32_t id : kept) is_kept[size_t(id)] = true;
  for (int i = 0; i < n; ++i) {
    const std::span<const float> lf = full.logits(i), lr = restricted.logits(i);
    std::vector<float> gathered;
    for (int v = 0; v < vocab; ++v) {
      if (is_kept[size_t(v)]) {
        EXPECT_NEAR(lr[size_t(v)], lf[size_t(v)], 1e-4f * (1.0f + std::fabs(lf[size_t(v)]))) << "row " << i;
      } else {
        EXPECT_EQ(lr[size_t(v)], -std::numeric_limits<float>::infinity()) << "row " << i << " id " << v;
      }
    }
    for (int32_t id : kept) gathered.push_back(lf[size_t(id)]);
    std::vector<int32_t> ids(k), order(kept.size());
    std::vector<float> logp(k);
    cpu::top_k_logprobs(gathered.data(), int(gathered.size()), k, ids.data(), logp.data(), order.data());
    for (int j = 0; j < k; ++j) {
      EXPECT_EQ(restricted.top_ids(i)[size_t(j)], kept[size_t(ids[size_t(j)])]) << "row " << i << " rank " << j;
      EXPECT_NEAR(restricted.top_logp(i)[size_t(j)], logp[size_t(j)], 1e-4f) << "row " << i << " rank " << j;
    }
  }
}

TEST(FrSpecHead, RejectsBadDraftVocabularies) {
  const Model base = load_model(test::stories260k_path());
  EagleWeights w = random_eagle_weights(base.config, 1);
  w.draft_vocab = {3, 3};
  EXPECT_THROW(CpuEagleHead(base, std::move(w), 64, 16), Error);
  w = random_eagle_weights(base.config, 1);
  w.draft_vocab = {512};
  EXPECT_THROW(CpuEagleHead(base, std::move(w), 64, 16), Error);
}

nlohmann::json run_json(const std::string& args) {
  const test::ProcessResult r = test::run_specq(args);
  EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.err;
  return nlohmann::json::parse(r.out);
}

// The CLI: build a map from stories, then decode with it: the output equals plain greedy decoding.
TEST(FrSpecCli, BuildThenDecodeIsLossless) {
  const fs::path dir = scratch_dir("cli");
  const std::string model = test::stories260k_path();
  {
    std::ofstream corpus(dir / "corpus.jsonl");
    corpus << R"({"text": "Once upon a time, there was a little girl named Lily. She liked to play outside."})" << "\n"
           << R"({"turns": ["The dog ran to the park.", "Tom saw a big red ball and he was happy."]})" << "\n"
           << "One day, a cat and a bird became friends.\n\n";
  }
  const std::string map = (dir / "map.safetensors").string();
  const auto summary = run_json("frspec build --model " + model + " --corpus " + (dir / "corpus.jsonl").string() +
                                " --vocab-size 128 --out " + map);
  EXPECT_EQ(summary["kept"], 128);
  EXPECT_EQ(summary["documents"], 3);
  EXPECT_GT(summary["tokens"].get<int>(), 30);
  EXPECT_DOUBLE_EQ(summary["coverage"].get<double>(), 1.0);  // 128 ids hold every token of so small a corpus
  const std::vector<int32_t> ids = load_token_map(map, 512);
  EXPECT_EQ(ids.size(), 128u);
  const Model base = load_model(model);
  for (int eos : base.config.eos_token_ids) EXPECT_NE(std::find(ids.begin(), ids.end(), eos), ids.end());

  const std::string common = "generate --model " + model + " --prompt-ids \"\" --max-new-tokens 48 --json --threads 1";
  const auto plain = run_json(common);
  for (const std::string& spec : {"--spec eagle --eagle random:5 --frspec " + map,
                                  "--spec cascade --draft " + model + " --frspec " + fixture("freq_8.pt") +
                                      " --tree-topk 4"}) {
    const auto out = run_json(common + " " + spec);
    EXPECT_EQ(out["token_ids"], plain["token_ids"]) << spec;
    EXPECT_GE(out["mean_accepted_length"].get<double>(), 1.0) << spec;
  }
  fs::remove_all(dir);
}

TEST(FrSpecCli, BadInputIsOneClearError) {
  const fs::path dir = scratch_dir("cli_bad");
  const std::string model = test::stories260k_path();
  { std::ofstream(dir / "corpus.txt") << "Once upon a time\n"; }
  const std::string build = "frspec build --model " + model + " --corpus " + (dir / "corpus.txt").string();
  struct Case {
    std::string args, message;
  };
  for (const Case& c : {Case{build + " --vocab-size 0 --out " + (dir / "m.safetensors").string(), "--vocab-size"},
                        Case{build + " --vocab-size 513 --out " + (dir / "m.safetensors").string(), "--vocab-size"},
                        Case{build + " --vocab-size 8 --out " + (dir / "m.pt").string(), ".safetensors"},
                        Case{"frspec build --model " + model + " --corpus /nonexistent --vocab-size 8 --out " +
                                 (dir / "m.safetensors").string(),
                             "/nonexistent"},
                        Case{"generate --model " + model + " --prompt-ids 1 --spec eagle --frspec " + fixture("freq_8.pt") +
                                 " --tree-topk 10",
                             "--tree-topk"},
                        Case{"generate --model " + model + " --prompt-ids 1 --spec eagle --frspec " + fixture("two_dims.pt"),
                             "1-D"}}) {
    const test::ProcessResult r = test::run_specq(c.args);
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_EQ(r.signal, 0) << c.args;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << "\n" << r.err;
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace specq
