// Plain autoregressive generation: chunked prefill, then one token per forward.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "gen/sampler.h"
#include "model/runner.h"

namespace specq {

struct GenerateOptions {
  int max_new_tokens = 256;
  SamplingOptions sampling;
  std::vector<int> stop_ids;  // generation ends after emitting any of these
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (a stop id, when hit, is the last one)
  int prompt_tokens = 0;
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;  // from the first generated token to the last
  bool stopped_on_eos = false;
  bool hit_context_limit = false;
  double tokens_per_second() const {
    return decode_seconds > 0.0 && tokens.size() > 1 ? double(tokens.size() - 1) / decode_seconds : 0.0;
  }
};

// Called with each new token as soon as it is chosen; return false to stop early.
using TokenCallback = std::function<bool(int32_t)>;

// Runs the prompt through the runner's empty cache and generates. Errors (Error) when the prompt
// is empty or does not fit the context with room for one new token.
GenerateResult generate(Runner& runner, std::span<const int32_t> prompt, const GenerateOptions& options,
                        const TokenCallback& on_token = {});

// Prefills prompt rows [0, prompt.size()) in chunks of the runner's maximum forward size;
// returns the last row's logits and argmax (with draw: its sampled id instead of host logits).
ForwardResult prefill(Runner& runner, std::span<const int32_t> prompt, const DrawParams* draw = nullptr);

}  // namespace specq
