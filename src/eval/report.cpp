#include "eval/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "eval/svg.h"

namespace specq::eval {
namespace {

constexpr std::array<std::string_view, 8> kMtBenchCategories = {"writing", "roleplay", "reasoning", "math",
                                                                 "coding",  "extraction", "stem", "humanities"};

std::string group_of(const std::string& bench, const std::string& category) {
  if (bench == "spec_bench" &&
      std::find(kMtBenchCategories.begin(), kMtBenchCategories.end(), category) != kMtBenchCategories.end())
    return "mt_bench";
  return category;
}

double number_or(const nlohmann::json& j, double fallback) { return j.is_number() ? j.get<double>() : fallback; }

struct Accumulator {
  GroupStats stats;
  double speed_sum = 0.0;
  int64_t accepted = 0;
  int64_t accept_steps = 0;  // steps whose accepted tokens are known
};

void add_record(Accumulator& acc, const nlohmann::json& record) {
  const auto& choice = record["choices"][0];
  const size_t turns = choice["turns"].size();
  double tokens = 0.0, seconds = 0.0;
  int64_t steps = 0;
  for (size_t t = 0; t < turns; ++t) {
    tokens += choice["new_tokens"][t].get<double>();
    seconds += choice["wall_time"][t].get<double>();
    steps += int64_t(choice["decoding_steps"][t].get<double>());
  }
  acc.stats.questions += 1;
  acc.speed_sum += seconds > 0 ? tokens / seconds : 0.0;
  acc.stats.target_steps += steps;
  acc.stats.decode_seconds += seconds;
  // Accepted tokens: specq records the total per turn; other harnesses' files carry the per-step list.
  if (choice.contains("accepted_tokens") && choice["accepted_tokens"].is_array()) {
    for (const auto& a : choice["accepted_tokens"]) acc.accepted += int64_t(number_or(a, 0));
    acc.accept_steps += steps;
  } else if (choice.contains("accept_lengths") && choice["accept_lengths"].is_array()) {
    for (const auto& a : choice["accept_lengths"]) acc.accepted += int64_t(number_or(a, 0));
    acc.accept_steps += int64_t(choice["accept_lengths"].size());
  }
  if (choice.contains("prefill_time"))
    for (const auto& p : choice["prefill_time"]) acc.stats.prefill_seconds += number_or(p, 0);
  if (choice.contains("phase_seconds"))
    for (const auto& turn : choice["phase_seconds"])
      if (turn.is_object())
        for (const auto& [phase, s] : turn.items()) acc.stats.phase_seconds[phase] += number_or(s, 0);
  if (record.contains("gsm8k")) {
    acc.stats.scored += 1;
    acc.stats.correct += record["gsm8k"].value("correct", false) ? 1 : 0;
  } else if (record.contains("humaneval")) {
    acc.stats.scored += 1;
    acc.stats.correct += record["humaneval"].value("passed", false) ? 1 : 0;
  }
}

GroupStats finish(const Accumulator& acc, const std::string& name) {
  GroupStats g = acc.stats;
  g.group = name;
  g.tokens_per_second = g.questions > 0 ? acc.speed_sum / g.questions : 0.0;
  g.mean_accepted_length = acc.accept_steps > 0 ? double(acc.accepted) / double(acc.accept_steps) : 0.0;
  return g;
}

std::string fixed(double v, int digits) { return std::isfinite(v) ? fmt::format("{:.{}f}", v, digits) : "n/a"; }

std::string describe_run(const RunStats& r) {
  std::string method = r.run.value("method", "");
  std::string device = r.run.value("device", "");
  std::string out = fmt::format("`{}`: model `{}`", r.path, r.model_id);
  if (!method.empty()) out += fmt::format(", method {}", method);
  if (!device.empty()) out += fmt::format(", device {}", device);
  if (!r.bench.empty()) out += fmt::format(", {}", r.bench);
  return out;
}

}  // namespace

RunStats summarize(const AnswerFile& file) {
  SPECQ_CHECK(!file.records.empty(), "answer file '{}' holds no answers", file.path);
  RunStats run;
  run.path = file.path;
  run.label = std::filesystem::path(file.path).stem().string();
  const auto& first = file.records.front();
  run.bench = first.value("bench", "");
  run.model_id = first.value("model_id", "");
  run.run = first.value("run", nlohmann::json::object());
  run.synthetic = run.run.value("synthetic_model", false);
  std::vector<std::string> order;
  std::map<std::string, Accumulator> groups;
  Accumulator overall;
  for (const auto& record : file.records) {
    const std::string group = group_of(run.bench, record["category"].get<std::string>());
    if (groups.find(group) == groups.end()) order.push_back(group);
    add_record(groups[group], record);
    add_record(overall, record);
  }
  if (order.size() > 1)
    for (const std::string& g : order) run.groups.push_back(finish(groups[g], g));
  run.groups.push_back(finish(overall, "overall"));
  return run;
}

void add_speedups(std::vector<RunStats>& runs, const RunStats& baseline) {
  for (RunStats& run : runs)
    for (GroupStats& g : run.groups)
      for (const GroupStats& b : baseline.groups)
        if (b.group == g.group && b.tokens_per_second > 0) g.speedup = g.tokens_per_second / b.tokens_per_second;
}

std::string report_markdown(const std::vector<RunStats>& runs, const RunStats& baseline) {
  std::string md = "# specq evaluation report\n\n";
  md += fmt::format("Baseline: {}.\n\n", describe_run(baseline));
  for (const RunStats& r : runs)
    if (&r != &baseline && r.path != baseline.path) md += fmt::format("- {}\n", describe_run(r));
  md += "\nTokens/s is the mean over questions of (new tokens / decode seconds) per question, prefill excluded; "
        "speedup is that mean divided by the baseline's (seed-spec 5.2).\n\n";
  bool synthetic = false, gsm8k_no_terminators = false, fallback = false;
  for (const RunStats& r : runs) {
    synthetic = synthetic || r.synthetic;
    gsm8k_no_terminators = gsm8k_no_terminators || (r.bench == "gsm8k" && r.run.contains("terminators") &&
                                                     r.run["terminators"].empty());
    fallback = fallback || r.run.value("chat_template_fallback", false);
  }
  if (synthetic)
    md += "> **Synthetic model**: the weights are random, so the acceptance numbers (mean accepted length) and "
          "any accuracy are meaningless; only the speed of each phase is.\n\n";
  if (gsm8k_no_terminators)
    md += "> GSM8K ran without terminators, as the seed does (seed-spec 7.3 bug 9): every question generates the "
          "full token budget, which makes its tokens/s comparable with the seed's but not with a run that stops "
          "at EOS.\n\n";
  if (fallback)
    md += "> A run used the plain \"User:/Assistant:\" prompt layout because its model has no chat template.\n\n";

  md += "## Speed\n\n| run | group | questions | tokens/s | speedup | mean accepted length | ms / target step |\n"
        "|---|---|---:|---:|---:|---:|---:|\n";
  for (const RunStats& r : runs)
    for (const GroupStats& g : r.groups)
      md += fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", r.label, g.group, g.questions,
                        fixed(g.tokens_per_second, 2), g.speedup ? fixed(*g.speedup, 2) + "x" : "n/a",
                        g.mean_accepted_length > 0 ? fixed(g.mean_accepted_length, 2) : "n/a",
                        g.target_steps > 0 ? fixed(1e3 * g.decode_seconds / double(g.target_steps), 3) : "n/a");

