// Answer files: JSON lines in the FastChat/Spec-Bench answer format (question_id, category, answer_id,
// model_id, choices[{index, turns, decoding_steps, new_tokens, wall_time, accept_lengths,
// generate_speed}], tstamp), plus specq's fields (see docs/EVAL.md): "bench", "run" (the settings that
// produced the file), per-turn prompt_tokens, prefill_time, accepted_tokens, stopped_on_eos,
// phase_seconds, and "gsm8k" / "humaneval" scoring objects.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace specq::eval {

struct AnswerFile {
  std::string path;
  std::vector<nlohmann::json> records;
  bool truncated_tail = false;  // the last line was cut off mid-write (an interrupted run) and is ignored
  size_t valid_bytes = 0;       // bytes up to the end of the last whole record
};

// Reads an answer file. `must_exist` = false: a missing file is an empty one. Errors name the file and
// line (invalid JSON, a record without question_id/choices, mixed benchmarks).
AnswerFile read_answer_file(const std::string& path, bool must_exist);

// Checks the fields the report needs, naming the file and line on the first problem.
void check_answer_record(const nlohmann::json& record, const std::string& where);

// A random id like shortuuid's (22 characters of its alphabet).
std::string new_answer_id();

}  // namespace specq::eval
