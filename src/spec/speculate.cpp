#include "spec/speculate.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "core/synthetic_rng.h"
#include "core/timer.h"

namespace specq {
namespace {

// Seconds since the last call; restarts the watch.
double lap(Stopwatch& clock) {
  const double s = clock.seconds();
  clock.reset();
  return s;
}

// probs <- normalize(probs), or false when nothing is left.
bool normalize(std::span<float> probs) {
  double total = 0.0;
  for (float v : probs) total += v;
  if (total <= 0.0) return false;
  const float inv = float(1.0 / total);
  for (float& v : probs) v *= inv;
  return true;
}

}  // namespace

int32_t sample_from(std::span<const float> probs, std::mt19937_64& rng) {
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  double cumulative = 0.0;
  int32_t last = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] <= 0.0f) continue;
    cumulative += probs[i];
    last = int32_t(i);
    if (u < cumulative) return last;
  }
  return last;  // rounding left u above the total: the last token with mass
}

Speculator::Speculator(Runner& verifier, Drafter& drafter, const SamplingOptions& sampling)
    : verifier_(verifier),
      drafter_(drafter),
      sampler_(sampling, verifier.config().vocab_size),
      draft_sampler_(sampling, verifier.config().vocab_size),
      rng_(sampling.seed),
      draft_rng_(splitmix64(sampling.seed)),
      vocab_(verifier.config().vocab_size),
      hidden_size_(verifier.config().hidden_size) {
  context_ = {!sampler_.greedy(), &draft_sampler_, &draft_rng_};
  const int nodes = std::min(drafter.max_nodes(), verifier.max_tokens_per_forward());
  tree_.plan(nodes, vocab_, context_.sampling);
  seq_.reserve(size_t(verifier.max_context()) + 1);
  for (auto* v : {&path_, &rows_, &fresh_, &first_child_, &next_sibling_}) v->reserve(size_t(nodes) + 1);
  first_child_.resize(size_t(nodes));
  next_sibling_.resize(size_t(nodes));
  ok_.resize(size_t(nodes));
  positions_.resize(size_t(verifier.max_tokens_per_forward()));
  if (context_.sampling) {
    p_.resize(size_t(vocab_));
    q_.resize(size_t(vocab_));
    step_probs_.resize(size_t(nodes) * size_t(vocab_));
  }
}

ForwardResult forward_chain(Runner& runner, std::span<const int32_t> tokens, int first_pos, bool last_logits,
                            std::vector<int32_t>& positions, Drafter* hidden, bool logits_to_host) {
  const int n = int(tokens.size()), chunk = runner.max_tokens_per_forward();
  positions.resize(size_t(std::max(chunk, int(positions.size()))));
  ForwardResult out;
  for (int start = 0; start < n; start += chunk) {
    const int len = std::min(chunk, n - start);
    std::iota(positions.begin(), positions.begin() + len, first_pos + start);
    ForwardRequest request;
    request.tokens = tokens.subspan(size_t(start), size_t(len));
    request.positions = std::span<const int32_t>(positions.data(), size_t(len));
    request.cache_len = first_pos + start;
    const bool last = start + len == n;
    request.logits_rows = last && last_logits ? ForwardRequest::Rows::Last : ForwardRequest::Rows::None;
    request.logits_to_host = logits_to_host;
    request.hidden_rows = hidden != nullptr ? ForwardRequest::Rows::All : ForwardRequest::Rows::None;
    request.hidden_to_host = hidden == nullptr || !hidden->reads_device_hidden();
    out = runner.forward(request);
    if (hidden != nullptr) {
      SPECQ_CHECK(
          out.hidden.size() == size_t(len) * size_t(runner.config().hidden_size) || out.device_hidden != nullptr,
          "this runner returns no hidden states, which the drafter needs");
      hidden->hidden(first_pos + start, HiddenRows{len, {}, out.hidden, out.device_hidden, &runner});
    }
  }
  return out;
}

int32_t Speculator::start(std::span<const int32_t> prompt) {
  SPECQ_CHECK(!prompt.empty(), "the prompt is empty");
  SPECQ_CHECK(int(prompt.size()) < verifier_.max_context(),
              "the prompt has {} tokens; the context holds {} (prompt plus new tokens)", prompt.size(),
              verifier_.max_context());
  seq_.assign(prompt.begin(), prompt.end());
  const ForwardResult out =
      forward_chain(verifier_, seq_, 0, true, positions_, drafter_.wants_hidden() ? &drafter_ : nullptr,
                    context_.sampling);
  int32_t root = out.argmax[0];
  if (context_.sampling) {
    sampler_.distribution(out.logits, p_);
    root = sample_from(p_, rng_);
  }
  seq_.push_back(root);
  cache_len_ = int(prompt.size());
  drafter_.committed(seq_, 0);
  return root;
}

