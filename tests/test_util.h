// Helpers shared by the tests: paths, running the CLI as a subprocess, relative errors.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "model/runner.h"

namespace specq::test {

inline std::string shared_path(const std::string& relative) { return std::string(SPECQ_SHARED_DIR) + "/" + relative; }
inline std::string stories260k() { return shared_path("models/stories260K"); }

struct ProcessResult {
  int exit_code = -1;      // -1 when killed by a signal
  int signal = 0;
  std::string out, err;
};

// Runs `specq ARGS` through the shell, capturing stdout and stderr.
inline ProcessResult run_specq(const std::string& args) {
  char err_template[] = "/tmp/specq_test_stderr_XXXXXX";
  const int fd = mkstemp(err_template);
  if (fd >= 0) close(fd);
  const std::string err_file = err_template;
  const std::string command = std::string(SPECQ_BINARY) + " " + args + " 2>" + err_file;
  ProcessResult r;
  FILE* pipe = popen(command.c_str(), "r");
  std::array<char, 4096> buffer{};
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) r.out.append(buffer.data(), n);
  const int status = pclose(pipe);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  std::ifstream f(err_file);
  std::stringstream ss;
  ss << f.rdbuf();
  r.err = ss.str();
  std::remove(err_file.c_str());
  return r;
}

// Logits of every position of `ids` (one forward from position 0, one thread); `observe` sees
// (and tests may rewrite in place) each block linear's input.
inline std::vector<float> all_logits(Model& m, const std::vector<int32_t>& ids,
                                     std::function<void(const LinearInput&)> observe = nullptr) {
  RunnerOptions ro;
  ro.threads = 1;
  ro.observe_linear_input = std::move(observe);
  auto runner = make_cpu_runner(m, ro);
  std::vector<int32_t> pos(ids.size());
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = int32_t(i);
  ForwardRequest req;
  req.tokens = ids;
  req.positions = pos;
  req.logits_rows = ForwardRequest::Rows::All;
  const ForwardResult r = runner->forward(req);
  return {r.logits.begin(), r.logits.end()};
}

// ||a - b|| / ||b||
inline double relative_l2(std::span<const float> a, std::span<const float> b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}

}  // namespace specq::test
