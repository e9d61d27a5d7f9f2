#include "eval/harness.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include "core/error.h"
#include "core/timer.h"
#include "eval/answer_file.h"
#include "eval/gsm8k.h"
#include "tokenizer/tokenizer.h"

namespace specq::eval {
namespace {

bool is_chat_bench(Bench bench) { return bench == Bench::MtBench || bench == Bench::SpecBench; }

// Seed bug 11: tokens a step produced after a terminator are neither kept nor counted.
bool cut_after_stop(std::vector<int32_t>& tokens, const std::vector<int>& stop_ids) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (std::find(stop_ids.begin(), stop_ids.end(), tokens[i]) != stop_ids.end()) {
      tokens.resize(i + 1);
      return true;
    }
  }
  return false;
}

void replace_all(std::string& text, const std::string& what) {
  if (what.empty()) return;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at)) text.erase(at, what.size());
}

std::string format_duration(double seconds) {
  const long s = std::lround(std::max(0.0, seconds));
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

// The keys of two run objects that differ, for a resume refusal that says what changed.
std::string differing_keys(const nlohmann::json& a, const nlohmann::json& b) {
  std::set<std::string> keys;
  for (const auto& [k, v] : a.items()) keys.insert(k);
  for (const auto& [k, v] : b.items()) keys.insert(k);
  std::string out;
  for (const std::string& k : keys)
    if (!a.contains(k) || !b.contains(k) || a[k] != b[k]) out += (out.empty() ? "" : ", ") + k;
  return out;
}

}  // namespace

int default_max_new_tokens(Bench bench) {
  switch (bench) {
    case Bench::Gsm8k: return 256;
    case Bench::HumanEval: return 512;
    default: return 1024;
  }
}

EvalHarness::EvalHarness(EvalConfig config, const Tokenizer& tokenizer, const PromptFormat& format,
                         Generator generator, std::vector<int> stop_ids, const HumanEvalExecutor* executor)
    : config_(std::move(config)),
      tokenizer_(tokenizer),
      format_(format),
      generator_(std::move(generator)),
      stop_ids_(std::move(stop_ids)),
      executor_(executor),
      max_new_tokens_(config_.max_new_tokens > 0 ? config_.max_new_tokens : default_max_new_tokens(config_.bench)) {
  SPECQ_CHECK(config_.limit >= 0, "--limit must be >= 0 (got {})", config_.limit);
  SPECQ_CHECK(config_.per_category >= 0, "--per-category must be >= 0 (got {})", config_.per_category);
  SPECQ_CHECK(config_.warmup >= 0, "--warmup must be >= 0 (got {})", config_.warmup);
  SPECQ_CHECK(config_.bench != Bench::HumanEval || executor_ != nullptr, "HumanEval needs a Python executor");
  // Seed-spec 7.3 bug 9: the seed's GSM8K run has no terminators and always makes 256 tokens; we keep that
  // for comparable speed numbers unless asked otherwise, and the answer file records the choice.
  const bool no_terminators = config_.bench == Bench::Gsm8k && !config_.gsm8k_stop_on_eos;
  if (!no_terminators) bench_stop_ids_ = stop_ids_;
}

std::string EvalHarness::prompt_text(const Question& q, const std::vector<std::string>& answers, size_t turn) const {
  switch (config_.bench) {
    case Bench::MtBench:
    case Bench::SpecBench: return format_.render(chat_messages(q.turns, answers, turn), true);
    case Bench::Gsm8k: return gsm8k_prompt(q.turns.at(0));
    case Bench::HumanEval: return humaneval_prompt(format_, q.turns.at(0));
  }
  return "";
}

std::vector<int32_t> EvalHarness::prompt_ids(const Question& q, const std::vector<std::string>& answers,
                                             size_t turn) const {
  const std::string text = prompt_text(q, answers, turn);
  // GSM8K is plain text with the tokenizer's BOS (the seed's tokenizer.encode); chat prompts hold their BOS
  // already, so the HumanEval prompt does not get the second BOS the seed gives it (seed-spec 7.3 bug 10).
  const bool add_special = config_.bench == Bench::Gsm8k || format_.encode_with_special_tokens();
  std::vector<int32_t> ids = tokenizer_.encode(text, add_special);
  // The seed's tokenizer (transformers, current Llama 3 files) adds BOS here; some tokenizer.json files (the
  // first Llama 3 release, as in ../shared/tokenizers/llama3) have no post-processor that does.
  const std::optional<int32_t> bos = tokenizer_.bos_id();
  if (add_special && bos && (ids.empty() || ids.front() != *bos)) ids.insert(ids.begin(), *bos);
  return ids;
}

