// The forward primitive's contract on the CPU backend: chunking, tree masks and KV compaction
// give the same logits as plain sequential decoding.
#include <gtest/gtest.h>

#include <numeric>
#include <random>
#include <thread>

#include "core/error.h"
#include "gen/generate.h"
#include "io/loader.h"
#include "test_util.h"

namespace specq {
namespace {

// Logits of every position of `ids`, decoded one token at a time.
std::vector<std::vector<float>> sequential_logits(Runner& runner, const std::vector<int32_t>& ids) {
  std::vector<std::vector<float>> out;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t pos = int32_t(i);
    ForwardRequest r;
    r.tokens = std::span<const int32_t>(&ids[i], 1);
    r.positions = std::span<const int32_t>(&pos, 1);
    r.cache_len = int(i);
    const ForwardResult res = runner.forward(r);
    out.emplace_back(res.logits.begin(), res.logits.end());
  }
  return out;
}

class ForwardTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ForwardTest, OneShotPrefillEqualsSequential) {
  Model m = load_model(GetParam());
  auto runner = make_cpu_runner(m, {});
  std::mt19937 rng(7);
  std::vector<int32_t> ids(23);
  for (auto& t : ids) t = int32_t(rng() % uint32_t(m.config.vocab_size));
  const auto seq = sequential_logits(*runner, ids);
  std::vector<int32_t> pos(ids.size());
  std::iota(pos.begin(), pos.end(), 0);
  ForwardRequest r;
  r.tokens = ids;
  r.positions = pos;
  r.logits_rows = ForwardRequest::Rows::All;
  const ForwardResult all = runner->forward(r);
  const size_t vocab = size_t(m.config.vocab_size);
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_LT(test::relative_l2(all.logits.subspan(i * vocab, vocab), seq[i]), 1e-5) << "position " << i;
  }
}

// A random tree after a committed prefix: each node's logits equal those of decoding its root path.
TEST_P(ForwardTest, TreeMaskMatchesEachPath) {
  Model m = load_model(GetParam());
  auto runner = make_cpu_runner(m, {});
  std::mt19937 rng(11);
  const int vocab = m.config.vocab_size;
  const std::vector<int32_t> prefix = {1, 5, 9, 200, 17};
  const int n = 70;  // more than 64 nodes: two mask words per row
  std::vector<int> parent(n);
  std::vector<int32_t> tokens(n), positions(n);
  std::vector<uint64_t> mask(size_t(n) * mask_words(n), 0);
  for (int i = 0; i < n; ++i) {
    parent[i] = i == 0 ? -1 : int(rng() % uint32_t(i));
    tokens[i] = int32_t(rng() % uint32_t(vocab));
    positions[i] = int32_t(prefix.size()) + (i == 0 ? 0 : positions[parent[i]] - int32_t(prefix.size()) + 1);
    for (int a = i; a >= 0; a = parent[a]) mask[size_t(i) * mask_words(n) + a / 64] |= 1ull << (a % 64);
  }
  // Commit the prefix, then run the whole tree in one forward.
  sequential_logits(*runner, prefix);
  ForwardRequest r;
  r.tokens = tokens;
  r.positions = positions;
  r.cache_len = int(prefix.size());
  r.tree_mask = mask;
  r.logits_rows = ForwardRequest::Rows::All;
  const ForwardResult tree = runner->forward(r);
  const std::vector<float> tree_logits(tree.logits.begin(), tree.logits.end());

  auto reference = make_cpu_runner(m, {});
  for (int i : {0, 1, 7, 33, 64, 69}) {
    std::vector<int32_t> path;
    for (int a = i; a >= 0; a = parent[a]) path.insert(path.begin(), tokens[a]);
    std::vector<int32_t> ids = prefix;
    ids.insert(ids.end(), path.begin(), path.end());
    const auto seq = sequential_logits(*reference, ids);
    EXPECT_LT(test::relative_l2(std::span<const float>(tree_logits).subspan(size_t(i) * vocab, size_t(vocab)),
                                seq.back()),
              1e-5)
        << "node " << i;
  }
}

