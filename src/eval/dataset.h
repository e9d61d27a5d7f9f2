// The four question sets and their files: MT-Bench and Spec-Bench (FastChat question.jsonl), GSM8K
// (openai/grade-school-math test.jsonl) and HumanEval (HumanEval.jsonl.gz).
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace specq::eval {

enum class Bench { MtBench, SpecBench, Gsm8k, HumanEval };

// "mt_bench", "spec_bench", "gsm8k", "humaneval"; an Error for anything else.
Bench parse_bench(std::string_view name);
std::string bench_name(Bench bench);
// DATA_DIR/mt_bench/question.jsonl, .../gsm8k/test.jsonl, .../humaneval/HumanEval.jsonl.gz.
std::string default_question_file(Bench bench, const std::string& data_dir);

struct Question {
  nlohmann::json id;               // question_id (MT-Bench, Spec-Bench), line index (GSM8K), task_id (HumanEval)
  std::string category;            // the file's category; "gsm8k" and "humaneval" for those sets
  std::vector<std::string> turns;  // user turns; GSM8K: the question; HumanEval: the task's code prompt
  std::string reference;           // GSM8K: the reference answer (ending "#### N")
  std::string entry_point, test;   // HumanEval
};

// Every question of the file in order. Errors name the file and line: missing or unreadable files,
// invalid JSON, missing or mistyped fields, repeated ids, an empty set.
std::vector<Question> load_questions(Bench bench, const std::string& path);

}  // namespace specq::eval