  bool any_scored = false, any_phases = false;
  for (const RunStats& r : runs) {
    any_scored = any_scored || r.overall().scored > 0;
    any_phases = any_phases || !r.overall().phase_seconds.empty() || r.overall().prefill_seconds > 0;
  }
  if (any_scored) {
    md += "\n## Accuracy\n\n| run | benchmark | correct / scored | accuracy |\n|---|---|---:|---:|\n";
    for (const RunStats& r : runs)
      if (r.overall().scored > 0)
        md += fmt::format("| {} | {} | {} / {} | {}% |\n", r.label, r.bench, r.overall().correct, r.overall().scored,
                          fixed(100.0 * r.overall().correct / r.overall().scored, 1));
  }
  if (any_phases) {
    std::vector<std::string> phases;
    for (const RunStats& r : runs)
      for (const auto& [phase, s] : r.overall().phase_seconds)
        if (std::find(phases.begin(), phases.end(), phase) == phases.end()) phases.push_back(phase);
    md += "\n## Time per phase (seconds per question)\n\n| run | prefill | decode |";
    for (const std::string& p : phases) md += fmt::format(" {} |", p);
    md += "\n|---|---:|---:|";
    for (size_t i = 0; i < phases.size(); ++i) md += "---:|";
    md += "\n";
    for (const RunStats& r : runs) {
      const GroupStats& o = r.overall();
      const double n = std::max(1, o.questions);
      md += fmt::format("| {} | {} | {} |", r.label, fixed(o.prefill_seconds / n, 4), fixed(o.decode_seconds / n, 4));
      for (const std::string& p : phases) {
        const auto it = o.phase_seconds.find(p);
        md += fmt::format(" {} |", it == o.phase_seconds.end() ? "n/a" : fixed(it->second / n, 4));
      }
      md += "\n";
    }
  }
  return md;
}

std::string speedup_chart(const std::vector<RunStats>& runs, const RunStats& baseline) {
  std::vector<Bar> bars;
  for (const RunStats& r : runs)
    bars.push_back({r.label, r.overall().speedup ? *r.overall().speedup : std::nan("")});
  const std::string bench = baseline.bench.empty() ? "" : " on " + baseline.bench;
  return bar_chart_svg(fmt::format("Speedup over {}{}", baseline.label, bench), "speedup (x)", bars, 1.0);
}

nlohmann::json report_json(const std::vector<RunStats>& runs, const RunStats& baseline) {
  nlohmann::json out = {{"baseline", baseline.path}, {"runs", nlohmann::json::array()}};
  for (const RunStats& r : runs) {
    nlohmann::json groups = nlohmann::json::array();
    for (const GroupStats& g : r.groups) {
      nlohmann::json j = {{"group", g.group},
                          {"questions", g.questions},
                          {"tokens_per_second", g.tokens_per_second},
                          {"mean_accepted_length", g.mean_accepted_length},
                          {"target_steps", g.target_steps},
                          {"decode_seconds", g.decode_seconds},
                          {"prefill_seconds", g.prefill_seconds},
                          {"phase_seconds", g.phase_seconds}};
      j["speedup"] = g.speedup ? nlohmann::json(*g.speedup) : nlohmann::json(nullptr);
      if (g.scored > 0) j["accuracy"] = double(g.correct) / g.scored;
      groups.push_back(j);
    }
    out["runs"].push_back({{"label", r.label},
                           {"path", r.path},
                           {"bench", r.bench},
                           {"model_id", r.model_id},
                           {"synthetic", r.synthetic},
                           {"groups", groups}});
  }
  return out;
}

}  // namespace specq::eval
