// Greedy speculative decoding must reproduce plain greedy decoding token for token, for every
// drafter, tree shape and cascade, including stop ids inside a step and a full context.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <random>

#include "spec/cascade_drafter.h"
#include "spec/draft_model_drafter.h"
#include "spec/eagle_drafter.h"
#include "spec/frspec.h"
#include "spec/speculate.h"
#include "spec_test_util.h"

namespace specq {
namespace {

using test::small_runner;

struct Case {
  std::vector<int32_t> prompt;
  int max_new_tokens;
};

// Prompts of mixed lengths: BOS alone, story openings the model wrote itself, and random ids.
std::vector<Case> make_cases(Runner& target, int count, uint64_t seed) {
  const int bos = target.config().bos_token_id >= 0 ? target.config().bos_token_id : 1;
  GenerateOptions opening;
  opening.max_new_tokens = 24;
  const std::vector<int32_t> bos_only{bos};
  const std::vector<int32_t> story = generate(target, bos_only, opening).tokens;
  std::mt19937_64 rng(seed);
  std::vector<Case> cases;
  for (int i = 0; i < count; ++i) {
    Case c;
    c.prompt = {bos};
    const int length = int(rng() % 20);
    for (int t = 0; t < length; ++t)
      c.prompt.push_back(i % 2 == 0 ? story[size_t(t) % story.size()]
                                    : int32_t(rng() % uint64_t(target.config().vocab_size)));
    c.max_new_tokens = 1 + int(rng() % 60);
    cases.push_back(c);
  }
  return cases;
}

struct Tally {
  int cases = 0, matches = 0;
  SpecStats stats;
};

// Runs every case through plain generation and through speculation with `drafter`.
Tally check_identity(Runner& target, Drafter& drafter, const std::vector<Case>& cases, const std::string& label,
                     std::vector<int> stop_ids = {}) {
  Tally tally;
  for (const Case& c : cases) {
    GenerateOptions options;
    options.max_new_tokens = c.max_new_tokens;
    options.stop_ids = stop_ids;
    const GenerateResult reference = generate(target, c.prompt, options);
    const SpecGenerateResult spec = speculative_generate(target, drafter, c.prompt, options);
    ++tally.cases;
    tally.matches += spec.generation.tokens == reference.tokens;
    EXPECT_EQ(spec.generation.tokens, reference.tokens) << label << ", prompt of " << c.prompt.size() << " tokens";
    EXPECT_EQ(spec.generation.stopped_on_eos, reference.stopped_on_eos) << label;
    EXPECT_EQ(spec.generation.hit_context_limit, reference.hit_context_limit) << label;
    tally.stats.target_steps += spec.stats.target_steps;
    tally.stats.accepted_drafts += spec.stats.accepted_drafts;
  }
  std::printf("[identity] %-44s %3d/%3d match, tau %.3f over %d target steps\n", label.c_str(), tally.matches,
              tally.cases, tally.stats.mean_accepted_length(), tally.stats.target_steps);
  return tally;
}

class SpecGreedy : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    stories_ = new Model(load_model(test::stories260k_path()));
    tiny_ = new Model(make_synthetic_model("tiny@f32"));
  }
  static void TearDownTestSuite() {
    delete stories_;
    delete tiny_;
  }
  static Model* stories_;
  static Model* tiny_;
};
Model* SpecGreedy::stories_ = nullptr;
Model* SpecGreedy::tiny_ = nullptr;

TEST_F(SpecGreedy, DraftModelChains) {
  auto target = make_cpu_runner(*stories_, small_runner());
  Model self = *stories_, cut = test::truncated(*stories_, 2);
  auto self_runner = make_cpu_runner(self, small_runner());
  auto cut_runner = make_cpu_runner(cut, small_runner());
  auto tiny_runner = make_cpu_runner(*tiny_, small_runner());  // same 512-token vocabulary, unrelated
  const std::vector<Case> cases = make_cases(*target, 10, 1);
  for (int gamma : {1, 3, 6}) {
    DraftModelDrafter drafter(*cut_runner, gamma);
    check_identity(*target, drafter, cases, "draft: 2-layer stories260K, gamma " + std::to_string(gamma));
  }
  DraftModelDrafter itself(*self_runner, 6);
  const Tally t = check_identity(*target, itself, cases, "draft: stories260K itself, gamma 6");
  EXPECT_GT(t.stats.mean_accepted_length(), 5.0);  // a perfect draft: only context ends cut chains
  DraftModelDrafter unrelated(*tiny_runner, 4);
  check_identity(*target, unrelated, cases, "draft: synthetic:tiny, gamma 4");
}

