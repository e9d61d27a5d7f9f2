// Speculative sampling must be lossless: the tokens it emits are distributed exactly as plain
// sampling's. Checked with Pearson chi-square tests against the exact distributions (computed from
// Sampler::distribution) for the first and the second emitted token of a step, for a chain
// (draft model), an EAGLE tree (also with an FR-Spec draft vocabulary) and a cascade, with and
// without top-k/top-p.
#include <gtest/gtest.h>

#include <cstdio>

#include "spec/cascade_drafter.h"
#include "spec/draft_model_drafter.h"
#include "spec/eagle_drafter.h"
#include "spec/speculate.h"
#include "spec_test_util.h"

namespace specq {
namespace {

using test::small_runner;

constexpr int kVocab = 24;
const std::vector<int32_t> kContext{1, 5, 9, 14};  // prompt; its last token is the fixed root

// The sampling distribution of the token after `context`.
std::vector<double> next_distribution(Runner& runner, const std::vector<int32_t>& context, const SamplingOptions& s) {
  std::vector<int32_t> positions(context.size());
  for (size_t i = 0; i < positions.size(); ++i) positions[i] = int32_t(i);
  ForwardRequest request;
  request.tokens = context;
  request.positions = positions;
  const ForwardResult out = runner.forward(request);
  Sampler sampler(s, runner.config().vocab_size);
  std::vector<float> probs(size_t(runner.config().vocab_size));
  sampler.distribution(out.logits, probs);
  return {probs.begin(), probs.end()};
}

struct Exact {
  std::vector<double> first, second;  // the first and second token after kContext
};

Exact exact_distributions(Runner& target, const SamplingOptions& s) {
  Exact e;
  e.first = next_distribution(target, kContext, s);
  e.second.assign(size_t(kVocab), 0.0);
  for (int x = 0; x < kVocab; ++x) {
    if (e.first[size_t(x)] == 0.0) continue;
    std::vector<int32_t> longer = kContext;
    longer.push_back(x);
    const std::vector<double> after = next_distribution(target, longer, s);
    for (int y = 0; y < kVocab; ++y) e.second[size_t(y)] += e.first[size_t(x)] * after[size_t(y)];
  }
  return e;
}

struct Counts {
  std::vector<int64_t> first = std::vector<int64_t>(kVocab), second = std::vector<int64_t>(kVocab);
  SpecStats stats;
};

// Many independent speculative steps from the same committed context.
Counts draw(Runner& target, Drafter& drafter, const SamplingOptions& s, int draws) {
  Speculator loop(target, drafter, s);
  loop.start(std::span<const int32_t>(kContext.data(), kContext.size() - 1));
  Counts counts;
  for (int i = 0; i < draws; ++i) {
    loop.reset_to(kContext);
    std::span<const int32_t> fresh = loop.step();
    const int32_t first = fresh[0];
    const int32_t second = fresh.size() > 1 ? fresh[1] : loop.step()[0];
    ++counts.first[size_t(first)];
    ++counts.second[size_t(second)];
  }
  counts.stats = loop.stats();
  return counts;
}

void expect_lossless(Runner& target, Drafter& drafter, const SamplingOptions& s, int draws, const std::string& label) {
  const Exact exact = exact_distributions(target, s);
  const Counts counts = draw(target, drafter, s, draws);
  const test::ChiSquare first = test::chi_square(counts.first, exact.first);
  const test::ChiSquare second = test::chi_square(counts.second, exact.second);
  std::printf("[sampling] %-40s %d draws, tau %.3f | 1st token chi2 %.1f dof %d p %.3f | "
              "2nd token chi2 %.1f dof %d p %.3f\n",
              label.c_str(), draws, counts.stats.mean_accepted_length(), first.statistic, first.dof, first.p_value,
              second.statistic, second.dof, second.p_value);
  // Fixed seeds make these deterministic; a lossy sampler fails them by a wide margin (see below).
  EXPECT_GT(first.p_value, 1e-3) << label;
  EXPECT_GT(second.p_value, 1e-3) << label;
  EXPECT_GT(counts.stats.accepted_drafts, draws / 50) << label << ": acceptance must be exercised";
}

class SpecSampling : public ::testing::Test {
 protected:
  void SetUp() override {
    target_model_ = test::toy_model(kVocab, 8, 2, 100, 3.0f);
    draft_model_ = test::truncated(target_model_, 1);  // related but different: accepts and rejects
    target_ = make_cpu_runner(target_model_, small_runner(64));
    draft_ = make_cpu_runner(draft_model_, small_runner(64));
  }
  Model target_model_, draft_model_;
  std::unique_ptr<Runner> target_, draft_;
};

SamplingOptions plain(uint64_t seed) {
  SamplingOptions s;
  s.temperature = 1.0f;
  s.seed = seed;
  return s;
}

SamplingOptions truncated_sampling(uint64_t seed) {
  SamplingOptions s;
  s.temperature = 1.5f;
  s.top_k = 12;
  s.top_p = 0.95f;
  s.seed = seed;
  return s;
}

TEST(ChiSquare, PValuesMatchKnownValues) {
  EXPECT_NEAR(test::chi_square_p_value(10.0, 10), 0.44049, 1e-4);
  EXPECT_NEAR(test::chi_square_p_value(30.0, 10), 0.000857, 1e-5);
  EXPECT_NEAR(test::chi_square_p_value(3.0, 1), 0.083265, 1e-5);
}

TEST_F(SpecSampling, ChainIsLossless) {
  DraftModelDrafter drafter(*draft_, 2);
  expect_lossless(*target_, drafter, plain(1), 100000, "chain gamma 2, T=1");
  expect_lossless(*target_, drafter, truncated_sampling(2), 10000, "chain gamma 2, T=1.5 top-k 12 top-p 0.95");
}

TEST_F(SpecSampling, TreeIsLossless) {
  CpuEagleHead head(target_model_, random_eagle_weights(target_model_.config, 9), 64 + 16, 64);
  EagleDrafter drafter(head, EagleTreeOptions{2, 4, 10});
  expect_lossless(*target_, drafter, plain(3), 100000, "eagle tree D=2 k=4 T=10, T=1");
  expect_lossless(*target_, drafter, truncated_sampling(4), 10000, "eagle tree, T=1.5 top-k 12 top-p 0.95");
}

// FR-Spec: drafts only from a draft vocabulary (q is zero elsewhere); the target's distribution is intact.
TEST_F(SpecSampling, TreeWithDraftVocabularyIsLossless) {
  EagleWeights weights = random_eagle_weights(target_model_.config, 9);
  weights.draft_vocab = {20, 3, 7, 11, 0, 15, 4, 9, 22, 1, 13, 6};  // half of the vocabulary
  CpuEagleHead head(target_model_, std::move(weights), 64 + 16, 64);
  EagleDrafter drafter(head, EagleTreeOptions{2, 4, 10});
  expect_lossless(*target_, drafter, plain(7), 30000, "eagle tree, draft vocabulary of 12, T=1");
}

TEST_F(SpecSampling, CascadeIsLossless) {
  // The target's weights with a flatter LM head: close to the target, not equal to it.
  Model middle_model = test::toy_model(kVocab, 8, 2, 100, 2.0f);
  auto middle = make_cpu_runner(middle_model, small_runner(64));
  const SamplingOptions s = plain(5);
  DraftModelDrafter inner(*draft_, 2);
  CascadeDrafter cascade(*middle, inner, 3, s);
  expect_lossless(*target_, cascade, s, 10000, "cascade draft -> middle -> target");
}

// The test has power: the draft model's own distribution is rejected outright.
TEST_F(SpecSampling, DetectsAWrongDistribution) {
  const SamplingOptions s = plain(6);
  const std::vector<double> target_first = next_distribution(*target_, kContext, s);
  const std::vector<double> draft_first = next_distribution(*draft_, kContext, s);
  DraftModelDrafter drafter(*draft_, 2);
  const Counts counts = draw(*target_, drafter, s, 10000);
  EXPECT_GT(test::chi_square(counts.first, target_first).p_value, 1e-3);
  EXPECT_LT(test::chi_square(counts.first, draft_first).p_value, 1e-6);
}

}  // namespace
}  // namespace specq
