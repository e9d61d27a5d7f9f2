// Acceptance with real drafts of the real stories260K model: a bf16 copy of itself and a copy cut to
// its first layers, on story openings (the model's own TinyStories-style text). tau must exceed 1.
#include <gtest/gtest.h>

#include <cstdio>

#include "spec/cascade_drafter.h"
#include "spec/draft_model_drafter.h"
#include "spec_test_util.h"

namespace specq {
namespace {

double mean_tau(Runner& target, Drafter& drafter, const char* label) {
  // Openings: BOS plus the first 0, 8, 16, ... tokens of the model's own greedy story.
  GenerateOptions story_options;
  story_options.max_new_tokens = 64;
  const std::vector<int32_t> bos{1};
  const std::vector<int32_t> story = generate(target, bos, story_options).tokens;
  SpecStats total;
  for (int cut = 0; cut <= 40; cut += 8) {
    std::vector<int32_t> prompt = bos;
    prompt.insert(prompt.end(), story.begin(), story.begin() + cut);
    GenerateOptions options;
    options.max_new_tokens = 64;
    options.stop_ids = {2};
    const SpecGenerateResult r = speculative_generate(target, drafter, prompt, options);
    EXPECT_EQ(r.generation.tokens, generate(target, prompt, options).tokens);
    total.target_steps += r.stats.target_steps;
    total.accepted_drafts += r.stats.accepted_drafts;
  }
  std::printf("[tau] %-48s tau %.3f over %d target steps\n", label, total.mean_accepted_length(), total.target_steps);
  return total.mean_accepted_length();
}

TEST(SpecTau, Stories260KDrafts) {
  Model target_model = load_model(test::stories260k_path());
  auto target = make_cpu_runner(target_model, test::small_runner());
  Model bf16 = test::rounded_to_bf16(target_model);
  Model cut3 = test::truncated(target_model, 3);
  auto bf16_runner = make_cpu_runner(bf16, test::small_runner());
  auto cut3_runner = make_cpu_runner(cut3, test::small_runner());
  DraftModelDrafter bf16_draft(*bf16_runner, 6);
  EXPECT_GT(mean_tau(*target, bf16_draft, "draft: bf16 copy, gamma 6"), 1.0);
  DraftModelDrafter cut3_draft(*cut3_runner, 4);
  EXPECT_GT(mean_tau(*target, cut3_draft, "draft: first 3 of 5 layers, gamma 4"), 1.0);
  // HierSpec-style: the 3-layer copy drafts for the bf16 copy, whose chains the target verifies.
  CascadeDrafter cascade(*bf16_runner, cut3_draft, 6, SamplingOptions{});
  EXPECT_GT(mean_tau(*target, cascade, "cascade: 3-layer -> bf16 copy -> target"), 1.0);
}

}  // namespace
}  // namespace specq
