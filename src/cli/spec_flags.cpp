#include "cli/spec_flags.h"

#include <memory>

#include "core/error.h"
#include "spec/cascade_drafter.h"
#include "spec/draft_model_drafter.h"
#include "spec/eagle_drafter.h"
#include "spec/eagle_loader.h"
#include "spec/frspec.h"

namespace specq::cli {
namespace {

// The seed's defaults (seed-spec 4.7): EAGLE-2 on the target D=6, k=10, T=60; the EAGLE head under a
// cascade's middle model D=3, k=10, T=30.
EagleTreeOptions tree_options(const SpecFlags& flags, bool under_cascade) {
  EagleTreeOptions o;
  if (under_cascade) {
    o.depth = 3;
    o.tree_size = 30;
  }
  if (flags.tree_depth > 0) o.depth = flags.tree_depth;
  if (flags.tree_topk > 0) o.topk = flags.tree_topk;
  if (flags.tree_size > 0) o.tree_size = flags.tree_size;
  o.validate();
  return o;
}

// The head runs where `runner` (the model whose hidden states it reads) runs: CUDA or CPU.
std::unique_ptr<EagleHead> eagle_head_for(const std::string& spec, const std::string& frspec, Model& base,
                                          Runner& runner, const EagleTreeOptions& tree) {
  EagleWeights weights;
  if (spec.rfind("random", 0) == 0) {
    uint64_t seed = 0;
    if (spec.size() > 6) {
      SPECQ_CHECK(spec[6] == ':', "--eagle '{}': expected random, random:SEED or a checkpoint directory", spec);
      try {
        seed = std::stoull(spec.substr(7));
      } catch (const std::exception&) {
        fail("--eagle '{}': SEED must be a non-negative integer", spec);
      }
    }
    weights = random_eagle_weights(base.config, seed);
  } else {
    weights = load_eagle_weights(spec, base.config);
  }
  if (!frspec.empty()) {
    weights.draft_vocab = load_token_map(frspec, base.config.vocab_size);
    SPECQ_CHECK(int(weights.draft_vocab.size()) >= tree.topk, "--frspec keeps {} tokens, fewer than --tree-topk {}",
                weights.draft_vocab.size(), tree.topk);
  }
  const int rows = runner.max_context() + tree.depth * tree.topk;
  return make_eagle_head(base, std::move(weights), runner, rows, runner.max_tokens_per_forward());
}

}  // namespace

void add_spec_flags(CLI::App& app, SpecFlags& flags) {
  app.add_option("--spec", flags.method, "Speculative decoding: none, eagle, draft or cascade")
      ->check(CLI::IsMember({"none", "eagle", "draft", "cascade"}))
      ->capture_default_str();
  app.add_option("--eagle", flags.eagle, "EAGLE head: a checkpoint directory (safetensors), random or random:SEED")
      ->capture_default_str();
  app.add_option("--draft", flags.draft, "Draft model (draft), or middle model (cascade)");
  app.add_option("--tree-depth", flags.tree_depth, "EAGLE tree depth D (default 6; 3 under a cascade)");
  app.add_option("--tree-topk", flags.tree_topk, "EAGLE top-k per level (default 10)");
  app.add_option("--tree-size", flags.tree_size, "EAGLE tree nodes T, root included (default 60; 30 in a cascade)");
  app.add_option("--frspec", flags.frspec,
                 "FR-Spec token map (.safetensors from `specq frspec build`, or a torch.save .pt of ids): the EAGLE "
                 "head drafts from these tokens only")
      ->check(CLI::ExistingFile);
  app.add_option("--draft-length", flags.draft_length, "Draft-model chain length gamma")->capture_default_str();
  app.add_option("--cascade-min-chain", flags.cascade_min_chain, "Shortest chain a cascade level offers")
      ->capture_default_str();
}

SpeculativeDecoder::SpeculativeDecoder(const SpecFlags& flags, Session& session, Runner& target,
                                       const SamplingOptions& sampling)
    : target_(target) {
  if (flags.method == "draft" || flags.method == "cascade") {
    SPECQ_CHECK(!flags.draft.empty(), "--spec {} needs --draft PATH", flags.method);
    SessionFlags draft_flags = session.flags;
    draft_flags.model = flags.draft;
    draft_session_ = std::make_unique<Session>(open_session(draft_flags));
    SPECQ_CHECK(draft_session_->model.config.vocab_size == session.model.config.vocab_size,
                "--draft: vocabulary of {} tokens, the target has {}", draft_session_->model.config.vocab_size,
                session.model.config.vocab_size);
    draft_runner_ = draft_session_->make_runner();
  }
  if (flags.method == "eagle") {
    const EagleTreeOptions tree = tree_options(flags, false);
    head_ = eagle_head_for(flags.eagle, flags.frspec, session.model, target, tree);
    drafter_ = std::make_unique<EagleDrafter>(*head_, tree);
  } else if (flags.method == "draft") {
    drafter_ = std::make_unique<DraftModelDrafter>(*draft_runner_, flags.draft_length);
  } else if (flags.method == "cascade") {
    const EagleTreeOptions tree = tree_options(flags, true);
    head_ = eagle_head_for(flags.eagle, flags.frspec, draft_session_->model, *draft_runner_, tree);
    inner_ = std::make_unique<EagleDrafter>(*head_, tree);
    drafter_ = std::make_unique<CascadeDrafter>(*draft_runner_, *inner_, flags.cascade_min_chain, sampling);
  } else {
    fail("--spec '{}' is not a speculative method", flags.method);
  }
}

GenerateResult SpeculativeDecoder::generate(std::span<const int32_t> prompt, const GenerateOptions& options,
                                            const TokenCallback& on_token, SpecStats& stats) {
  SpecGenerateResult result = speculative_generate(target_, *drafter_, prompt, options, on_token);
  stats = result.stats;
  return std::move(result.generation);
}

GenerateResult generate_speculative(const SpecFlags& flags, Session& session, Runner& target,
                                    std::span<const int32_t> prompt, const GenerateOptions& options,
                                    const TokenCallback& on_token, SpecStats& stats) {
  return SpeculativeDecoder(flags, session, target, options.sampling).generate(prompt, options, on_token, stats);
}

void add_spec_json(nlohmann::json& out, const SpecStats& stats) {
  out["mean_accepted_length"] = stats.mean_accepted_length();
  out["target_steps"] = stats.target_steps;
  out["phase_seconds"] = {{"draft", stats.draft_seconds},
                          {"verify", stats.verify_seconds},
                          {"bookkeeping", stats.bookkeeping_seconds}};
}

}  // namespace specq::cli