void Speculator::reset_to(std::span<const int32_t> seq) {
  SPECQ_CHECK(!seq.empty() && int(seq.size()) <= verifier_.max_context(), "reset_to: bad sequence length {}",
              seq.size());
  const size_t common = std::min(seq.size(), seq_.size());
  const int unchanged = int(std::mismatch(seq.begin(), seq.begin() + std::ptrdiff_t(common), seq_.begin()).first -
                            seq.begin());
  const int valid_rows = std::min(cache_len_, unchanged);
  seq_.assign(seq.begin(), seq.end());
  cache_len_ = int(seq.size()) - 1;
  if (valid_rows < cache_len_)
    forward_chain(verifier_, std::span<const int32_t>(seq_.data() + valid_rows, size_t(cache_len_ - valid_rows)),
                  valid_rows, false, positions_, drafter_.wants_hidden() ? &drafter_ : nullptr);
  drafter_.committed(seq_, unchanged);
}

std::span<const int32_t> Speculator::step() {
  const int root_pos = cache_len_;
  const int budget = std::min(tree_.max_nodes(), verifier_.max_context() - root_pos);
  if (budget < 1) return {};
  Stopwatch clock;

  // Draft.
  tree_.reset(seq_.back(), root_pos);
  drafter_.draft(tree_, budget, context_);
  tree_.finish();
  stats_.draft_seconds += lap(clock);

  // Verify: one forward over the whole tree, every node attending to its ancestors only.
  ForwardRequest request;
  request.tokens = tree_.tokens();
  request.positions = tree_.positions();
  request.cache_len = root_pos;
  request.tree_mask = tree_.mask();
  request.logits_rows = ForwardRequest::Rows::All;
  request.logits_to_host = context_.sampling;  // greedy verification needs the argmax only
  request.hidden_rows = drafter_.wants_hidden() ? ForwardRequest::Rows::All : ForwardRequest::Rows::None;
  request.hidden_to_host = !drafter_.reads_device_hidden();
  const ForwardResult out = verifier_.forward(request);
  SPECQ_CHECK(!drafter_.wants_hidden() || out.hidden.size() == size_t(tree_.size()) * size_t(hidden_size_) ||
                  out.device_hidden != nullptr,
              "this verifier returns no hidden states, which the drafter needs");
  stats_.verify_seconds += lap(clock);

  // Longest accepted path, then keep its K/V rows and drop the rest of the tree.
  const int32_t next_root = context_.sampling ? accept_sampled(out.logits) : accept_greedy(out.argmax);
  const int accepted = int(path_.size());
  rows_.clear();
  for (int node : path_) rows_.push_back(root_pos + node);
  verifier_.compact_kv(rows_, root_pos);
  // The path's hidden states: the drafter copies the selected rows out of the verifier's buffer
  // into its own (never gathered in place, seed bug 7.3.4), on the host or on the device.
  if (drafter_.wants_hidden())
    drafter_.hidden(root_pos, HiddenRows{accepted, path_, out.hidden, out.device_hidden, &verifier_});
  fresh_.clear();
  for (int r = 1; r < accepted; ++r) fresh_.push_back(tree_.token(path_[size_t(r)]));
  fresh_.push_back(next_root);
  seq_.insert(seq_.end(), fresh_.begin(), fresh_.end());
  cache_len_ = root_pos + accepted;
  drafter_.committed(seq_, root_pos + 1);
  stats_.target_steps += 1;
  stats_.accepted_drafts += accepted - 1;
  stats_.bookkeeping_seconds += lap(clock);
  return fresh_;
}

// Greedy: a node is accepted when it and all its ancestors equal the verifier's argmax at their
// parents; the deepest accepted node wins (ties: the smallest index). Returns the argmax after it.
int32_t Speculator::accept_greedy(std::span<const int32_t> argmax) {
  int best = 0;
  ok_[0] = 1;
  for (int i = 1; i < tree_.size(); ++i) {
    const int parent = tree_.parent(i);
    ok_[size_t(i)] = ok_[size_t(parent)] && tree_.token(i) == argmax[size_t(parent)];
    if (ok_[size_t(i)] && tree_.depth(i) > tree_.depth(best)) best = i;
  }
  path_.assign(size_t(tree_.depth(best)) + 1, 0);
  for (int node = best; node > 0; node = tree_.parent(node)) path_[size_t(tree_.depth(node))] = node;
  return argmax[size_t(best)];
}

