// specq eval: the seed's benchmark protocol (seed-spec 5) over MT-Bench, Spec-Bench, GSM8K or HumanEval,
// answers appended to a JSON-lines file that a later run resumes from.
#include <fmt/core.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/session.h"
#include "cli/spec_flags.h"
#include "core/error.h"
#include "eval/answer_file.h"
#include "eval/harness.h"
#include "eval/report.h"
#include "gen/generate.h"
#include "tokenizer/chat_template.h"

namespace specq::cli {
namespace {

struct EvalFlags {
  std::string bench;
  std::string data_dir = "../shared/data";
  std::string questions;
  std::string out;
  std::string model_id;
  int limit = 0;
  int per_category = 0;
  int warmup = 3;
  int max_new_tokens = 0;
  bool gsm8k_stop_on_eos = false;
  double exec_timeout = 10.0;
  std::string python = "python3";
  bool json = false;
};

// Plain autoregressive decoding as a TurnResult: one target step per token after the first (which the
// prefill produces), each accepting exactly one token.
eval::TurnResult autoregressive_turn(Runner& runner, std::span<const int32_t> prompt, int max_new_tokens,
                                     const std::vector<int>& stop_ids) {
  GenerateOptions options;
  options.max_new_tokens = max_new_tokens;
  options.stop_ids = stop_ids;
  const GenerateResult g = generate(runner, prompt, options);
  eval::TurnResult t;
  t.tokens = g.tokens;
  t.prefill_seconds = g.prefill_seconds;
  t.decode_seconds = g.decode_seconds;
  t.target_steps = g.tokens.empty() ? 0 : int(g.tokens.size()) - 1;
  t.accepted_tokens = t.target_steps;
  t.accept_lengths.assign(size_t(t.target_steps), 1);
  return t;
}

// A speculative generation as a TurnResult. The loop reports totals, not per-step accept lengths.
eval::TurnResult speculative_turn(SpeculativeDecoder& decoder, std::span<const int32_t> prompt, int max_new_tokens,
                                  const std::vector<int>& stop_ids) {
  GenerateOptions options;
  options.max_new_tokens = max_new_tokens;
  options.stop_ids = stop_ids;
  SpecStats stats;
  const GenerateResult g = decoder.generate(prompt, options, {}, stats);
  eval::TurnResult t;
  t.tokens = g.tokens;
  t.prefill_seconds = g.prefill_seconds;
  t.decode_seconds = g.decode_seconds;
  t.target_steps = stats.target_steps;
  t.accepted_tokens = stats.accepted_drafts + stats.target_steps;
  t.phase_seconds = {{"draft", stats.draft_seconds},
                     {"verify", stats.verify_seconds},
                     {"bookkeeping", stats.bookkeeping_seconds}};
  return t;
}

std::string default_model_id(const std::string& model) {
  std::string name = model.starts_with("synthetic:") ? model : std::filesystem::path(model).filename().string();
  if (name.empty()) name = std::filesystem::path(model).parent_path().filename().string();
  for (char& c : name)
    if (c == '/' || c == ':' || c == ' ') c = '-';
  return name;
}

}  // namespace

Command add_eval(CLI::App& app) {
  auto* sub = app.add_subcommand("eval", "Run a benchmark with the seed's protocol and write an answer file");
  auto opts = std::make_shared<SessionFlags>();
  auto flags = std::make_shared<EvalFlags>();
  add_session_flags(*sub, *opts);
  sub->add_option("--bench", flags->bench, "mt_bench, spec_bench, gsm8k or humaneval")
      ->required()
      ->check(CLI::IsMember({"mt_bench", "spec_bench", "gsm8k", "humaneval"}));
  sub->add_option("--data-dir", flags->data_dir, "Folder with mt_bench/, spec_bench/, gsm8k/, humaneval/")
      ->capture_default_str();
  sub->add_option("--questions", flags->questions, "Question file (default: the benchmark's file in --data-dir)");
  sub->add_option("--out", flags->out, "Answer file (JSON lines; resumed if it exists; default BENCH_MODELID.jsonl)");
  sub->add_option("--model-id", flags->model_id, "model_id written into the answers (default: the model's name)");
  sub->add_option("--limit", flags->limit, "Only the first N questions (0 = all)")->capture_default_str();
  sub->add_option("--per-category", flags->per_category, "Only the first N questions of each category (0 = all)")
      ->capture_default_str();
  sub->add_option("--warmup", flags->warmup, "Untimed full runs of the first question")->capture_default_str();
  sub->add_option("--max-new-tokens", flags->max_new_tokens,
                  "Override the benchmark's budget (1024; GSM8K 256; HumanEval 512)");
  sub->add_option("--chat-template", opts->chat_template, fmt::format("Chat template override: {}", kChatTemplateNames));
  sub->add_flag("--gsm8k-stop-on-eos", flags->gsm8k_stop_on_eos,
                "GSM8K: stop at EOS (the seed generates all 256 tokens; its speed numbers assume that)");
  sub->add_option("--exec-timeout", flags->exec_timeout, "HumanEval: seconds per task's tests")->capture_default_str();
  sub->add_option("--python", flags->python, "HumanEval: the Python 3 interpreter")->capture_default_str();
  sub->add_flag("--json", flags->json, "No progress; print one JSON summary object");
  auto spec = std::make_shared<SpecFlags>();
  add_spec_flags(*sub, *spec);

  auto run = [=]() -> int {
    const eval::Bench bench = eval::parse_bench(flags->bench);
    SPECQ_CHECK(flags->limit >= 0, "--limit must be >= 0 (got {})", flags->limit);
    SPECQ_CHECK(flags->warmup >= 0, "--warmup must be >= 0 (got {})", flags->warmup);
    SPECQ_CHECK(flags->max_new_tokens >= 0, "--max-new-tokens must be >= 0 (got {})", flags->max_new_tokens);
    SPECQ_CHECK(flags->exec_timeout > 0, "--exec-timeout must be positive (got {})", flags->exec_timeout);
    const std::string question_file =
        flags->questions.empty() ? eval::default_question_file(bench, flags->data_dir) : flags->questions;
    // Check the data before spending time on the model.
    eval::load_questions(bench, question_file);
    std::unique_ptr<eval::HumanEvalExecutor> executor;
    if (bench == eval::Bench::HumanEval)
      executor = std::make_unique<eval::HumanEvalExecutor>(flags->exec_timeout, flags->python);

    Session session = open_session(*opts);
    SPECQ_CHECK(session.tokenizer != nullptr, "model '{}' has no tokenizer; pass --tokenizer DIR",
                session.model.source);
    const std::unique_ptr<eval::PromptFormat> format =
        eval::prompt_format_for(*session.tokenizer, session.flags.chat_template);
    auto runner = session.make_runner();
    const bool synthetic = session.model.source.starts_with("synthetic:");

    eval::EvalConfig config;
    config.bench = bench;
    config.question_file = question_file;
    const bool speculative = spec->method != "none";
    config.model_id = flags->model_id.empty()
                          ? default_model_id(opts->model) + (speculative ? "-" + spec->method : "")
                          : flags->model_id;
    config.out_path = flags->out.empty() ? fmt::format("{}_{}.jsonl", flags->bench, config.model_id) : flags->out;
    config.limit = flags->limit;
    config.per_category = flags->per_category;
    config.warmup = flags->warmup;
    config.max_new_tokens = flags->max_new_tokens;
    config.gsm8k_stop_on_eos = flags->gsm8k_stop_on_eos;
    config.progress = !flags->json;
    const int budget = flags->max_new_tokens > 0 ? flags->max_new_tokens : eval::default_max_new_tokens(bench);
    const bool no_terminators = bench == eval::Bench::Gsm8k && !flags->gsm8k_stop_on_eos;
    config.run_info = {
        {"bench", flags->bench},
        {"model", session.model.source},
        {"model_id", config.model_id},
        {"method", speculative ? spec->method : "ar"},
        {"device", session.flags.device},
        {"dtype", session.flags.device == "cpu" ? "f32" : session.flags.dtype},
        {"max_new_tokens", budget},
        {"warmup", flags->warmup},
        {"prompt_format", bench == eval::Bench::Gsm8k ? "none (8-shot text)" : format->name()},
        {"chat_template_fallback", bench != eval::Bench::Gsm8k && format->is_fallback()},
        {"synthetic_model", synthetic},
        {"terminators", no_terminators ? std::vector<int>{} : session.stop_ids()},
        {"greedy", true},
    };
    if (executor) config.run_info["exec_timeout_seconds"] = flags->exec_timeout;
    if (speculative)
      config.run_info["spec"] = {{"eagle", spec->eagle},           {"draft", spec->draft},
                                 {"tree_depth", spec->tree_depth}, {"tree_topk", spec->tree_topk},
                                 {"tree_size", spec->tree_size},   {"draft_length", spec->draft_length},
                                 {"cascade_min_chain", spec->cascade_min_chain}, {"frspec", spec->frspec}};

    std::unique_ptr<SpeculativeDecoder> decoder;
    if (speculative) decoder = std::make_unique<SpeculativeDecoder>(*spec, session, *runner, SamplingOptions{});
    eval::Generator generator = [&](std::span<const int32_t> prompt, int max_new, const std::vector<int>& stops) {
      return decoder ? speculative_turn(*decoder, prompt, max_new, stops)
                     : autoregressive_turn(*runner, prompt, max_new, stops);
    };
    eval::EvalHarness harness(config, *session.tokenizer, *format, generator, session.stop_ids(), executor.get());
    const eval::EvalOutcome outcome = harness.run();

    const eval::RunStats stats = eval::summarize(eval::read_answer_file(config.out_path, /*must_exist=*/true));
    const eval::GroupStats& all = stats.overall();
    nlohmann::json summary = {{"answer_file", config.out_path},
                              {"bench", flags->bench},
                              {"questions", outcome.questions_total},
                              {"resumed", outcome.questions_resumed},
                              {"generated", outcome.questions_run},
                              {"tokens_per_second", all.tokens_per_second},
                              {"mean_accepted_length", all.mean_accepted_length},
                              {"chat_template_fallback", config.run_info["chat_template_fallback"]}};
    if (all.scored > 0) summary["accuracy"] = double(all.correct) / all.scored;
    if (flags->json) {
      fmt::print("{}\n", summary.dump());
    } else {
      fmt::print("{}: {} questions ({} resumed, {} generated) -> {}\n", flags->bench, outcome.questions_total,
                 outcome.questions_resumed, outcome.questions_run, config.out_path);
      fmt::print("tokens/s {:.2f} (mean over questions), mean accepted length {:.2f}\n", all.tokens_per_second,
                 all.mean_accepted_length);
      if (all.scored > 0)
        fmt::print("accuracy {}/{} = {:.1f}%\n", all.correct, all.scored, 100.0 * all.correct / all.scored);
      if (format->is_fallback() && bench != eval::Bench::Gsm8k)
        fmt::print("note: the model has no chat template; prompts use the plain User:/Assistant: layout\n");
      if (synthetic) fmt::print("note: synthetic (random) weights: answers and acceptance are meaningless\n");
    }
    return 0;
  };
  return {sub, run};
}

}  // namespace specq::cli