// Keep the path 0 -> 2 -> 3 of a 4-node tree; afterwards decoding continues as if only it was fed.
TEST_P(ForwardTest, CompactKvKeepsAcceptedPath) {
  Model m = load_model(GetParam());
  auto runner = make_cpu_runner(m, {});
  const std::vector<int32_t> prefix = {1, 42, 7};
  sequential_logits(*runner, prefix);
  // Tree: 0 root; 1 and 2 children of 0; 3 child of 2.
  const std::vector<int32_t> tokens = {11, 12, 13, 14}, positions = {3, 4, 4, 5};
  const std::vector<uint64_t> mask = {0b0001, 0b0011, 0b0101, 0b1101};
  ForwardRequest r;
  r.tokens = tokens;
  r.positions = positions;
  r.cache_len = 3;
  r.tree_mask = mask;
  r.logits_rows = ForwardRequest::Rows::None;
  runner->forward(r);
  const std::vector<int32_t> accepted_rows = {3, 5, 6};
  runner->compact_kv(accepted_rows, 3);
  const int32_t next = 99, pos = 6;
  ForwardRequest step;
  step.tokens = std::span<const int32_t>(&next, 1);
  step.positions = std::span<const int32_t>(&pos, 1);
  step.cache_len = 6;
  const std::vector<float> after(runner->forward(step).logits.begin(), runner->forward(step).logits.end());

  auto reference = make_cpu_runner(m, {});
  const auto seq = sequential_logits(*reference, {1, 42, 7, 11, 13, 14, 99});
  EXPECT_LT(test::relative_l2(after, seq.back()), 1e-5);
}

TEST_P(ForwardTest, ChunkedPrefillEqualsOneShot) {
  Model m = load_model(GetParam());
  RunnerOptions small;
  small.max_tokens_per_forward = 8;
  auto chunked = make_cpu_runner(m, small);
  auto whole = make_cpu_runner(m, {});
  std::vector<int32_t> ids(30);
  std::iota(ids.begin(), ids.end(), 3);
  const ForwardResult a = prefill(*chunked, ids);
  const std::vector<float> la(a.logits.begin(), a.logits.end());
  const ForwardResult b = prefill(*whole, ids);
  EXPECT_LT(test::relative_l2(la, std::vector<float>(b.logits.begin(), b.logits.end())), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Models, ForwardTest,
                         ::testing::Values(test::stories260k(), "synthetic:tiny", "synthetic:tiny@bf16"),
                         [](const auto& param_info) { return param_info.index == 0 ? std::string("stories260K")
                                                      : param_info.index == 1 ? std::string("tiny_f16")
                                                                        : std::string("tiny_bf16"); });

TEST(Forward, RejectsRequestsOutsideThePlan) {
  Model m = load_model("synthetic:tiny");
  RunnerOptions o;
  o.max_context = 16;
  auto runner = make_cpu_runner(m, o);
  std::vector<int32_t> ids(17, 3), pos(17);
  std::iota(pos.begin(), pos.end(), 0);
  ForwardRequest r;
  r.tokens = ids;
  r.positions = pos;
  EXPECT_THROW(runner->forward(r), Error);
  const int32_t bad = 512, zero = 0;
  r.tokens = std::span<const int32_t>(&bad, 1);
  r.positions = std::span<const int32_t>(&zero, 1);
  EXPECT_THROW(runner->forward(r), Error);
}

TEST(Forward, PromptOverContextIsAnError) {
  Model m = load_model("synthetic:tiny");
  RunnerOptions o;
  o.max_context = 8;
  auto runner = make_cpu_runner(m, o);
  std::vector<int32_t> ids(8, 3);
  EXPECT_THROW(generate(*runner, ids, {}), Error);
}

}  // namespace
}  // namespace specq

namespace specq {
namespace {

// A runner planned for one thread and used from another thread (as the server's engine thread
// does) must keep to its plan: OpenMP's thread count belongs to the calling thread.
TEST(Forward, RunnerPlannedOnOneThreadWorksFromAnother) {
  Model m = load_model("synthetic:stories15m");
  RunnerOptions o;
  o.threads = 1;
  o.max_context = 32;
  auto runner = make_cpu_runner(m, o);
  const std::vector<int32_t> ids = {1, 400, 23, 9};
  const std::vector<int32_t> pos = {0, 1, 2, 3};
  ForwardRequest r;
  r.tokens = ids;
  r.positions = pos;
  const std::vector<float> here(runner->forward(r).logits.begin(), runner->forward(r).logits.end());
  std::vector<float> there;
  std::thread worker([&] {
    const ForwardResult out = runner->forward(r);
    there.assign(out.logits.begin(), out.logits.end());
  });
  worker.join();
  EXPECT_EQ(here, there);
}

}  // namespace
}  // namespace specq
