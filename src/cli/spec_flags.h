// The speculative-decoding flags of `specq generate` and the drafter chains they build.
#pragma once
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <memory>
#include <string>

#include "cli/session.h"
#include "gen/generate.h"
#include "spec/drafter.h"
#include "spec/eagle_head.h"
#include "spec/speculate.h"

namespace specq::cli {

struct SpecFlags {
  std::string method = "none";  // none | eagle | draft | cascade
  std::string eagle = "random";  // checkpoint directory, or random[:SEED] (a seeded random head)
  std::string draft;             // draft / middle model (same vocabulary as the target)
  int tree_depth = 0, tree_topk = 0, tree_size = 0;  // 0 = the method's default
  std::string frspec;            // FR-Spec token map for the EAGLE head's draft LM head ("" = the whole vocabulary)
  int draft_length = 6;
  int cascade_min_chain = 6;
};

void add_spec_flags(CLI::App& app, SpecFlags& flags);

// The drafter chain the flags name (not "none"), built once and reused for many generations (specq eval
// runs hundreds): draft model, EAGLE head and cascade levels are loaded or made in the constructor.
class SpeculativeDecoder {
 public:
  SpeculativeDecoder(const SpecFlags& flags, Session& session, Runner& target, const SamplingOptions& sampling);
  // Fills `stats` with the target level's.
  GenerateResult generate(std::span<const int32_t> prompt, const GenerateOptions& options,
                          const TokenCallback& on_token, SpecStats& stats);

 private:
  Runner& target_;
  std::unique_ptr<Session> draft_session_;
  std::unique_ptr<Runner> draft_runner_;
  std::unique_ptr<EagleHead> head_;
  std::unique_ptr<Drafter> inner_, drafter_;
};

// Generates with the method the flags name (not "none"); fills `stats` with the target level's.
GenerateResult generate_speculative(const SpecFlags& flags, Session& session, Runner& target,
                                    std::span<const int32_t> prompt, const GenerateOptions& options,
                                    const TokenCallback& on_token, SpecStats& stats);

// Adds mean_accepted_length, target_steps and phase_seconds to a --json object.
void add_spec_json(nlohmann::json& out, const SpecStats& stats);

}  // namespace specq::cli