TEST_F(SpecGreedy, EagleTrees) {
  auto target = make_cpu_runner(*stories_, small_runner());
  const std::vector<Case> cases = make_cases(*target, 8, 2);
  struct Shape {
    int depth, topk, size;
  };
  for (Shape s : {Shape{6, 10, 60}, Shape{6, 10, 128}, Shape{8, 3, 40}, Shape{1, 1, 2}}) {
    EagleTreeOptions tree{s.depth, s.topk, s.size};
    CpuEagleHead head(*stories_, random_eagle_weights(stories_->config, 7), target->max_context() + s.depth * s.topk,
                   target->max_tokens_per_forward());
    EagleDrafter drafter(head, tree);
    check_identity(*target, drafter, cases,
                   fmt::format("eagle: D={} k={} T={}", s.depth, s.topk, s.size));
  }
  // A synthetic target too (vocabulary 512, two layers).
  auto tiny = make_cpu_runner(*tiny_, small_runner());
  CpuEagleHead head(*tiny_, random_eagle_weights(tiny_->config, 3), tiny->max_context() + 60, 512);
  EagleDrafter drafter(head, EagleTreeOptions{6, 10, 60});
  check_identity(*tiny, drafter, make_cases(*tiny, 8, 3), "eagle on synthetic:tiny: D=6 k=10 T=60");
}

// FR-Spec: the head drafts from a draft vocabulary only (here the most frequent ids of its own greedy
// prompts, as `specq frspec build` would keep them), which must never change the output.
TEST_F(SpecGreedy, EagleTreesWithDraftVocabulary) {
  auto target = make_cpu_runner(*stories_, small_runner());
  const std::vector<Case> cases = make_cases(*target, 8, 4);
  TokenFrequencies frequencies;
  frequencies.counts.assign(size_t(stories_->config.vocab_size), 0);
  for (const Case& c : cases) frequencies.add(c.prompt);
  for (int size : {32, 200}) {
    EagleWeights weights = random_eagle_weights(stories_->config, 7);
    weights.draft_vocab = frequency_ranked_vocab(frequencies, size, stories_->config.eos_token_ids);
    CpuEagleHead head(*stories_, std::move(weights), target->max_context() + 60, target->max_tokens_per_forward());
    EagleDrafter drafter(head, EagleTreeOptions{6, 10, 60});
    check_identity(*target, drafter, cases, fmt::format("eagle with a draft vocabulary of {}", size));
  }
}

// Knows the true greedy continuation and hides it, to a random depth, in a random tree of wrong
// guesses: deep acceptances at any node index, so multiword masks and compaction get exercised.
class OracleTreeDrafter final : public Drafter {
 public:
  OracleTreeDrafter(std::vector<int32_t> truth, int size, int max_depth, uint64_t seed, int vocab)
      : truth_(std::move(truth)), size_(size), max_depth_(max_depth), rng_(seed), vocab_(vocab) {}
  int max_nodes() const override { return size_; }
  void committed(std::span<const int32_t> seq, int) override { seq_.assign(seq.begin(), seq.end()); }
  void draft(DraftTree& tree, int max_nodes, const DraftContext&) override {
    const size_t next = seq_.size();  // truth_[next] is the token after the root
    const int nodes = std::min(max_nodes, size_);
    const int depth = int(rng_() % uint64_t(max_depth_ + 1));
    int tip = 0, placed = 0;
    while (tree.size() < nodes) {
      if (placed < depth && next + size_t(placed) < truth_.size() && rng_() % 4 == 0) {
        tip = tree.add(truth_[next + size_t(placed)], tip);
        ++placed;
      } else {
        int parent = int(rng_() % uint64_t(tree.size()));
        if (tree.depth(parent) >= max_depth_) parent = 0;
        tree.add(int32_t(rng_() % uint64_t(vocab_)), parent);
      }
    }
  }

 private:
  std::vector<int32_t> truth_, seq_;
  int size_, max_depth_;
  std::mt19937_64 rng_;
  int vocab_;
};

