// The CUDA runner end to end against the CPU runner: teacher-forced greedy ids and logits on small
// synthetic models (and the Hugging Face fixtures when present), tree-mask verification with KV
// compaction, and the clear error when a model does not fit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <numeric>

#include "core/error.h"
#include "cuda_test_util.h"
#include "io/loader.h"
#include "io/synthetic.h"
#include "model/runner.h"

namespace specq::cuda::test {
namespace {

struct Pair {
  Model cpu_model, gpu_model;
  std::unique_ptr<Runner> cpu, gpu;
};

Pair make_pair_of_runners(const std::function<Model()>& load, DType act, int context) {
  Pair p{load(), load(), nullptr, nullptr};
  RunnerOptions options;
  options.max_context = context;
  options.max_tokens_per_forward = 128;
  options.activation_dtype = act;
  p.cpu = make_cpu_runner(p.cpu_model, options);
  p.gpu = make_cuda_runner(p.gpu_model, options);
  return p;
}

std::vector<float> to_vector(std::span<const float> s) { return {s.begin(), s.end()}; }

// Feeds the CPU's greedy choice to both runners (prefill, then one token at a time) and compares
// every step. A different argmax is accepted only at a near-tie of the CPU logits.
void check_teacher_forced(Pair& p, const std::string& label, DType act, int prompt_len, int steps) {
  const int vocab = p.cpu->config().vocab_size;
  std::vector<int32_t> prompt(static_cast<size_t>(prompt_len));
  for (int32_t& t : prompt) t = int32_t(rng()() % uint32_t(vocab));
  std::vector<int32_t> positions(prompt.size());
  std::iota(positions.begin(), positions.end(), 0);
  ForwardRequest request;
  request.tokens = prompt;
  request.positions = positions;
  int matches = 0, near_ties = 0;
  double worst = 0.0;
  for (int step = 0; step <= steps; ++step) {
    const ForwardResult c = p.cpu->forward(request);
    const std::vector<float> c_logits = to_vector(c.logits);
    const int32_t c_arg = c.argmax[0];
    const ForwardResult g = p.gpu->forward(request);
    const double err = rel_l2(to_vector(g.logits), c_logits);
    worst = std::max(worst, err);
    ASSERT_LT(err, 4 * tolerance(act)) << label << " step " << step;
    if (g.argmax[0] == c_arg) {
      ++matches;
    } else {
      const float scale = *std::max_element(c_logits.begin(), c_logits.end()) -
                          *std::min_element(c_logits.begin(), c_logits.end());
      ASSERT_LT(c_logits[size_t(c_arg)] - c_logits[size_t(g.argmax[0])], 8 * tolerance(act) * scale)
          << label << " step " << step << ": argmax " << g.argmax[0] << " vs CPU " << c_arg << " is not a near-tie";
      ++near_ties;
    }
    static thread_local int32_t token, position;
    token = c_arg;
    position = prompt_len + step;
    request.cache_len = position;
    request.tokens = std::span<const int32_t>(&token, 1);
    request.positions = std::span<const int32_t>(&position, 1);
  }
  std::printf("[ %s ] greedy argmax match %d/%d (%d near-ties), worst logits rel L2 %.2e\n", label.c_str(), matches,
              steps + 1, near_ties, worst);
}

Model synthetic(const std::string& name) { return make_synthetic_model(name); }

TEST(CudaRunner, GreedyMatchesCpuOnSyntheticModels) {
  for (const DType act : {DType::F16, DType::BF16})
    for (const std::string name :
         {"tiny", "stories15m", "tiny@f32", "stories15m@bf16", "stories15m@w4a16-g32", "stories15m@w4a16-ch"}) {
      Pair p = make_pair_of_runners([&] { return synthetic(name); }, act, 256);
      check_teacher_forced(p, "synthetic:" + name + " act " + std::string(dtype_name(act)), act, 37, 40);
    }
}

TEST(CudaRunner, GreedyMatchesCpuOnHfFixtures) {
  const std::filesystem::path root = std::filesystem::path(SPECQ_FIXTURE_DIR) / "hf";
  if (!std::filesystem::exists(root)) GTEST_SKIP() << "no fixtures at " << root;
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(root)) {
    if (!entry.is_directory()) continue;
    const std::string path = entry.path().string();
    Pair p = make_pair_of_runners([&] { return load_model(path); }, DType::F16, 256);
    check_teacher_forced(p, path, DType::F16, 20, 30);
    ++checked;
  }
  if (checked == 0) GTEST_SKIP() << "no fixture models in " << root;
}

// A speculative step: a random tree after a prefix, compared row by row with the CPU; then the
// accepted path is compacted and the next token must match too.
TEST(CudaRunner, TreeVerificationAndCompactionMatchCpu) {
  const DType act = DType::F16;
  Pair p = make_pair_of_runners([] { return synthetic("stories15m"); }, act, 256);
  const int vocab = p.cpu->config().vocab_size, prefix = 50, n = 70;
  std::vector<int32_t> tokens(prefix), positions(prefix);
  for (int32_t& t : tokens) t = int32_t(rng()() % uint32_t(vocab));
  std::iota(positions.begin(), positions.end(), 0);
  ForwardRequest request;
  request.tokens = tokens;
  request.positions = positions;
  request.logits_rows = ForwardRequest::Rows::None;
  p.cpu->forward(request);
  p.gpu->forward(request);

  // Tree: node i hangs under a random earlier node (or the root); its position is its depth.
  const int words = mask_words(n);
  std::vector<uint64_t> mask(size_t(n) * words, 0);
  std::vector<int> parent(static_cast<size_t>(n), -1), depth(static_cast<size_t>(n), 0);
  std::vector<int32_t> tree_tokens(static_cast<size_t>(n)), tree_positions(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    if (i > 0 && rng()() % 4 != 0) {
      parent[size_t(i)] = int(rng()() % uint32_t(i));
      depth[size_t(i)] = depth[size_t(parent[size_t(i)])] + 1;
      for (int w = 0; w < words; ++w) mask[size_t(i) * words + w] = mask[size_t(parent[size_t(i)]) * words + w];
    }
    mask[size_t(i) * words + i / 64] |= uint64_t(1) << (i % 64);
    tree_tokens[size_t(i)] = int32_t(rng()() % uint32_t(vocab));
    tree_positions[size_t(i)] = prefix + depth[size_t(i)];
  }
  ForwardRequest tree;
  tree.tokens = tree_tokens;
  tree.positions = tree_positions;
  tree.cache_len = prefix;
  tree.tree_mask = mask;
  tree.logits_rows = ForwardRequest::Rows::All;
  tree.hidden_rows = ForwardRequest::Rows::All;
  const ForwardResult c = p.cpu->forward(tree);
  const std::vector<float> c_logits = to_vector(c.logits), c_hidden = to_vector(c.hidden);
  const std::vector<int32_t> c_arg(c.argmax.begin(), c.argmax.end());
  const ForwardResult g = p.gpu->forward(tree);
  EXPECT_LT(rel_l2(to_vector(g.logits), c_logits), 4 * tolerance(act));
  ASSERT_EQ(g.hidden.size(), size_t(n) * size_t(p.cpu->config().hidden_size));
  EXPECT_LT(rel_l2(to_vector(g.hidden), c_hidden), 4 * tolerance(act));
  int same = 0;
  for (int i = 0; i < n; ++i) same += g.argmax[size_t(i)] == c_arg[size_t(i)];
  std::printf("[ tree ] %d/%d rows with the CPU's argmax\n", same, n);
  EXPECT_GE(same, n * 9 / 10);

  // Accept the deepest node's ancestor path, compact it, decode one more token.
  const int leaf = int(std::max_element(depth.begin(), depth.end()) - depth.begin());
  std::vector<int32_t> path;
  for (int i = leaf; i >= 0; i = parent[size_t(i)]) path.push_back(prefix + i);
  std::reverse(path.begin(), path.end());
  p.cpu->compact_kv(path, prefix);
  p.gpu->compact_kv(path, prefix);
  const int32_t next = 7, next_pos = prefix + int32_t(path.size());
  ForwardRequest after;
  after.tokens = std::span<const int32_t>(&next, 1);
  after.positions = std::span<const int32_t>(&next_pos, 1);
  after.cache_len = next_pos;
  const std::vector<float> c_after = to_vector(p.cpu->forward(after).logits);
  EXPECT_LT(rel_l2(to_vector(p.gpu->forward(after).logits), c_after), 4 * tolerance(act));
}

TEST(CudaRunner, SeventyBillionInF16FailsBeforeAllocating) {
  size_t free_bytes = 0, total_bytes = 0;
  SPECQ_CUDA(cudaMemGetInfo(&free_bytes, &total_bytes));
  // ~141.1 GB of weights + 1.3 GB of KV + activations: an H200 (~150 GB free) holds it, an H100 does not.
  if (free_bytes > size_t(145'000'000'000)) GTEST_SKIP() << "this GPU could hold llama3-70b in f16";
  Model model = make_synthetic_model("llama3-70b");
  RunnerOptions options;
  try {
    make_cuda_runner(model, options);
    FAIL() << "expected an out-of-memory Error";
  } catch (const Error& e) {
    const std::string message = e.what();
    // 141.1 GB of weights plus the KV cache of the default 4096-token context.
    EXPECT_NE(message.find("synthetic:llama3-70b in f16 needs 14"), std::string::npos) << message;
    EXPECT_NE(message.find("GB free"), std::string::npos) << message;
  }
  size_t free_after = 0;
  SPECQ_CUDA(cudaMemGetInfo(&free_after, &total_bytes));
  EXPECT_GT(free_after + (size_t(1) << 30), free_bytes);  // nothing large was left allocated
}

}  // namespace
}  // namespace specq::cuda::test
