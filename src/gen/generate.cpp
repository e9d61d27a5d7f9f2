#include "gen/generate.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "core/timer.h"

namespace specq {

ForwardResult prefill(Runner& runner, std::span<const int32_t> prompt, const DrawParams* draw) {
  const int n = int(prompt.size());
  SPECQ_CHECK(n > 0, "the prompt is empty");
  SPECQ_CHECK(n < runner.max_context(), "the prompt has {} tokens; the context holds {} (prompt plus new tokens)", n,
              runner.max_context());
  const int chunk = runner.max_tokens_per_forward();
  std::vector<int32_t> positions(size_t(std::min(n, chunk)));
  ForwardResult last;
  for (int start = 0; start < n; start += chunk) {
    const int len = std::min(chunk, n - start);
    std::iota(positions.begin(), positions.begin() + len, start);
    ForwardRequest request;
    request.tokens = prompt.subspan(size_t(start), size_t(len));
    request.positions = std::span<const int32_t>(positions.data(), size_t(len));
    request.cache_len = start;
    request.logits_rows = start + len == n ? ForwardRequest::Rows::Last : ForwardRequest::Rows::None;
    request.device_draw = draw;
    request.logits_to_host = draw == nullptr;
    last = runner.forward(request);
  }
  return last;
}

GenerateResult generate(Runner& runner, std::span<const int32_t> prompt, const GenerateOptions& options,
                        const TokenCallback& on_token) {
  SPECQ_CHECK(options.max_new_tokens >= 0, "--max-new-tokens must be >= 0 (got {})", options.max_new_tokens);
  GenerateResult result;
  result.prompt_tokens = int(prompt.size());
  Sampler sampler(options.sampling, runner.config().vocab_size);
  result.tokens.reserve(size_t(options.max_new_tokens));

  // On a GPU, sampling happens beside the logits (one id comes back, not a vocabulary of floats),
  // with the counter-based draw: token i of the output uses draw i of the seed.
  const bool draw_on_device = !sampler.greedy() && runner.device() == Device::Cuda;
  DrawParams draw;
  draw.temperature = options.sampling.temperature;
  draw.top_k = options.sampling.top_k;
  draw.top_p = options.sampling.top_p;
  draw.seed = options.sampling.seed;
  const DrawParams* device_draw = draw_on_device ? &draw : nullptr;

  Stopwatch clock;
  ForwardResult out = prefill(runner, prompt, device_draw);
  result.prefill_seconds = clock.seconds();
  clock.reset();

  int cache_len = int(prompt.size());
  while (int(result.tokens.size()) < options.max_new_tokens) {
    const int32_t token =
        draw_on_device ? out.sampled[0] : sampler.sample(out.logits, out.argmax.empty() ? 0 : out.argmax[0]);
    result.tokens.push_back(token);
    if (on_token && !on_token(token)) break;
    if (std::find(options.stop_ids.begin(), options.stop_ids.end(), token) != options.stop_ids.end()) {
      result.stopped_on_eos = true;
      break;
    }
    if (int(result.tokens.size()) == options.max_new_tokens) break;
    if (cache_len + 1 > runner.max_context()) {
      result.hit_context_limit = true;
      break;
    }
    const int32_t position = cache_len;
    ForwardRequest request;
    request.tokens = std::span<const int32_t>(&token, 1);
    request.positions = std::span<const int32_t>(&position, 1);
    request.cache_len = cache_len;
    request.logits_to_host = !sampler.greedy() && !draw_on_device;  // greedy needs only the device argmax
    draw.draw = result.tokens.size();
    request.device_draw = device_draw;
    out = runner.forward(request);
    ++cache_len;
  }
  result.decode_seconds = clock.seconds();
  return result;
}

}  // namespace specq