std::string EvalHarness::turn_answer_text(std::span<const int32_t> tokens) const {
  size_t end = tokens.size();
  for (size_t i = 0; i < tokens.size(); ++i)
    if (std::find(stop_ids_.begin(), stop_ids_.end(), tokens[i]) != stop_ids_.end()) {
      end = i;
      break;
    }
  std::string text = tokenizer_.decode(tokens.subspan(0, end), /*skip_special=*/false);
  replace_all(text, tokenizer_.bos_token());
  replace_all(text, tokenizer_.eos_token());
  return python_strip(text);
}

nlohmann::json EvalHarness::answer_question(const Question& q) {
  const size_t turn_count = is_chat_bench(config_.bench) ? q.turns.size() : 1;
  std::vector<std::string> answers;
  nlohmann::json turns = nlohmann::json::array(), steps = nlohmann::json::array(),
                 new_tokens = nlohmann::json::array(), wall_time = nlohmann::json::array(),
                 accept_lengths = nlohmann::json::array(), speed = nlohmann::json::array(),
                 prompt_tokens = nlohmann::json::array(), prefill_time = nlohmann::json::array(),
                 accepted = nlohmann::json::array(), stopped = nlohmann::json::array(),
                 phases = nlohmann::json::array();
  std::vector<int32_t> last_tokens;
  for (size_t turn = 0; turn < turn_count; ++turn) {
    const std::vector<int32_t> prompt = prompt_ids(q, answers, turn);
    TurnResult r = generator_(prompt, max_new_tokens_, bench_stop_ids_);
    const bool stopped_on_eos = cut_after_stop(r.tokens, bench_stop_ids_);
    std::string text = is_chat_bench(config_.bench) ? turn_answer_text(r.tokens)
                                                    : tokenizer_.decode(r.tokens, /*skip_special=*/true);
    answers.push_back(text);
    turns.push_back(text);
    steps.push_back(r.target_steps);
    new_tokens.push_back(r.tokens.size());
    wall_time.push_back(r.decode_seconds);
    for (int a : r.accept_lengths) accept_lengths.push_back(a);
    speed.push_back(r.decode_seconds > 0 ? double(r.tokens.size()) / r.decode_seconds : 0.0);
    prompt_tokens.push_back(prompt.size());
    prefill_time.push_back(r.prefill_seconds);
    accepted.push_back(r.accepted_tokens);
    stopped.push_back(stopped_on_eos);
    phases.push_back(r.phase_seconds);
    last_tokens = std::move(r.tokens);
  }
  nlohmann::json choice = {{"index", 0},
                           {"turns", turns},
                           {"decoding_steps", steps},
                           {"new_tokens", new_tokens},
                           {"wall_time", wall_time},
                           {"accept_lengths", accept_lengths},
                           {"generate_speed", speed},
                           {"prompt_tokens", prompt_tokens},
                           {"prefill_time", prefill_time},
                           {"accepted_tokens", accepted},
                           {"stopped_on_eos", stopped},
                           {"phase_seconds", phases}};
  nlohmann::json record = {{"question_id", q.id},
                           {"category", q.category},
                           {"answer_id", new_answer_id()},
                           {"model_id", config_.model_id},
                           {"choices", nlohmann::json::array({choice})},
                           {"tstamp", std::chrono::duration<double>(
                                          std::chrono::system_clock::now().time_since_epoch()).count()},
                           {"bench", bench_name(config_.bench)},
                           {"run", config_.run_info}};
  if (config_.bench == Bench::Gsm8k) {
    const std::string prediction = gsm8k_clean_answer(answers[0]);
    const std::string reference = gsm8k_reference_answer(q.reference);
    record["gsm8k"] = {{"prediction", prediction}, {"reference", reference}, {"correct", prediction == reference}};
  } else if (config_.bench == Bench::HumanEval) {
    const std::string completion = humaneval_cut(answers[0]);
    const ExecutionResult exec = executor_->run(q, completion);
    record["humaneval"] = {{"completion", completion},         {"sanitized", exec.sanitized},
                           {"passed", exec.passed},            {"status", exec.status},
                           {"detail", exec.detail},            {"exec_seconds", exec.seconds},
                           {"network_namespace", exec.network_namespace}};
  }
  return record;
}

