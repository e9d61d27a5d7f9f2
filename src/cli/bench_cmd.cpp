// specq bench: decode speed against the memory-bandwidth floor, and forward latency per token count.
#include <fmt/core.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "cli/commands.h"
#include "cli/session.h"
#include "cli/spec_flags.h"
#include "core/error.h"
#include "core/timer.h"
#include "gen/generate.h"

namespace specq::cli {
namespace {

struct BenchFlags {
  int prompt_tokens = 512;
  int new_tokens = 128;
  std::string tokens_per_forward = "1,2,4,8,16,32,64,128";
  int repeats = 10;
  bool json = false;
  std::string project_tau = "2,3,4,5";  // --spec: projected speedups at these mean accepted lengths
};

// Median wall time of `repeats` forwards of k tokens as one speculative chain after `cache_len` rows.
double forward_ms(Runner& runner, int k, int cache_len, int repeats, std::mt19937& rng) {
  std::vector<int32_t> tokens(static_cast<size_t>(k)), positions(static_cast<size_t>(k));
  std::uniform_int_distribution<int32_t> id(0, runner.config().vocab_size - 1);
  std::iota(positions.begin(), positions.end(), cache_len);
  std::vector<double> times;
  for (int r = 0; r < repeats + 2; ++r) {
    for (auto& t : tokens) t = id(rng);  // fresh ids every time: no cached-input shortcut
    ForwardRequest request;
    request.tokens = tokens;
    request.positions = positions;
    request.cache_len = cache_len;
    request.logits_rows = ForwardRequest::Rows::All;
    request.logits_to_host = false;  // verification needs the argmax of every row, not the logits
    Stopwatch clock;
    runner.forward(request);
    if (r >= 2) times.push_back(clock.seconds() * 1e3);  // two warm-up runs
  }
  std::nth_element(times.begin(), times.begin() + std::ptrdiff_t(times.size() / 2), times.end());
  return times[times.size() / 2];
}

// "2,3.5" -> {2, 3.5}: mean accepted lengths (>= 1).
std::vector<double> parse_taus(const std::string& text) {
  std::vector<double> out;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, end - start);
    size_t used = 0;
    double tau = 0.0;
    try {
      tau = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    SPECQ_CHECK(used == item.size() && !item.empty() && tau >= 1.0,
                "--project-tau: '{}' is not a mean accepted length (a number >= 1)", item);
    out.push_back(tau);
    start = end + 1;
  }
  return out;
}

}  // namespace

