#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

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