// Sampling: recursive rejection sampling over siblings. At node v with target distribution p, try
// v's children in the order they were drawn (without replacement) from q: accept child x with
// probability min(1, p(x)/q(x)); on rejection p <- normalize(max(0, p - q)) and x leaves q (renormalised),
// which is the distribution the next sibling was drawn from. Without an accepted child, the next
// token is drawn from what is left of p. Each committed token is then distributed exactly as p.
int32_t Speculator::accept_sampled(std::span<const float> logits) {
  const int n = tree_.size();
  std::fill_n(first_child_.begin(), n, -1);
  for (int i = n - 1; i >= 1; --i) {  // children lists in index (= drawing) order
    next_sibling_[size_t(i)] = first_child_[size_t(tree_.parent(i))];
    first_child_[size_t(tree_.parent(i))] = i;
  }
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  path_.assign(1, 0);
  int node = 0;
  while (true) {
    sampler_.distribution(logits.subspan(size_t(node) * size_t(vocab_), size_t(vocab_)), p_);
    std::copy(p_.begin(), p_.end(), step_probs_.begin() + std::ptrdiff_t(path_.size() - 1) * vocab_);
    if (first_child_[size_t(node)] >= 0) {
      const std::span<const float> drawn_from = tree_.child_probs(node);
      std::copy(drawn_from.begin(), drawn_from.end(), q_.begin());
    }
    int accepted_child = -1;
    for (int c = first_child_[size_t(node)]; c >= 0; c = next_sibling_[size_t(c)]) {
      const int32_t x = tree_.token(c);
      if (uniform(rng_) * double(q_[size_t(x)]) < double(p_[size_t(x)])) {
        accepted_child = c;
        break;
      }
      for (int v = 0; v < vocab_; ++v) q_[size_t(v)] = std::max(0.0f, p_[size_t(v)] - q_[size_t(v)]);
      if (normalize(q_)) std::swap(p_, q_);  // p <- residual; q is rebuilt below
      const std::span<const float> drawn_from = tree_.child_probs(node);
      std::copy(drawn_from.begin(), drawn_from.end(), q_.begin());
      for (int s = first_child_[size_t(node)]; s != next_sibling_[size_t(c)]; s = next_sibling_[size_t(s)])
        q_[size_t(tree_.token(s))] = 0.0f;  // siblings drawn so far are out of q
      normalize(q_);
    }
    if (accepted_child < 0) return sample_from(p_, rng_);
    node = accepted_child;
    path_.push_back(node);
  }
}

SpecGenerateResult speculative_generate(Runner& target, Drafter& drafter, std::span<const int32_t> prompt,
                                        const GenerateOptions& options, const TokenCallback& on_token) {
  SPECQ_CHECK(options.max_new_tokens >= 0, "--max-new-tokens must be >= 0 (got {})", options.max_new_tokens);
  SpecGenerateResult result;
  GenerateResult& gen = result.generation;
  gen.prompt_tokens = int(prompt.size());
  gen.tokens.reserve(size_t(options.max_new_tokens));
  Speculator loop(target, drafter, options.sampling);

  // Emits one token; false when generation is over.
  auto emit = [&](int32_t token) {
    if (int(gen.tokens.size()) >= options.max_new_tokens) return false;
    gen.tokens.push_back(token);
    if (on_token && !on_token(token)) return false;
    if (std::find(options.stop_ids.begin(), options.stop_ids.end(), token) != options.stop_ids.end()) {
      gen.stopped_on_eos = true;
      return false;
    }
    return int(gen.tokens.size()) < options.max_new_tokens;
  };

  Stopwatch clock;
  if (options.max_new_tokens == 0) return result;
  const int32_t first = loop.start(prompt);
  gen.prefill_seconds = clock.seconds();
  clock.reset();
  bool going = emit(first);
  while (going) {
    const std::span<const int32_t> fresh = loop.step();
    if (fresh.empty()) {
      gen.hit_context_limit = true;
      break;
    }
    for (int32_t token : fresh)
      if (!(going = emit(token))) break;  // nothing after a stop id or the last allowed token
  }
  gen.decode_seconds = clock.seconds();
  result.stats = loop.stats();
  return result;
}

}  // namespace specq