Command add_bench(CLI::App& app) {
  auto* sub = app.add_subcommand("bench", "Measure decode speed against the bandwidth floor");
  auto opts = std::make_shared<SessionFlags>();
  auto flags = std::make_shared<BenchFlags>();
  add_session_flags(*sub, *opts);
  sub->add_option("--prompt-tokens", flags->prompt_tokens, "Prompt length before decoding")->capture_default_str();
  sub->add_option("--new-tokens", flags->new_tokens, "Tokens decoded for the AR figure")->capture_default_str();
  sub->add_option("--tokens-per-forward", flags->tokens_per_forward, "Token counts for the latency curve")
      ->capture_default_str();
  sub->add_option("--repeats", flags->repeats, "Timed repeats per token count (median)")->capture_default_str();
  sub->add_flag("--json", flags->json, "Print one JSON object");
  auto spec = std::make_shared<SpecFlags>();
  add_spec_flags(*sub, *spec);
  sub->add_option("--project-tau", flags->project_tau,
                  "With --spec: mean accepted lengths to project the speedup at (the per-step time measured here)")
      ->capture_default_str();
  auto run = [=]() -> int {
    SPECQ_CHECK(flags->prompt_tokens >= 1, "--prompt-tokens must be >= 1 (got {})", flags->prompt_tokens);
    SPECQ_CHECK(flags->new_tokens >= 2, "--new-tokens must be >= 2 (got {})", flags->new_tokens);
    SPECQ_CHECK(flags->repeats >= 1, "--repeats must be >= 1 (got {})", flags->repeats);
    const std::vector<int32_t> counts = parse_id_list(flags->tokens_per_forward, "--tokens-per-forward");
    for (int32_t k : counts) SPECQ_CHECK(k >= 1, "--tokens-per-forward: {} is not a positive count", k);
    const int widest = counts.empty() ? 1 : *std::max_element(counts.begin(), counts.end());
    SessionFlags session_flags = *opts;
    if (session_flags.max_context == 0)  // with --spec, room for a full tree at the last step
      session_flags.max_context =
          flags->prompt_tokens + std::max(flags->new_tokens, widest) + 1 + (spec->method == "none" ? 0 : 256);
    Session session = open_session(session_flags);
    auto runner = session.make_runner();

    std::mt19937 rng(1234);
    std::uniform_int_distribution<int32_t> id(0, session.model.config.vocab_size - 1);
    std::vector<int32_t> prompt(size_t(flags->prompt_tokens));
    for (auto& t : prompt) t = id(rng);

    const double copy_bw = runner->measure_copy_bandwidth();
    const double bytes = double(runner->weight_bytes());
    const double floor_ms = bytes / copy_bw * 1e3;

    GenerateOptions gen;
    gen.max_new_tokens = flags->new_tokens;
    generate(*runner, prompt, gen);  // warm-up
    const GenerateResult r = generate(*runner, prompt, gen);
    const double tps = r.tokens_per_second();
    const double prefill_tps = double(prompt.size()) / r.prefill_seconds;

    nlohmann::json by_tokens = nlohmann::json::object();
    nlohmann::json op_ms_by_tokens = nlohmann::json::object();
    for (int32_t k : counts) {
      by_tokens[std::to_string(k)] = forward_ms(*runner, k, flags->prompt_tokens, flags->repeats, rng);
      std::vector<int32_t> chain(static_cast<size_t>(k), prompt[0]), chain_positions(static_cast<size_t>(k));
      std::iota(chain_positions.begin(), chain_positions.end(), flags->prompt_tokens);
      ForwardRequest request;
      request.tokens = chain;
      request.positions = chain_positions;
      request.cache_len = flags->prompt_tokens;
      request.logits_rows = ForwardRequest::Rows::All;
      nlohmann::json ops = nlohmann::json::object();
      for (const auto& [op, ms] : runner->op_profile(request)) ops[op] = ms;
      op_ms_by_tokens[std::to_string(k)] = ops;
    }

    // Where one decode step's time goes (device timers around each op family; empty on the CPU).
    std::vector<int32_t> one_token = {prompt[0]};
    std::vector<int32_t> one_position = {flags->prompt_tokens};
    ForwardRequest profiled;
    profiled.tokens = one_token;
    profiled.positions = one_position;
    profiled.cache_len = flags->prompt_tokens;
    const auto op_profile = runner->op_profile(profiled);
    nlohmann::json op_ms = nlohmann::json::object();
    for (const auto& [op, ms] : op_profile) op_ms[op] = ms;

    // Speculative decoding of the same prompt: time per target step by phase (draft, verify,
    // bookkeeping = acceptance, KV compaction, the drafter's news), measured wall time on the host
    // (each phase ends synchronised with the device).
    nlohmann::json speculative;
    if (spec->method != "none") {
      SpeculativeDecoder decoder(*spec, session, *runner, gen.sampling);
      SpecStats stats;
      decoder.generate(prompt, gen, {}, stats);  // warm-up: graphs captured, modules loaded
      const GenerateResult sr = decoder.generate(prompt, gen, {}, stats);
      const double steps = std::max(1, stats.target_steps);
      const double step_ms = (stats.draft_seconds + stats.verify_seconds + stats.bookkeeping_seconds) / steps * 1e3;
      const double ar_ms = 1e3 / tps;
      nlohmann::json projected = nlohmann::json::object();
      for (const double tau : parse_taus(flags->project_tau))
        projected[fmt::format("{:g}", tau)] = tau * ar_ms / step_ms;
      speculative = {
          {"method", spec->method},
          {"tokens_per_second", sr.tokens_per_second()},
          {"speedup", sr.tokens_per_second() / tps},
          {"mean_accepted_length", stats.mean_accepted_length()},
          {"target_steps", stats.target_steps},
          {"ms_per_step", step_ms},
          {"phase_ms_per_step",
           {{"draft", stats.draft_seconds / steps * 1e3},
            {"verify", stats.verify_seconds / steps * 1e3},
            {"bookkeeping", stats.bookkeeping_seconds / steps * 1e3}}},
          {"projected_speedup_by_tau", projected},
      };
      add_spec_json(speculative, stats);
    }

    nlohmann::json out = {
        {"model", session.model.source},
        {"device", session.flags.device},
        {"weight_bytes", bytes},
        {"copy_gb_per_second", copy_bw / 1e9},
        {"floor_ms_per_token", floor_ms},
        {"floor_tokens_per_second", 1e3 / floor_ms},
        {"prompt_tokens", flags->prompt_tokens},
        {"prefill_tokens_per_second", prefill_tps},
        {"new_tokens", r.tokens.size()},
        {"tokens_per_second", tps},
        {"gb_per_second", bytes * tps / 1e9},
        {"floor_fraction", tps * floor_ms / 1e3},
        {"forward_ms_by_tokens", by_tokens},
        {"op_ms", op_ms},
        {"op_ms_by_tokens", op_ms_by_tokens},
    };
    if (!speculative.is_null()) out["speculative"] = speculative;
    if (flags->json) {
      fmt::print("{}\n", out.dump());
      return 0;
    }
    fmt::print("model {} on {}: {:.2f} GB of weights; copy bandwidth {:.1f} GB/s -> floor {:.3f} ms/token "
               "({:.1f} tok/s)\n",
               session.model.source, session.flags.device, bytes / 1e9, copy_bw / 1e9, floor_ms, 1e3 / floor_ms);
    fmt::print("prefill {} tokens: {:.1f} tok/s\n", flags->prompt_tokens, prefill_tps);
    fmt::print("AR decode: {:.1f} tok/s, {:.1f} GB/s, {:.1f}% of the floor\n", tps, bytes * tps / 1e9,
               100.0 * tps * floor_ms / 1e3);
    const double one = by_tokens.contains("1") ? by_tokens["1"].get<double>() : 0.0;
    fmt::print("{:>8} {:>12} {:>10}\n", "tokens", "forward ms", "x 1-token");
    for (int32_t k : counts) {
      const double ms = by_tokens[std::to_string(k)].get<double>();
      fmt::print("{:>8} {:>12.3f} {:>10}\n", k, ms, one > 0 ? fmt::format("{:.2f}", ms / one) : "-");
    }
    if (!speculative.is_null()) {
      const nlohmann::json& p = speculative["phase_ms_per_step"];
      fmt::print("speculative ({}): {:.1f} tok/s ({:.2f}x AR), tau {:.3f} over {} target steps\n", spec->method,
                 speculative["tokens_per_second"].get<double>(), speculative["speedup"].get<double>(),
                 speculative["mean_accepted_length"].get<double>(), speculative["target_steps"].get<int>());
      fmt::print("  per target step: {:.3f} ms = draft {:.3f} + verify {:.3f} + bookkeeping {:.3f}\n",
                 speculative["ms_per_step"].get<double>(), p["draft"].get<double>(), p["verify"].get<double>(),
                 p["bookkeeping"].get<double>());
      for (const auto& [tau, x] : speculative["projected_speedup_by_tau"].items())
        fmt::print("  at tau {}: projected {:.2f}x AR\n", tau, x.get<double>());
    }
    if (!op_profile.empty()) {
      double total = 0.0;
      for (const auto& entry : op_profile) total += entry.second;
      fmt::print("one decode step by op (device timers around each op): {:.3f} ms\n", total);
      for (const auto& [op, ms] : op_profile) fmt::print("  {:<12} {:>8.3f} ms {:>5.1f}%\n", op, ms, 100.0 * ms / total);
    }
    return 0;
  };
  return {sub, run};
}

}  // namespace specq::cli