TEST_F(SpecGreedy, OracleTreesUpTo256Nodes) {
  auto target = make_cpu_runner(*stories_, small_runner());
  const std::vector<Case> cases = make_cases(*target, 6, 5);
  for (int size : {60, 128, 256}) {
    Tally total;
    for (const Case& c : cases) {
      GenerateOptions options;
      options.max_new_tokens = c.max_new_tokens + 16;
      std::vector<int32_t> truth = c.prompt;
      const std::vector<int32_t> more = generate(*target, c.prompt, options).tokens;
      truth.insert(truth.end(), more.begin(), more.end());
      OracleTreeDrafter oracle(truth, size, 10, uint64_t(size), target->config().vocab_size);
      const Tally t = check_identity(*target, oracle, {c}, "oracle tree T=" + std::to_string(size));
      total.stats.target_steps += t.stats.target_steps;
      total.stats.accepted_drafts += t.stats.accepted_drafts;
    }
    EXPECT_GT(total.stats.mean_accepted_length(), 2.0) << "the hidden paths must be found";
  }
}

// A synthetic model of a real shape (stories15M: vocabulary 32000, six layers), briefly.
TEST_F(SpecGreedy, Stories15MShape) {
  Model big = make_synthetic_model("stories15m");
  auto target = make_cpu_runner(big, small_runner(64));
  Model cut = test::truncated(big, 2);
  auto cut_runner = make_cpu_runner(cut, small_runner(64));
  const std::vector<Case> cases{{{1, 400, 1200, 31000}, 10}, {{1}, 12}};
  DraftModelDrafter drafter(*cut_runner, 4);
  check_identity(*target, drafter, cases, "stories15m shape: 2-layer copy, gamma 4");
  CpuEagleHead head(big, random_eagle_weights(big.config, 1), 64 + 12, 64);
  EagleDrafter eagle(head, EagleTreeOptions{3, 4, 16});
  check_identity(*target, eagle, cases, "stories15m shape: eagle D=3 k=4 T=16");
}

TEST_F(SpecGreedy, Cascades) {
  auto target = make_cpu_runner(*stories_, small_runner());
  Model middle = test::truncated(*stories_, 3), bottom = test::truncated(*stories_, 1);
  auto middle_runner = make_cpu_runner(middle, small_runner());
  auto bottom_runner = make_cpu_runner(bottom, small_runner());
  const std::vector<Case> cases = make_cases(*target, 8, 4);
  {  // HierSpec: EAGLE head -> middle model -> target.
    CpuEagleHead head(middle, random_eagle_weights(middle.config, 11), middle_runner->max_context() + 30, 512);
    EagleDrafter eagle(head, EagleTreeOptions{3, 10, 30});
    CascadeDrafter cascade(*middle_runner, eagle, 6, SamplingOptions{});
    check_identity(*target, cascade, cases, "cascade: eagle -> 3-layer -> target");
  }
  {  // Three levels: draft model -> 1-layer -> 3-layer -> target, with short chains.
    DraftModelDrafter chain(*bottom_runner, 2);
    CascadeDrafter lower(*middle_runner, chain, 3, SamplingOptions{});
    Model top_copy = *stories_;
    auto self_runner = make_cpu_runner(top_copy, small_runner());
    CascadeDrafter upper(*self_runner, lower, 5, SamplingOptions{});
    check_identity(*target, upper, cases, "cascade: 1-layer -> 3-layer -> copy -> target");
  }
}

TEST_F(SpecGreedy, StopIdInsideAStepAndFullContext) {
  auto target = make_cpu_runner(*stories_, small_runner());
  Model self = *stories_;
  auto self_runner = make_cpu_runner(self, small_runner());
  DraftModelDrafter drafter(*self_runner, 6);  // accepts whole chains, so stops fall mid-step
  const std::vector<int32_t> prompt{1};
  GenerateOptions options;
  options.max_new_tokens = 40;
  const std::vector<int32_t> free_run = generate(*target, prompt, options).tokens;
  for (int at : {3, 9, 17}) {
    const std::vector<Case> one{{prompt, 40}};
    const Tally t = check_identity(*target, drafter, one, "stop id at " + std::to_string(at), {free_run[size_t(at)]});
    EXPECT_EQ(t.matches, 1);
  }
  // A context of 40 rows: both end at the same token when the cache is full.
  auto small_target = make_cpu_runner(*stories_, small_runner(40));
  auto small_self = make_cpu_runner(self, small_runner(40));
  DraftModelDrafter small_drafter(*small_self, 6);
  const std::vector<Case> long_run{{{1, 403, 407}, 100}, {{1}, 100}};
  check_identity(*small_target, small_drafter, long_run, "context of 40 rows");
  CpuEagleHead head(*stories_, random_eagle_weights(stories_->config, 5), 40 + 60, 512);
  EagleDrafter eagle(head, EagleTreeOptions{6, 10, 60});
  check_identity(*small_target, eagle, long_run, "context of 40 rows, eagle");
}

}  // namespace
}  // namespace specq
