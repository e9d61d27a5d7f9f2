#include "model/runner.h"

#include "core/error.h"

namespace specq {

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::Cpu;
  if (name == "cuda") return Device::Cuda;
  fail("unknown device '{}' (expected cpu or cuda)", name);
}

void validate_request(const Runner& runner, const ForwardRequest& r) {
  const int n = int(r.tokens.size());
  SPECQ_CHECK(n > 0, "forward needs at least one token");
  SPECQ_CHECK(n <= runner.max_tokens_per_forward(), "forward of {} tokens exceeds the planned maximum of {}", n,
              runner.max_tokens_per_forward());
  SPECQ_CHECK(r.positions.size() == r.tokens.size(), "forward: {} positions for {} tokens", r.positions.size(), n);
  SPECQ_CHECK(r.cache_len >= 0 && r.cache_len + n <= runner.max_context(),
              "context overflow: {} cached + {} new tokens exceed the context of {} tokens", r.cache_len, n,
              runner.max_context());
  SPECQ_CHECK(r.tree_mask.empty() || r.tree_mask.size() == size_t(n) * size_t(mask_words(n)),
              "tree mask has {} words, expected {}", r.tree_mask.size(), size_t(n) * size_t(mask_words(n)));
  const int vocab = runner.config().vocab_size;
  for (int32_t t : r.tokens) SPECQ_CHECK(t >= 0 && t < vocab, "token id {} is outside the vocabulary [0, {})", t, vocab);
  for (int32_t p : r.positions) SPECQ_CHECK(p >= 0, "negative position {}", p);
}

std::unique_ptr<Runner> make_runner(Model& model, Device device, const RunnerOptions& options) {
  return device == Device::Cpu ? make_cpu_runner(model, options) : make_cuda_runner(model, options);
}

#if !defined(SPECQ_HAVE_CUDA)
std::unique_ptr<Runner> make_cuda_runner(Model&, const RunnerOptions&) {
  fail("this build of specq has no CUDA backend (nvcc was not found when it was configured)");
}
#endif

}  // namespace specq
