#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include <random>

#include "backend/cpu/ops.h"
#include "chi_square.h"
#include "core/dtype.h"
#include "core/error.h"
#include "gen/sampler.h"

namespace specq {
namespace {

const std::vector<float> kLogits = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f, 0.5f};

TEST(Sampler, GreedyReturnsTheGivenArgmax) {
  Sampler s({}, 6);
  EXPECT_EQ(s.sample(kLogits, 1), 1);
}

TEST(Sampler, DistributionFollowsSoftmaxWithTemperature) {
  SamplingOptions o;
  o.temperature = 2.0f;
  Sampler s(o, 6);
  std::vector<float> p(6);
  s.distribution(kLogits, p);
  double z = 0;
  for (float l : kLogits) z += std::exp(l / 2.0);
  for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(p[i], std::exp(kLogits[i] / 2.0) / z, 1e-6);
}

TEST(Sampler, TopKKeepsKTokensTiesToSmallerId) {
  SamplingOptions o;
  o.temperature = 1.0f;
  o.top_k = 1;
  Sampler s(o, 6);
  std::vector<float> p(6);
  s.distribution(kLogits, p);
  EXPECT_FLOAT_EQ(p[1], 1.0f);  // ids 1 and 3 tie; the smaller id wins
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(kLogits, 1), 1);
}

TEST(Sampler, TopPKeepsSmallestPrefixReachingMass) {
  SamplingOptions o;
  o.temperature = 1.0f;
  o.top_p = 0.5f;
  Sampler s(o, 6);
  std::vector<float> p(6);
  s.distribution(kLogits, p);
  // Probabilities: ids 1 and 3 have ~0.34 each; together 0.68 >= 0.5 so exactly those two remain.
  EXPECT_NEAR(p[1], 0.5, 1e-6);
  EXPECT_NEAR(p[3], 0.5, 1e-6);
  EXPECT_EQ(p[0] + p[2] + p[4] + p[5], 0.0f);
}

TEST(Sampler, SamplingFrequenciesMatchDistribution) {
  SamplingOptions o;
  o.temperature = 1.0f;
  o.seed = 3;
  Sampler s(o, 6);
  std::vector<float> p(6);
  s.distribution(kLogits, p);
  std::vector<int> counts(6, 0);
  const int draws = 60000;
  for (int i = 0; i < draws; ++i) ++counts[size_t(s.sample(kLogits, 1))];
  for (size_t i = 0; i < 6; ++i) EXPECT_NEAR(double(counts[i]) / draws, p[i], 0.01) << i;
}

// The counter-based draw (the CUDA sampler's reference) follows the same distribution as Sampler:
// temperature, top-k, top-p and both together, 100k draws each.
TEST(CounterBasedDraw, FollowsSamplerDistribution) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> logits(40);
  for (float& l : logits) l = normal(rng);
  struct Case { float temperature; int top_k; float top_p; };
  for (const Case c : {Case{0.8f, 0, 1.0f}, Case{1.3f, 7, 1.0f}, Case{1.0f, 0, 0.8f}, Case{0.7f, 12, 0.9f}}) {
    SamplingOptions o;
    o.temperature = c.temperature;
    o.top_k = c.top_k;
    o.top_p = c.top_p;
    std::vector<float> probs(logits.size());
    Sampler(o, int(logits.size())).distribution(logits, probs);
    DrawParams params;
    params.temperature = c.temperature;
    params.top_k = c.top_k;
    params.top_p = c.top_p;
    params.seed = 5;
    std::vector<int64_t> counts(logits.size(), 0);
    const int draws = 100000;
    for (int d = 0; d < draws; ++d) {
      const int32_t token = cpu::sample_counter_based(logits.data(), int(logits.size()), params, uint64_t(d));
      ++counts[size_t(token)];
      ASSERT_GT(probs[size_t(token)], 0.0f) << "drew token " << token << ", which the cut removes";
    }
    const test::ChiSquare chi = test::chi_square(counts, std::vector<double>(probs.begin(), probs.end()));
    EXPECT_GT(chi.p_value, 1e-4) << "T=" << c.temperature << " k=" << c.top_k << " p=" << c.top_p << ": chi2 "
                                 << chi.statistic << " dof " << chi.dof;
  }
}

TEST(CounterBasedDraw, KeepsTiesAtTheTopKCutAndIsDeterministic) {
  const std::vector<float> logits = {3.0f, 3.0f, 1.0f};
  DrawParams params;
  params.top_k = 1;
  std::vector<int> counts(3, 0);
  for (int d = 0; d < 4000; ++d) ++counts[size_t(cpu::sample_counter_based(logits.data(), 3, params, uint64_t(d)))];
  EXPECT_EQ(counts[2], 0);
  EXPECT_NEAR(counts[0], 2000, 200);  // both tied tokens stay, as Hugging Face's top-k keeps them
  EXPECT_EQ(cpu::sample_counter_based(logits.data(), 3, params, 17), cpu::sample_counter_based(logits.data(), 3, params, 17));
}

TEST(Sampler, RejectsBadOptions) {
  SamplingOptions o;
  o.temperature = -0.1f;
  EXPECT_THROW(o.validate(), Error);
  o = {};
  o.top_p = 0.0f;
  EXPECT_THROW(o.validate(), Error);
  o = {};
  o.top_k = -1;
  EXPECT_THROW(o.validate(), Error);
}

TEST(DType, HalfRoundTripsAndRounds) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = half_to_float(uint16_t(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(float_to_half(f), uint16_t(h)) << h;
  }
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);       // rounds to infinity
  EXPECT_EQ(float_to_half(1.0f + 1.0f / 2048), 0x3c00);  // ties to even
  EXPECT_EQ(float_to_half(5.960464477539063e-08f), 0x0001);
}

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_float(float_to_bf16(3.140625f)), 3.140625f);
  EXPECT_EQ(float_to_bf16(1.00390625f), 0x3f80);  // exactly half-way, to even
}

}  // namespace
}  // namespace specq
