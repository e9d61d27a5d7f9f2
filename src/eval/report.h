// specq report: the seed's speed and accuracy tables from answer files (seed-spec 5.2): per question
// tokens/s = sum of new tokens over its turns / sum of decode time; a group's tokens/s is the mean over its
// questions; speedup = that mean / the baseline's (a ratio of means); mean accepted length = mean over all
// target steps. Spec-Bench's eight MT-Bench categories form one group "mt_bench", as in the seed.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "eval/answer_file.h"

namespace specq::eval {

struct GroupStats {
  std::string group;
  int questions = 0;
  double tokens_per_second = 0.0;     // mean over questions of per-question tokens/s
  double mean_accepted_length = 0.0;  // over all target steps; 0 when no steps were recorded
  int64_t target_steps = 0;
  double decode_seconds = 0.0;
  double prefill_seconds = 0.0;       // summed over questions
  std::map<std::string, double> phase_seconds;  // summed over questions
  int scored = 0, correct = 0;        // GSM8K / HumanEval
  std::optional<double> speedup;      // vs the baseline's group of the same name
};

struct RunStats {
  std::string label;  // the answer file's name without .jsonl
  std::string path, bench, model_id;
  nlohmann::json run;  // the "run" object of its first record ({} for files from other harnesses)
  std::vector<GroupStats> groups;  // categories, then "overall"
  bool synthetic = false;
  const GroupStats& overall() const { return groups.back(); }
};

RunStats summarize(const AnswerFile& file);

// Fills each run's speedups against `baseline` (itself included: 1.0 where it has the group).
void add_speedups(std::vector<RunStats>& runs, const RunStats& baseline);

std::string report_markdown(const std::vector<RunStats>& runs, const RunStats& baseline);
std::string speedup_chart(const std::vector<RunStats>& runs, const RunStats& baseline);
nlohmann::json report_json(const std::vector<RunStats>& runs, const RunStats& baseline);

}  // namespace specq::eval
