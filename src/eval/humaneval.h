// HumanEval as the seed scores it (seed-spec 5.4): the completion is cut at EvalPlus's end markers, tabs
// become four spaces, EvalPlus's `sanitize` keeps the imports and the definitions the entry point needs,
// and the task passes when prompt + completion + tests + check(entry_point) runs clean.
#pragma once
#include <string>
#include <string_view>

#include "eval/dataset.h"
#include "eval/sandbox.h"

namespace specq::eval {

// Cut at the earliest of <|endoftext|>, <|endofmask|>, </s>, "\nif __name__", "\ndef main(", "\nprint(",
// "\n```\n"; then tabs -> 4 spaces.
std::string humaneval_cut(std::string_view completion);

struct ExecutionResult {
  bool passed = false;
  std::string status;     // "passed", "failed", "timed out"
  std::string detail;     // the end of the program's error output, when it failed
  std::string sanitized;  // the code that was run after the task's prompt
  double seconds = 0.0;
  bool network_namespace = false;
};

// Runs completions in `python3` child processes (see sandbox.h), one scratch directory per task under the
// system temp dir. The Python side (sanitizer and a guard installed with sys.addaudithook that refuses
// writes outside the scratch directory, sockets, subprocesses, signals and ctypes) is written into the
// scratch directory from this binary.
class HumanEvalExecutor {
 public:
  // `python`: the interpreter (name on PATH or a path); resolved once to its real executable.
  explicit HumanEvalExecutor(double timeout_seconds = 10.0, const std::string& python = "python3");
  ExecutionResult run(const Question& task, std::string_view cut_completion) const;
  const std::string& python() const { return python_; }

 private:
  double timeout_seconds_;
  std::string python_;
};

}  // namespace specq::eval