EvalOutcome EvalHarness::run() {
  std::vector<Question> questions = load_questions(config_.bench, config_.question_file);
  if (config_.per_category > 0) {
    std::map<std::string, int> taken;
    std::erase_if(questions, [&](const Question& q) { return ++taken[q.category] > config_.per_category; });
  }
  if (config_.limit > 0 && size_t(config_.limit) < questions.size()) questions.resize(size_t(config_.limit));

  // Resume: keep what the answer file already holds for this exact run, and cut a half-written last line.
  const AnswerFile existing = read_answer_file(config_.out_path, /*must_exist=*/false);
  std::set<std::string> done;
  for (const auto& record : existing.records) {
    SPECQ_CHECK(record.contains("run") && record["run"] == config_.run_info,
                "answer file '{}' was written by a different run (differs in: {}); give another --out or delete it",
                config_.out_path, differing_keys(record.value("run", nlohmann::json::object()), config_.run_info));
    done.insert(record["question_id"].dump());
  }
  if (existing.truncated_tail) std::filesystem::resize_file(config_.out_path, existing.valid_bytes);

  EvalOutcome outcome;
  outcome.questions_total = int(questions.size());
  std::vector<const Question*> unanswered;
  for (const Question& q : questions) {
    if (done.count(q.id.dump()) != 0) ++outcome.questions_resumed;
    else unanswered.push_back(&q);
  }
  if (unanswered.empty()) return outcome;

  const std::filesystem::path out_path(config_.out_path);
  if (out_path.has_parent_path()) std::filesystem::create_directories(out_path.parent_path());
  std::ofstream out(config_.out_path, std::ios::app | std::ios::binary);
  SPECQ_CHECK(out.good(), "cannot write the answer file '{}'", config_.out_path);

  const std::string name = bench_name(config_.bench);
  for (int i = 0; i < config_.warmup; ++i) {
    if (config_.progress) fmt::print(stderr, "[{}] warm-up {}/{}\n", name, i + 1, config_.warmup);
    std::vector<std::string> answers;
    const Question& first = questions.front();
    const size_t turn_count = is_chat_bench(config_.bench) ? first.turns.size() : 1;
    for (size_t turn = 0; turn < turn_count; ++turn) {
      TurnResult r = generator_(prompt_ids(first, answers, turn), max_new_tokens_, bench_stop_ids_);
      cut_after_stop(r.tokens, bench_stop_ids_);
      answers.push_back(turn_answer_text(r.tokens));
    }
  }

  Stopwatch clock;
  double speed_sum = 0.0;
  for (const Question* q : unanswered) {
    const nlohmann::json record = answer_question(*q);
    out << record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    out.flush();
    SPECQ_CHECK(out.good(), "cannot write the answer file '{}'", config_.out_path);
    ++outcome.questions_run;
    const auto& choice = record["choices"][0];
    double tokens = 0.0, seconds = 0.0;
    for (size_t t = 0; t < choice["new_tokens"].size(); ++t) {
      tokens += choice["new_tokens"][t].get<double>();
      seconds += choice["wall_time"][t].get<double>();
    }
    speed_sum += seconds > 0 ? tokens / seconds : 0.0;
    if (config_.progress) {
      const int finished = outcome.questions_resumed + outcome.questions_run;
      const double eta = clock.seconds() / outcome.questions_run * double(unanswered.size() - size_t(outcome.questions_run));
      fmt::print(stderr, "[{}] {}/{} questions | {:.1f} tok/s | ETA {}\n", name, finished, outcome.questions_total,
                 speed_sum / outcome.questions_run, format_duration(eta));
    }
  }
  return outcome;
}

}  // namespace specq::eval
