// Pearson's chi-square goodness-of-fit, for the tests that check a sampler's distribution.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace specq::test {

// Upper tail of the chi-square distribution with `dof` degrees of freedom: Q(dof/2, x/2).
inline double chi_square_p_value(double x, int dof) {
  const double a = 0.5 * dof, z = 0.5 * x;
  if (z <= 0.0) return 1.0;
  const double log_prefix = a * std::log(z) - z - std::lgamma(a);
  if (z < a + 1.0) {  // series for the lower part P, then Q = 1 - P
    double term = 1.0 / a, sum = term;
    for (int n = 1; n < 1000; ++n) {
      term *= z / (a + n);
      sum += term;
      if (term < sum * 1e-15) break;
    }
    return std::max(0.0, 1.0 - sum * std::exp(log_prefix));
  }
  // Continued fraction for Q (modified Lentz).
  double b = z + 1.0 - a, c = 1e300, d = 1.0 / b, h = d;
  for (int i = 1; i < 1000; ++i) {
    const double an = -i * (i - a);
    b += 2.0;
    d = an * d + b;
    if (std::fabs(d) < 1e-300) d = 1e-300;
    c = b + an / c;
    if (std::fabs(c) < 1e-300) c = 1e-300;
    d = 1.0 / d;
    const double delta = d * c;
    h *= delta;
    if (std::fabs(delta - 1.0) < 1e-15) break;
  }
  return std::exp(log_prefix) * h;
}

struct ChiSquare {
  double statistic = 0.0;
  int dof = 0;
  double p_value = 1.0;
};

// Pearson's test of observed counts against expected probabilities; cells expected below 5 are
// pooled into one, and a count where the probability is 0 fails the test outright.
inline ChiSquare chi_square(const std::vector<int64_t>& counts, const std::vector<double>& probs) {
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  ChiSquare r;
  double pooled_expected = 0.0, pooled_observed = 0.0;
  int cells = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double expected = probs[i] * double(total);
    if (probs[i] <= 0.0) {
      if (counts[i] > 0) return {1e300, 1, 0.0};
      continue;
    }
    if (expected < 5.0) {
      pooled_expected += expected;
      pooled_observed += double(counts[i]);
      continue;
    }
    r.statistic += (double(counts[i]) - expected) * (double(counts[i]) - expected) / expected;
    ++cells;
  }
  if (pooled_expected > 0.0) {
    r.statistic += (pooled_observed - pooled_expected) * (pooled_observed - pooled_expected) / pooled_expected;
    ++cells;
  }
  r.dof = std::max(1, cells - 1);
  r.p_value = chi_square_p_value(r.statistic, r.dof);
  return r;
}

}  // namespace specq::test
